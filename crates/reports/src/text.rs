//! Reports as text for operators (English, plain text that fits a Telegram message).

use mediagen_domain::Money;
pub use mediagen_domain::insights::duration_text as duration;
use mediagen_domain::insights::usage::Line;
use mediagen_domain::insights::{Live, PlanReport, Report};
use mediagen_domain::planner::{Recommendation, TierForecast, WaitStats};
use std::fmt::Write;

/// Lines of each "by user" list.
const TOP_USERS: usize = 10;

/// `1.10 jobs/s`, or per hour when slower than one job in ten seconds.
fn rate(per_second: f64) -> String {
    if per_second >= 0.1 { format!("{per_second:.2} jobs/s") } else { format!("{:.1} jobs/h", per_second * 3600.0) }
}

fn wait(secs: Option<f64>) -> String {
    secs.map_or_else(|| "never drains".to_owned(), duration)
}

fn waits_line(waits: Option<&WaitStats>) -> String {
    match waits {
        Some(w) => format!(
            "median {}, p95 {}, longest {} ({} jobs)",
            duration(w.p50),
            duration(w.p95),
            duration(w.max),
            w.jobs
        ),
        None => "no job was taken from the queue".to_owned(),
    }
}

fn money_line(out: &mut String, indent: &str, line: &Line) {
    let _ = writeln!(
        out,
        "{indent}{}: {} jobs ({} ok, {} failed, {} canceled); users charged {}, fal {} (list {})",
        line.key,
        line.jobs,
        line.succeeded,
        line.failed,
        line.canceled,
        line.user_charged,
        line.fal_discounted,
        line.fal_list
    );
}

/// The live counters: queue, accounts, today's and the month's spend.
pub fn live(live: &Live) -> String {
    let mut out = String::new();
    let j = &live.jobs;
    let _ = writeln!(
        out,
        "Now: {} queued, {} in flight ({} dispatching, {} submitted, {} running)",
        j.queued,
        j.dispatching + j.submitted + j.running,
        j.dispatching,
        j.submitted,
        j.running
    );
    for a in &live.accounts {
        let state = match (a.locked, a.disabled) {
            (true, _) => " LOCKED",
            (false, true) => " disabled",
            _ => "",
        };
        let _ = writeln!(out, "  {}: {}/{} in flight, balance {}{state}", a.id, a.in_flight, a.limit, a.balance);
    }
    let _ = writeln!(
        out,
        "Spend today: users {}, fal {}; this month: users {}, fal {} (list {})",
        live.today.user_charged,
        live.today.fal_discounted,
        live.month.user_charged,
        live.month.fal_discounted,
        live.month.fal_list
    );
    let tier = &live.month_tier;
    let _ = write!(
        out,
        "Requests this month: {} — volume tier {} ({}% off){}",
        live.month_requests,
        tier.name,
        tier.percent_off,
        if tier.enterprise { "; enterprise volume: talk to fal about enterprise pricing" } else { "" }
    );
    out
}

/// A daily, weekly or monthly summary.
pub fn report(report: &Report) -> String {
    let mut out = String::new();
    let title = match report.period.kind {
        mediagen_domain::insights::ReportKind::Day => "Daily report",
        mediagen_domain::insights::ReportKind::Week => "Weekly report",
        mediagen_domain::insights::ReportKind::Month => "Monthly report",
    };
    let _ = writeln!(out, "{title} — {} (UTC)", report.period.label());
    let t = &report.usage.total;
    let _ = writeln!(
        out,
        "Jobs finished: {} ({} ok, {} failed, {} canceled); {} requests sent to fal",
        t.jobs, t.succeeded, t.failed, t.canceled, report.requests
    );
    let _ = writeln!(out, "Users were charged {} (refunded {})", t.user_charged, t.user_refunded);
    let _ = writeln!(
        out,
        "fal would charge {} after volume discount (list price {}); margin {}",
        t.fal_discounted,
        t.fal_list,
        t.margin()
    );
    for (month, requests, tier) in &report.tiers {
        let _ = writeln!(out, "  {month}: {requests} requests, tier {} ({}% off)", tier.name, tier.percent_off);
    }
    if !report.usage.by_model.is_empty() {
        out.push_str("By model:\n");
        for line in &report.usage.by_model {
            money_line(&mut out, "  ", line);
        }
    }
    if !report.usage.by_user.is_empty() {
        let _ = writeln!(out, "By user (top {}):", TOP_USERS.min(report.usage.by_user.len()));
        for line in report.usage.by_user.iter().take(TOP_USERS) {
            money_line(&mut out, "  ", line);
        }
    }
    if !report.usage.by_account.is_empty() {
        out.push_str("By account:\n");
        for line in &report.usage.by_account {
            let _ = writeln!(
                out,
                "  {}: {} jobs, fal {} (list {})",
                line.key, line.jobs, line.fal_discounted, line.fal_list
            );
        }
    }
    if report.period.days().len() > 1 && !report.usage.by_day.is_empty() {
        out.push_str("Per day:\n");
        for line in &report.usage.by_day {
            let _ = writeln!(
                out,
                "  {}: {} jobs, users {}, fal {}",
                line.key, line.jobs, line.user_charged, line.fal_discounted
            );
        }
    }
    let _ = writeln!(out, "Queue waits: {}", waits_line(report.waits.as_ref()));
    let s = &report.saturation;
    let _ = writeln!(
        out,
        "At full capacity ({} slots) with jobs waiting: {} of {} busy time ({:.0}%)",
        s.capacity,
        duration(s.saturated.num_milliseconds() as f64 / 1000.0),
        duration(s.busy.num_milliseconds() as f64 / 1000.0),
        s.percent()
    );
    for account in &report.accounts {
        if let Some((_, peak, limit)) = account.days.iter().max_by_key(|(_, peak, _)| *peak) {
            let _ = writeln!(out, "  {}: peak {} in flight (limit {})", account.id, peak, limit);
        }
    }
    out.push_str(&live(&report.live));
    out
}

