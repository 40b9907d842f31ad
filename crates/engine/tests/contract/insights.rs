//! Operator intelligence in the engine: credit and capacity alerts (once per period, across
//! restarts), scheduled summaries with their chart, and the on-demand reports.

use crate::support::Harness;
use chrono::{NaiveDate, NaiveTime, TimeDelta, Weekday};
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::insights::JobOutcome;
use mediagen_domain::insights::{Period, ReportKind};
use mediagen_domain::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use mediagen_ports::{DayCount, JobTiming, Severity, SlotInterval, UsageRow};

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
    h.run_for(2).await;
    h.run_for(2).await;
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
    h.run_for(2).await;
    h.run_for(2).await;
    let w = h.world();
    assert_eq!(w.operator_alerts.iter().filter(|a| a.title.contains("credit runs out")).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn unspent_credit_about_to_expire_is_announced_once() {
    let h = Harness::new();
    // $50 bought 350 days ago, never spent: it expires in 15 days.
    bought(&h, &[(50, 350)]);
    h.run_for(2).await;
    h.run_for(2).await;
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
    h.run_for(2).await;
    h.run_for(2).await;
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
    h.run_for(2).await;
    assert!(h.world().operator_alerts.is_empty(), "40 minutes of busy time is below the hour asked for");

    let mut h = Harness::new();
    h.config.insights.saturation_percent = 60.0;
    busy_morning(&h);
    h.run_for(2).await;
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
    h.run_for(2).await;
    h.run_for(2).await;

    let w = h.world();
    assert_eq!(w.operator_summaries.len(), 2, "one daily and one weekly summary, each sent once");
    let daily = &w.operator_summaries[0];
    assert_eq!(daily.title, "Daily report");
    assert_eq!((daily.report.period.kind, daily.report.period.label()), (ReportKind::Day, "2026-11-24".to_owned()));
    let total = &daily.report.usage.total;
    assert_eq!((total.jobs, total.succeeded, total.failed, total.canceled, daily.report.requests), (4, 4, 0, 0, 4));
    assert_eq!((total.user_charged, total.user_refunded), (Money::from_micros(156_000), Money::ZERO));
    // What the chart draws: seven days of the model's jobs and the account's peaks.
    assert_eq!(daily.report.trend_days.len(), 7);
    assert_eq!(daily.report.models.len(), 1);
    assert_eq!(daily.report.accounts.len(), 1);
    let weekly = &w.operator_summaries[1];
    assert_eq!(weekly.title, "Weekly report");
    assert_eq!(weekly.report.period.label(), "2026-11-18 – 2026-11-24");
    let total = &weekly.report.usage.total;
    assert_eq!((total.jobs, total.succeeded, total.failed, total.canceled, weekly.report.requests), (8, 8, 0, 0, 4));
    assert!(w.alert_log.contains(&("report-daily".to_owned(), "2026-11-25".to_owned())));
    assert!(w.alert_log.contains(&("report-weekly".to_owned(), "2026-W48".to_owned())));
    assert!(w.operator_alerts.is_empty(), "summaries carry their chart: {:?}", w.operator_alerts);
}

#[tokio::test(start_paused = true)]
async fn before_the_configured_time_no_summary_goes_out() {
    let mut h = Harness::new();
    h.config.insights.daily_report_at = Some(NaiveTime::from_hms_opt(12, 0, 1).unwrap());
    h.world().account("main", 10);
    h.run_for(2).await;
    assert!(h.world().operator_summaries.is_empty());
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

    let report = engine.insights.report(ReportKind::Month).await.unwrap();
    assert_eq!(report.period, Period::to_date(ReportKind::Month, h.world().now));
    assert_eq!(report.period.label(), "2026-11 (to 2026-11-25)");
    let total = &report.usage.total;
    assert_eq!((total.jobs, total.succeeded, total.failed, total.canceled, report.requests), (4, 4, 0, 0, 4));
    assert_eq!(report.trend_days.len(), 25, "the chart covers the whole month so far");

    let costs = engine.insights.cost_allocation(ReportKind::Month).await.unwrap();
    assert_eq!(costs.period.from.format("%Y-%m-%d").to_string(), "2026-11-01");
    assert_eq!(costs.rows, vec![usage(24, 1, 3, 117_000), usage(25, 2, 1, 39_000)]);
    let (requests, tier) = costs.tiers.get((2026, 11));
    assert_eq!((requests, tier.percent_off), (4, 0), "no volume discount at 4 requests");

    let plan = engine.insights.capacity_plan(Some(TimeDelta::seconds(10))).await.unwrap();
    assert_eq!(plan.plan.target_wait_secs, 10.0);
    assert_eq!((plan.plan.current.accounts, plan.plan.current.slots), (1, 2));
    // The typical daily busy hour brings 3.0 jobs/h × 26 min 40 s per job = 1.3 Erlangs.
    assert!((plan.plan.busy_arrival_rate * 3600.0 - 3.0).abs() < 1e-9, "{}", plan.plan.busy_arrival_rate);
    assert!((plan.plan.mean_service_secs - 1600.0).abs() < 1e-9, "{}", plan.plan.mean_service_secs);
    assert!((plan.plan.offered_load - 4.0 / 3.0).abs() < 1e-9, "{}", plan.plan.offered_load);
    let waits = plan.plan.observed_wait.expect("waits observed");
    assert_eq!((waits.p50, waits.p95, waits.max, waits.jobs), (0.0, 1200.0, 1200.0, 3));

    let metrics = engine.insights.metrics().await.unwrap();
    let main = metrics.live.accounts.iter().find(|a| a.id.as_str() == "main").expect("main");
    assert_eq!(main.limit, 2);
    let cache_hits = metrics.counters.iter().find(|c| c.name == "mediagen_prompt_cache_hits_total").expect("counter");
    assert_eq!(cache_hits.value, 0);
    assert_eq!(metrics.live.today.user_charged, Money::from_micros(39_000));
}

/// The metrics carry how long each finished job waited, ran at fal and took in all, per
/// model and account; a job that never ran records nothing.
#[tokio::test(start_paused = true)]
async fn a_finished_job_is_counted_in_the_job_time_histograms() {
    let h = Harness::new();
    {
        let mut w = h.world();
        w.user(1);
        w.account("main", 2);
        w.queued_job(1, crate::support::one_image());
    }
    let before = h.engine().insights.metrics().await.unwrap();
    assert!(before.job_times.is_empty(), "nothing finished yet");

    let engine = h.run_for(5).await;
    let job = h.world().jobs.values().next().expect("the job").clone();
    assert_eq!(job.state, mediagen_domain::JobState::Succeeded);
    let metrics = engine.insights.metrics().await.unwrap();
    assert_eq!(metrics.job_times.len(), 1, "{:?}", metrics.job_times);
    let times = &metrics.job_times[0];
    assert_eq!((times.model.as_str(), times.account.as_str()), (job.spec.model.as_str(), "main"));
    assert_eq!((times.wait.count(), times.fal.count(), times.total.count()), (1, 1, 1));
    assert!(times.total.sum_secs >= times.fal.sum_secs && times.total.sum_secs >= times.wait.sum_secs);
    let counted: Vec<_> = metrics
        .outcomes
        .iter()
        .map(|o| (o.model.as_str(), o.account.as_ref().map(|a| a.as_str()), o.outcome, o.count))
        .collect();
    assert_eq!(counted, vec![(job.spec.model.as_str(), Some("main"), JobOutcome::Succeeded, 1)]);
}
