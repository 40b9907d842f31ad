//! Operator intelligence in the engine: credit and capacity alerts (once per period, across
//! restarts), scheduled summaries with their chart, and the on-demand reports.

use crate::support::{Harness, advance};
use chrono::{NaiveDate, NaiveTime, TimeDelta, Weekday};
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use mediagen_ports::{DayCount, JobTiming, Severity, SlotInterval, UsageRow};
use mediagen_reports::ReportKind;

async fn run_once(h: &Harness) {
    let engine = h.engine();
    let running = h.start(&engine);
    advance(2).await;
    running.shutdown().await;
}

/// An account whose limit comes from its purchases (no override).
fn bought(h: &Harness, purchases: &[(i64, i64)]) -> AccountId {
    let mut w = h.world();
    let id = w.account("main", 0);
    w.accounts[0].limit_override = None;
    let now = w.now;
    let list = purchases
        .iter()
        .map(|(dollars, days_ago)| CreditPurchase {
            amount: Money::from_dollars(*dollars),
            purchased_at: now - TimeDelta::days(*days_ago),
        })
        .collect();
    w.purchases.insert(id.clone(), list);
    id
}

#[tokio::test(start_paused = true)]
async fn credit_running_out_at_the_recent_burn_is_announced_once_per_purchase() {
    let h = Harness::new();
    let id = bought(&h, &[(20, 10)]);
    // $14 spent in the last week: $2 a day against the $6 left, so it is gone in 3 days.
    h.world().spend.insert(id.clone(), Money::from_dollars(14));
    run_once(&h).await;
    run_once(&h).await;
    {
        let w = h.world();
        let runouts: Vec<_> = w.operator_alerts.iter().filter(|a| a.title.contains("credit runs out")).collect();
        assert_eq!(runouts.len(), 1, "{:?}", w.operator_alerts);
        assert_eq!(runouts[0].title, "fal account main: credit runs out in about 3 days");
        assert_eq!(runouts[0].severity, Severity::Warning);
        assert!(runouts[0].body.contains("$6.0000 of unexpired credit"), "{}", runouts[0].body);
        assert!(runouts[0].body.contains("$2.0000/day"), "{}", runouts[0].body);
        assert!(runouts[0].body.contains("2026-11-28 12:00 UTC"), "{}", runouts[0].body);
    }
    // A small top-up starts a new credit cycle; still short, so it is announced again, once.
    {
        let mut w = h.world();
        let now = w.now;
        w.purchases.get_mut(&id).unwrap().push(CreditPurchase { amount: Money::from_dollars(1), purchased_at: now });
    }
    run_once(&h).await;
    run_once(&h).await;
    let w = h.world();
    assert_eq!(w.operator_alerts.iter().filter(|a| a.title.contains("credit runs out")).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn unspent_credit_about_to_expire_is_announced_once() {
    let h = Harness::new();
    // $50 bought 350 days ago, never spent: it expires in 15 days.
    bought(&h, &[(50, 350)]);
    run_once(&h).await;
    run_once(&h).await;
    let w = h.world();
    assert_eq!(w.operator_alerts.len(), 1, "{:?}", w.operator_alerts);
    let alert = &w.operator_alerts[0];
    assert_eq!(alert.title, "fal account main: $50.0000 of credit expires soon");
    assert!(alert.body.contains("expires on 2026-12-10 12:00 UTC with $50.0000 unspent"), "{}", alert.body);
    assert!(w.alert_log.iter().any(|(key, _)| key == "credit-expiry:main"));
}

fn at(h: u32, m: u32) -> Timestamp {
    NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(h, m, 0).unwrap().and_utc()
}

/// Today 09:00–09:40 on two slots: three jobs arrive at 09:00; the third waits 20 min.
fn busy_morning(h: &Harness) {
    let mut w = h.world();
    w.account("main", 2);
    let timing = |job, claimed, done| JobTiming {
        job: JobId(job),
        user: UserId(1),
        model: ModelId::new("fal-ai/nano-banana"),
        state: "succeeded".into(),
        enqueued_at: at(9, 0),
        first_claimed_at: Some(claimed),
        finished_at: Some(done),
    };
    let slot = |job, from, to| SlotInterval {
        job: JobId(job),
        account: AccountId::new("main"),
        model: ModelId::new("fal-ai/nano-banana"),
        claimed_at: from,
        released_at: Some(to),
        released_to: Some("succeeded".into()),
    };
    w.timings = vec![timing(1, at(9, 0), at(9, 40)), timing(2, at(9, 0), at(9, 20)), timing(3, at(9, 20), at(9, 40))];
    w.slot_history = vec![slot(1, at(9, 0), at(9, 40)), slot(2, at(9, 0), at(9, 20)), slot(3, at(9, 20), at(9, 40))];
}

#[tokio::test(start_paused = true)]
async fn full_capacity_with_a_backlog_for_much_of_the_day_raises_the_rate_limit_alert_once() {
    let h = Harness::new();
    busy_morning(&h);
    run_once(&h).await;
    run_once(&h).await;
    let w = h.world();
    assert_eq!(w.operator_alerts.len(), 1, "{:?}", w.operator_alerts);
    let alert = &w.operator_alerts[0];
    assert_eq!(alert.title, "fal capacity: 50% of today's busy time at full capacity with jobs waiting");
    assert!(
        alert.body.contains("all 2 slots were taken while jobs waited for 20 min 00 s of 40 min 00 s"),
        "{}",
        alert.body
    );
    assert!(w.alert_log.contains(&("saturation".to_owned(), "2026-11-25".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn a_short_busy_day_or_a_low_share_stays_silent() {
    let mut h = Harness::new();
    h.config.insights.saturation_min_busy = TimeDelta::hours(1);
    busy_morning(&h);
    run_once(&h).await;
    assert!(h.world().operator_alerts.is_empty(), "40 minutes of busy time is below the hour asked for");

    let mut h = Harness::new();
    h.config.insights.saturation_percent = 60.0;
    busy_morning(&h);
    run_once(&h).await;
    assert!(h.world().operator_alerts.is_empty(), "50 % is below 60 %");
}

fn usage(day: u32, user: i64, jobs: u64, micros: i64) -> UsageRow {
    UsageRow {
        day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
        user: UserId(user),
        model: ModelId::new("fal-ai/nano-banana"),
        account: Some(AccountId::new("main")),
        jobs,
        succeeded: jobs,
        failed: 0,
        canceled: 0,
        user_charged: Money::from_micros(micros),
        user_refunded: Money::ZERO,
        fal_cost: Money::from_micros(micros),
    }
}

#[tokio::test(start_paused = true)]
async fn the_daily_and_weekly_summaries_go_out_once_with_their_chart_across_restarts() {
    let mut h = Harness::new();
    let eight = NaiveTime::from_hms_opt(8, 0, 0).unwrap();
    h.config.insights.daily_report_at = Some(eight);
    // 2026-11-25 is a Wednesday.
    h.config.insights.weekly_report_at = Some((Weekday::Wed, eight));
    {
        let mut w = h.world();
        w.account("main", 10);
        w.usage_rows = vec![usage(20, 1, 4, 156_000), usage(24, 1, 3, 117_000), usage(24, 2, 1, 39_000)];
        w.requests_by_day = vec![DayCount { day: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(), count: 4 }];
    }
    run_once(&h).await;
    run_once(&h).await;

    let w = h.world();
    assert_eq!(w.operator_files.len(), 2, "one daily and one weekly summary, each sent once");
    let (daily, png) = &w.operator_files[0];
    assert_eq!(daily.title, "Daily report");
    assert!(daily.body.starts_with("Daily report — 2026-11-24 (UTC)\n"), "{}", daily.body);
    assert!(daily.body.contains("\nJobs finished: 4 (4 ok, 0 failed, 0 canceled); 4 requests sent to fal\n"));
    assert!(daily.body.contains("\nUsers were charged $0.1560 (refunded $0.0000)\n"), "{}", daily.body);
    assert_eq!(png.content_type, "image/png");
    assert_eq!(png.file_name, "mediagen-day-2026-11-24.png");
    let size = (
        u32::from_be_bytes(png.bytes[16..20].try_into().unwrap()),
        u32::from_be_bytes(png.bytes[20..24].try_into().unwrap()),
    );
    assert_eq!(size, (1200, 1350));
    let (weekly, _) = &w.operator_files[1];
    assert!(weekly.body.starts_with("Weekly report — 2026-11-18 – 2026-11-24 (UTC)\n"), "{}", weekly.body);
    assert!(weekly.body.contains("\nJobs finished: 8 (8 ok, 0 failed, 0 canceled); 4 requests sent to fal\n"));
    assert!(w.alert_log.contains(&("report-daily".to_owned(), "2026-11-25".to_owned())));
    assert!(w.alert_log.contains(&("report-weekly".to_owned(), "2026-W48".to_owned())));
    assert!(w.operator_alerts.is_empty(), "summaries carry their chart: {:?}", w.operator_alerts);
}

#[tokio::test(start_paused = true)]
async fn before_the_configured_time_no_summary_goes_out() {
    let mut h = Harness::new();
    h.config.insights.daily_report_at = Some(NaiveTime::from_hms_opt(12, 0, 1).unwrap());
    h.world().account("main", 10);
    run_once(&h).await;
    assert!(h.world().operator_files.is_empty());
}

#[tokio::test(start_paused = true)]
async fn operators_can_ask_for_reports_costs_the_plan_and_metrics() {
    let h = Harness::new();
    busy_morning(&h);
    {
        let mut w = h.world();
        w.usage_rows = vec![usage(24, 1, 3, 117_000), usage(25, 2, 1, 39_000)];
        w.requests_by_day = vec![DayCount { day: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(), count: 4 }];
    }
    let engine = h.engine();

    let report = engine.report(ReportKind::Month).await.unwrap();
    assert!(report.text.starts_with("Monthly report — 2026-11 (to 2026-11-25) (UTC)\n"), "{}", report.text);
    assert!(report.text.contains("\nJobs finished: 4 (4 ok, 0 failed, 0 canceled); 4 requests sent to fal\n"));
    assert!(report.chart.is_some());

    let csv = engine.cost_allocation(ReportKind::Month).await.unwrap();
    assert_eq!(csv.content_type, "text/csv");
    assert_eq!(csv.file_name, "mediagen-costs-month-2026-11-01.csv");
    assert_eq!(
        String::from_utf8(csv.bytes).unwrap(),
        "user_id,model,jobs,succeeded,failed,canceled,charged_usd,refunded_usd,fal_list_usd,fal_discounted_usd\n\
         1,fal-ai/nano-banana,3,3,0,0,0.117000,0.000000,0.117000,0.117000\n\
         2,fal-ai/nano-banana,1,1,0,0,0.039000,0.000000,0.039000,0.039000\n\
         total,,4,4,0,0,0.156000,0.000000,0.156000,0.156000\n"
    );

    let plan = engine.capacity_plan(Some(TimeDelta::seconds(10))).await.unwrap();
    assert!(plan.contains("Target: p95 wait ≤ 10 s"), "{plan}");
    assert!(plan.contains("Now: 1 account(s), 2 slots"), "{plan}");
    assert!(
        plan.contains("the typical daily busy hour brings 3.0 jobs/h × 26 min 40 s per job = 1.3 Erlangs"),
        "{plan}"
    );
    assert!(
        plan.contains("Observed queue waits: median 0.0 s, p95 20 min 00 s, longest 20 min 00 s (3 jobs)"),
        "{plan}"
    );

    let metrics = engine.metrics_text().await.unwrap();
    assert!(metrics.lines().any(|l| l == "mediagen_account_limit{account=\"main\"} 2"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "mediagen_prompt_cache_hits_total 0"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l == "mediagen_spend_dollars{period=\"today\",kind=\"user_charged\"} 0.039"),
        "{metrics}"
    );
}