/// The caption under the chart.
pub fn chart_caption(report: &Report) -> String {
    let (first, last) = (report.trend_days.first(), report.trend_days.last());
    match (first, last) {
        (Some(first), Some(last)) => format!(
            "{first} – {last}: jobs per day by model, fal list cost per day by model, peak jobs in flight per account (dashed: its limit)"
        ),
        _ => "No days to chart".to_owned(),
    }
}

fn tier_name(option: &TierForecast) -> String {
    match option.min_window_sum {
        Some(sum) if sum == Money::ZERO => format!("new account / {}", option.limit),
        Some(sum) => format!("{} / {}", sum.whole_or_display(), option.limit),
        None => format!("enterprise / {}", option.limit),
    }
}

/// The capacity plan: what was measured, each tier's forecast and the recommendation.
pub fn plan(report: &PlanReport) -> String {
    let p = &report.plan;
    let mut out = String::new();
    let days = (p.to - p.from).num_days();
    let _ = writeln!(
        out,
        "Capacity plan from {} days of history ({} – {})",
        days,
        p.from.format("%Y-%m-%d"),
        p.to.format("%Y-%m-%d %H:%M UTC")
    );
    if p.recommendation == Recommendation::NoData {
        out.push_str("No finished jobs in the history yet: nothing to plan from.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "Load: {} jobs; the typical daily busy hour brings {} × {} per job = {:.1} Erlangs",
        p.arrivals,
        rate(p.busy_arrival_rate),
        duration(p.mean_service_secs),
        p.offered_load
    );
    for model in p.models.iter().take(8) {
        let _ = writeln!(
            out,
            "  {}: {} jobs, slot time mean {}, p95 {}",
            model.model,
            model.jobs,
            duration(model.mean_secs),
            duration(model.p95_secs)
        );
    }
    let _ = writeln!(
        out,
        "Observed in the busy hours: jobs wanting to run (in flight + queued) median {}, p95 {}; peak {}",
        p.demand.p50, p.demand.p95, p.demand.peak
    );
    let _ =
        writeln!(out, "  in flight: median {}, p95 {}; peak {}", p.in_flight.p50, p.in_flight.p95, p.in_flight.peak);
    let _ = writeln!(out, "Observed queue waits: {}", waits_line(p.observed_wait.as_ref()));
    let _ = writeln!(
        out,
        "Now: {} account(s), {} slots → the model predicts a p95 wait of {}{}",
        p.current.accounts,
        p.current.slots,
        wait(p.predicted_wait_now_secs),
        p.observed_wait.map_or(String::new(), |w| format!(" (observed p95 {})", duration(w.p95)))
    );
    let _ = writeln!(out, "Target: p95 wait ≤ {}", duration(p.target_wait_secs));
    let _ =
        writeln!(out, "Per-account tier (per {} days) → slots: load, P(wait), p95 wait, mean wait", report.window_days);
    let chosen = match p.recommendation {
        Recommendation::Tier(i) => Some(i),
        _ => None,
    };
    for (i, option) in p.options.iter().enumerate() {
        let accounts = match option.accounts_needed {
            Some(n) if option.min_window_sum.is_some() => format!("; {n} account(s) at this tier meet the target"),
            _ => String::new(),
        };
        let covers = if option.slots >= p.demand.p95 { "covers" } else { "below" };
        let _ = writeln!(
            out,
            "  {}{} → {} slots: {:.0}%, {:.0}%, {}, {} ({covers} the observed p95 demand){accounts}{}",
            if chosen == Some(i) { "▶ " } else { "" },
            tier_name(option),
            option.slots,
            option.utilization * 100.0,
            option.wait_probability * 100.0,
            wait(option.p95_wait_secs),
            wait(option.mean_wait_secs),
            if option.meets_target { " ✓" } else { "" }
        );
    }
    match p.recommendation {
        Recommendation::Tier(i) => {
            let option = &p.options[i];
            let sum = option.min_window_sum.unwrap_or(Money::ZERO);
            if sum == Money::ZERO {
                let _ = write!(
                    out,
                    "Recommendation: no purchase needed; {} slot(s) per account keep the p95 wait within target.",
                    option.limit
                );
            } else {
                let _ = write!(
                    out,
                    "Recommendation: the {} tier — keep at least {} of purchases in every {}-day window on each of {} account(s) for {} slots each (p95 wait {}).",
                    sum.whole_or_display(),
                    sum.whole_or_display(),
                    report.window_days,
                    p.current.accounts,
                    option.limit,
                    wait(option.p95_wait_secs)
                );
                let needed = sum.checked_mul(i64::from(p.current.accounts)).unwrap_or(sum);
                let _ = write!(
                    out,
                    " fal spend over the last {} days was {}{}",
                    report.window_days,
                    report.spend_last_window,
                    if report.spend_last_window >= needed {
                        ", so the purchases are credit you use anyway."
                    } else {
                        "."
                    }
                );
            }
        }
        Recommendation::Enterprise { slots_per_account } => {
            let _ = write!(
                out,
                "Recommendation: no published tier is enough for {} account(s); ask fal for an enterprise limit of {} slots per account, or add accounts (see above).",
                p.current.accounts, slots_per_account
            );
        }
        Recommendation::NoData => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(1.25), "1.2 s");
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(125.0), "2 min 05 s");
        assert_eq!(duration(3_725.0), "1 h 02 min");
        assert_eq!(duration(f64::INFINITY), "never");
        assert_eq!(wait(None), "never drains");
    }
}
