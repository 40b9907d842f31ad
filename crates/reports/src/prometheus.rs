//! The live counters in Prometheus' text exposition format (version 0.0.4).

use mediagen_domain::Money;
use mediagen_domain::insights::{Live, Spend};
use std::fmt::Write;

pub use mediagen_domain::insights::Counter;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Dollars as a plain decimal number, exact to the micro-dollar.
fn dollars(money: Money) -> String {
    money.plain_exact()
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders `live` and `counters`.
pub fn render(live: &Live, counters: &[Counter]) -> String {
    let mut out = String::new();
    header(&mut out, "mediagen_jobs", "gauge", "Jobs stored, by current state.");
    for (state, n) in live.jobs.by_name() {
        let _ = writeln!(out, "mediagen_jobs{{state=\"{state}\"}} {n}");
    }
    header(&mut out, "mediagen_queue_length", "gauge", "Jobs waiting in our queue.");
    let _ = writeln!(out, "mediagen_queue_length {}", live.jobs.queued);

    header(&mut out, "mediagen_account_in_flight", "gauge", "Jobs in flight on each fal account.");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_in_flight{{account=\"{}\"}} {}", label(a.id.as_str()), a.in_flight);
    }
    header(&mut out, "mediagen_account_limit", "gauge", "Concurrency limit of each fal account.");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_limit{{account=\"{}\"}} {}", label(a.id.as_str()), a.limit);
    }
    header(&mut out, "mediagen_account_usable", "gauge", "1 when the account takes work (not locked or disabled).");
    for a in &live.accounts {
        let _ = writeln!(out, "mediagen_account_usable{{account=\"{}\"}} {}", label(a.id.as_str()), u8::from(a.usable));
    }
    header(&mut out, "mediagen_account_balance_dollars", "gauge", "Unexpired fal credit minus spend, per account.");
    for a in &live.accounts {
        let _ = writeln!(
            out,
            "mediagen_account_balance_dollars{{account=\"{}\"}} {}",
            label(a.id.as_str()),
            dollars(a.balance)
        );
    }

    header(
        &mut out,
        "mediagen_spend_dollars",
        "gauge",
        "Money of the jobs finished today and this month (UTC): users charged, fal at list price, fal after the volume discount.",
    );
    for (period, spend) in [("today", &live.today), ("month", &live.month)] {
        let Spend { user_charged, fal_list, fal_discounted, .. } = spend;
        for (kind, amount) in
            [("user_charged", user_charged), ("fal_list", fal_list), ("fal_discounted", fal_discounted)]
        {
            let _ = writeln!(out, "mediagen_spend_dollars{{period=\"{period}\",kind=\"{kind}\"}} {}", dollars(*amount));
        }
    }
    header(&mut out, "mediagen_finished_jobs", "gauge", "Jobs finished today and this month (UTC).");
    for (period, spend) in [("today", &live.today), ("month", &live.month)] {
        let _ = writeln!(out, "mediagen_finished_jobs{{period=\"{period}\"}} {}", spend.jobs);
    }
    header(&mut out, "mediagen_month_requests", "gauge", "Requests sent to fal this month (volume-discount count).");
    let _ = writeln!(out, "mediagen_month_requests {}", live.month_requests);
    header(&mut out, "mediagen_month_discount_percent", "gauge", "The volume discount the month's requests reach.");
    let _ = writeln!(out, "mediagen_month_discount_percent {}", live.month_tier.percent_off);

    header(
        &mut out,
        "mediagen_queue_wait_seconds",
        "gauge",
        "Wait in our queue (enqueue to first claim) of the jobs enqueued in the last hour, by quantile.",
    );
    if let Some(w) = &live.recent_waits {
        for (q, v) in [("0.5", w.p50), ("0.95", w.p95), ("1", w.max)] {
            let _ = writeln!(out, "mediagen_queue_wait_seconds{{quantile=\"{q}\"}} {v}");
        }
    }
    header(&mut out, "mediagen_queue_wait_jobs", "gauge", "Jobs enqueued in the last hour whose wait is measured.");
    let _ = writeln!(out, "mediagen_queue_wait_jobs {}", live.recent_waits.map_or(0, |w| w.jobs));
    for counter in counters {
        header(&mut out, counter.name, "counter", counter.help);
        let _ = writeln!(out, "{} {}", counter.name, counter.value);
    }
    out
}
