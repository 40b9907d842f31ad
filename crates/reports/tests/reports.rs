//! Reports assembled from a known history behind mocked ports: exact figures in the text,
//! the CSV and the OpenMetrics text, and a PNG of the expected size.

use chrono::{NaiveDate, TimeDelta, TimeZone, Utc};
use mediagen_domain::credit::{CreditPolicy, CreditPurchase};
use mediagen_domain::discount::VolumeDiscounts;
use mediagen_domain::insights::{Counter, JobOutcome, JobTimes, Metrics, OutcomeCount, Period, ReportKind};
use mediagen_domain::planner::{PlannerSettings, Recommendation};
use mediagen_domain::{AccountId, JobId, ModelId, Money, Timestamp, UserId};
use mediagen_engine::insights::{self as assemble, Rules, Sources};
use mediagen_ports::{
    AccountRecord, DayCount, JobCounts, JobTiming, MockAccountStore, MockJobQueue, MockReportStore, SlotInterval,
    UsageRow,
};
use mediagen_reports::{chart, csv, prometheus, text};
use std::collections::HashSet;

const FLUX: &str = "fal-ai/flux/schnell";
const BANANA: &str = "fal-ai/nano-banana";

fn at(day: u32, h: u32, m: u32, s: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, s).unwrap()
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, day).unwrap()
}

fn now() -> Timestamp {
    at(25, 12, 0, 0)
}

/// `counts` = (jobs, succeeded); `money` = (charged, refunded, fal list) in micro-dollars.
fn usage(day: u32, user: i64, model: &str, counts: (u64, u64), money: (i64, i64, i64)) -> UsageRow {
    let ((jobs, ok), (charged, refunded, fal)) = (counts, money);
    UsageRow {
        day: date(day),
        user: UserId(user),
        model: ModelId::new(model),
        account: Some(AccountId::new("main")),
        jobs,
        succeeded: ok,
        failed: jobs - ok,
        canceled: 0,
        user_charged: Money::from_micros(charged),
        user_refunded: Money::from_micros(refunded),
        fal_cost: Money::from_micros(fal),
    }
}

/// The history: flux jobs cost 40 000 µ$, banana 39 000 µ$, at list price.
fn usage_rows() -> Vec<UsageRow> {
    vec![
        usage(20, 1, FLUX, (1, 1), (40_000, 10_000, 40_000)),
        usage(24, 1, FLUX, (3, 3), (120_000, 30_000, 120_000)),
        usage(24, 2, BANANA, (2, 1), (39_000, 61_000, 39_000)),
        usage(24, 3, FLUX, (1, 1), (40_000, 10_000, 40_000)),
        usage(25, 2, BANANA, (1, 1), (39_000, 11_000, 39_000)),
    ]
}

/// 1 200 requests on the 5th put November in the 5 % tier.
fn requests() -> Vec<DayCount> {
    vec![
        DayCount { day: date(5), count: 1_200 },
        DayCount { day: date(20), count: 1 },
        DayCount { day: date(24), count: 7 },
        DayCount { day: date(25), count: 1 },
    ]
}

fn timing(job: i64, enq: Timestamp, claimed: Timestamp, done: Timestamp) -> JobTiming {
    JobTiming {
        job: JobId(job),
        user: UserId(1),
        model: ModelId::new(FLUX),
        state: "succeeded".into(),
        enqueued_at: enq,
        first_claimed_at: Some(claimed),
        finished_at: Some(done),
    }
}

/// Three jobs at 10:00 on the 24th: waits 0, 4 and 8 s.
fn timings() -> Vec<JobTiming> {
    vec![
        timing(1, at(24, 10, 0, 0), at(24, 10, 0, 0), at(24, 10, 0, 20)),
        timing(2, at(24, 10, 0, 1), at(24, 10, 0, 5), at(24, 10, 0, 30)),
        timing(3, at(24, 10, 0, 2), at(24, 10, 0, 10), at(24, 10, 0, 12)),
    ]
}

fn slot(job: i64, from: Timestamp, to: Timestamp) -> SlotInterval {
    SlotInterval {
        job: JobId(job),
        account: AccountId::new("main"),
        model: ModelId::new(FLUX),
        claimed_at: from,
        released_at: Some(to),
        released_to: Some("succeeded".into()),
    }
}

fn slots() -> Vec<SlotInterval> {
    vec![
        slot(1, at(24, 10, 0, 0), at(24, 10, 0, 20)),
        slot(2, at(24, 10, 0, 5), at(24, 10, 0, 30)),
        slot(3, at(24, 10, 0, 10), at(24, 10, 0, 12)),
    ]
}

struct Mocks {
    reports: MockReportStore,
    accounts: MockAccountStore,
    queue: MockJobQueue,
}

/// One account, `main`, with $10 bought on the 20th (limit 10) and one job in flight.
fn mocks() -> Mocks {
    let mut reports = MockReportStore::new();
    reports.expect_usage_rows().returning(|from, to| {
        Ok(usage_rows()
            .into_iter()
            .filter(|r| {
                let midnight = r.day.and_hms_opt(0, 0, 0).unwrap().and_utc();
                midnight >= from.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc() && midnight < to
            })
            .collect())
    });
    reports.expect_requests_by_day().returning(|from, to| {
        Ok(requests()
            .into_iter()
            .filter(|d| d.day >= from.date_naive() && d.day.and_hms_opt(0, 0, 0).unwrap().and_utc() < to)
            .collect())
    });
    reports
        .expect_job_counts()
        .returning(|| Ok(JobCounts { queued: 2, running: 1, succeeded: 7, failed: 1, ..JobCounts::default() }));
    reports.expect_job_timings().returning(|from, to| {
        Ok(timings().into_iter().filter(|t| t.enqueued_at < to && t.finished_at.is_none_or(|f| f > from)).collect())
    });
    reports.expect_slot_intervals().returning(|from, to| {
        Ok(slots().into_iter().filter(|s| s.claimed_at < to && s.released_at.is_none_or(|r| r > from)).collect())
    });
    let mut accounts = MockAccountStore::new();
    accounts.expect_list_accounts().returning(|| {
        Ok(vec![AccountRecord {
            id: AccountId::new("main"),
            key_names: vec!["primary".into()],
            disabled: false,
            locked: None,
            limit_override: None,
            retired_since: None,
        }])
    });
    accounts
        .expect_purchases()
        .returning(|_| Ok(vec![CreditPurchase { amount: Money::from_dollars(10), purchased_at: at(20, 9, 0, 0) }]));
    accounts.expect_spends().returning(|_| Ok(vec![]));
    let mut queue = MockJobQueue::new();
    queue.expect_in_flight_by_account().returning(|| Ok(vec![(AccountId::new("main"), 1)]));
    Mocks { reports, accounts, queue }
}

fn sources(m: &Mocks) -> Sources<'_> {
    Sources { reports: &m.reports, accounts: &m.accounts, queue: &m.queue }
}

#[tokio::test]
async fn the_daily_report_adds_up_the_day_with_the_month_discount() {
    let m = mocks();
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let period = Period::previous(ReportKind::Day, now());
    let report = assemble::report(&sources(&m), &rules, period, now()).await.unwrap();

    let t = &report.usage.total;
    assert_eq!((t.jobs, t.succeeded, t.failed), (6, 5, 1));
    assert_eq!(t.user_charged, Money::from_micros(199_000));
    assert_eq!(t.fal_list, Money::from_micros(199_000));
    assert_eq!(t.fal_discounted, Money::from_micros(189_050), "5 % off: 1 209 requests this month");
    assert_eq!(report.requests, 7);
    assert_eq!(report.trend_days.first(), Some(&date(18)));
    assert_eq!(report.trend_days.len(), 7);
    let flux = report.models.iter().find(|m| m.model == FLUX).unwrap();
    assert_eq!(flux.days[2], (1, Money::from_micros(40_000)), "the 20th");
    assert_eq!(flux.days[6], (4, Money::from_micros(160_000)), "the 24th");
    assert_eq!(report.accounts[0].days[6], (date(24), 3, 10), "three at once under a limit of 10");
    assert_eq!(report.accounts[0].days[0], (date(18), 0, 2), "before the purchase the limit was 2");
    let waits = report.waits.unwrap();
    assert_eq!((waits.jobs, waits.p50, waits.p95, waits.max), (3, 4.0, 8.0, 8.0));
    // Ten slots were never all busy.
    assert_eq!((report.saturation.busy, report.saturation.saturated), (TimeDelta::seconds(30), TimeDelta::zero()));

    let text = text::report(&report);
    for line in [
        "Daily report — 2026-11-24 (UTC)",
        "Jobs finished: 6 (5 ok, 1 failed, 0 canceled); 7 requests sent to fal",
        "Users were charged $0.1990 (refunded $0.1010)",
        "fal would charge $0.1891 after volume discount (list price $0.1990); margin $0.0100",
        "  2026-11: 1209 requests, tier volume (5% off)",
        "  fal-ai/flux/schnell: 4 jobs (4 ok, 0 failed, 0 canceled); users charged $0.1600, fal $0.1520 (list $0.1600)",
        "  1: 3 jobs (3 ok, 0 failed, 0 canceled); users charged $0.1200, fal $0.1140 (list $0.1200)",
        "  main: 6 jobs, fal $0.1891 (list $0.1990)",
        "Queue waits: median 4.0 s, p95 8.0 s, longest 8.0 s (3 jobs)",
        "At full capacity (10 slots) with jobs waiting: 0.0 s of 30 s busy time (0%)",
        "  main: peak 3 in flight (limit 10)",
        "Now: 2 queued, 1 in flight (0 dispatching, 0 submitted, 1 running)",
        "  main: 1/10 in flight, balance $10.0000",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }

    let png = chart::render(&report).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (chart::WIDTH, chart::HEIGHT));
    assert_eq!((width, height), (1200, 1350));
    assert!(png.len() > 10_000, "a drawn chart, not a blank page: {} bytes", png.len());
    if let Ok(path) = std::env::var("MEDIAGEN_CHART_OUT") {
        std::fs::write(path, &png).unwrap();
    }
}

#[tokio::test]
async fn saturation_counts_full_slots_with_a_backlog() {
    let m = mocks();
    let period = Period::previous(ReportKind::Day, now());
    // With two slots: from 10:00:05 to 10:00:10 both are taken and job 3 waits.
    let s = assemble::saturation(&m.reports, 2, period.from, period.to).await.unwrap();
    assert_eq!((s.busy, s.saturated), (TimeDelta::seconds(30), TimeDelta::seconds(5)));
    assert!((s.percent() - 100.0 / 6.0).abs() < 1e-9);
}

#[tokio::test]
async fn the_cost_allocation_has_a_row_per_user_and_model() {
    let m = mocks();
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let period = Period::to_date(ReportKind::Month, now());
    let costs = assemble::cost_allocation(&sources(&m), &rules, period, now()).await.unwrap();
    let (file_name, csv) = csv::cost_allocation(&costs);
    assert_eq!(file_name, "mediagen-costs-month-2026-11-01.csv");
    assert_eq!(
        csv,
        "user_id,model,jobs,succeeded,failed,canceled,charged_usd,refunded_usd,fal_list_usd,fal_discounted_usd\n\
         1,fal-ai/flux/schnell,4,4,0,0,0.160000,0.040000,0.160000,0.152000\n\
         2,fal-ai/nano-banana,3,2,1,0,0.078000,0.072000,0.078000,0.074100\n\
         3,fal-ai/flux/schnell,1,1,0,0,0.040000,0.010000,0.040000,0.038000\n\
         total,,8,7,1,0,0.278000,0.122000,0.278000,0.264100\n"
    );
}

#[tokio::test]
async fn metrics_export_the_live_counters() {
    let m = mocks();
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let counters =
        [Counter { name: "mediagen_prompt_cache_hits_total", help: "Prompts served from the cache.", value: 4 }];
    // An hour after the three jobs of the 24th, so their waits are recent.
    let now = at(24, 10, 30, 0);
    let live = assemble::live(&sources(&m), &rules, now).await.unwrap();
    let body = prometheus::render(&live, &counters);
    for line in [
        "# TYPE mediagen_jobs gauge",
        "mediagen_jobs{state=\"queued\"} 2",
        "mediagen_jobs{state=\"succeeded\"} 7",
        "mediagen_queue_length 2",
        "mediagen_account_in_flight{account=\"main\"} 1",
        "mediagen_account_limit{account=\"main\"} 10",
        "mediagen_account_usable{account=\"main\"} 1",
        "mediagen_account_balance_dollars{account=\"main\"} 10.0",
        // The 24th's rows (today) and the 20th's are this month's; the 25th is still ahead.
        "mediagen_spend_dollars{period=\"today\",kind=\"user_charged\"} 0.199",
        "mediagen_spend_dollars{period=\"month\",kind=\"fal_list\"} 0.239",
        "mediagen_spend_dollars{period=\"month\",kind=\"fal_discounted\"} 0.22705",
        "mediagen_finished_jobs{period=\"month\"} 7",
        "mediagen_month_requests 1208",
        "mediagen_month_discount_percent 5",
        "mediagen_queue_wait_seconds{quantile=\"0.95\"} 8.0",
        "mediagen_queue_wait_jobs 3",
        "# TYPE mediagen_prompt_cache_hits counter",
        "mediagen_prompt_cache_hits_total 4",
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in:\n{body}");
    }
    assert_eq!(prometheus::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8");
}

/// The whole `/metrics` document, read back line by line the way a scraper reads it: every
/// sample follows the `# TYPE` of its own family, no family is declared twice, label values
/// with quotes, backslashes and newlines come back intact, and `# EOF` closes it.
#[tokio::test]
async fn metrics_are_one_openmetrics_document() {
    let m = mocks();
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let mut live = assemble::live(&sources(&m), &rules, at(24, 10, 30, 0)).await.unwrap();
    let odd = "a\"b\\c\nd";
    let mut odd_account = live.accounts[0].clone();
    odd_account.id = AccountId::new(odd);
    live.accounts.push(odd_account);
    let mut times = JobTimes::new(ModelId::new("fal-ai/\"odd\"\\model"), AccountId::new(odd));
    let enqueued = at(24, 10, 0, 0);
    // Above every bucket's bound: counted only in `+Inf`.
    times.observe(enqueued, enqueued + TimeDelta::seconds(1), enqueued + TimeDelta::hours(1));
    let counters = vec![
        Counter { name: "mediagen_accepted_total", help: "Requests accepted.", value: 3 },
        Counter { name: "mediagen_refused_total", help: "Requests refused.", value: 0 },
    ];
    let outcomes = vec![
        OutcomeCount {
            model: ModelId::new("fal-ai/flux/dev"),
            account: Some(AccountId::new(odd)),
            outcome: JobOutcome::Succeeded,
            count: 4,
        },
        OutcomeCount { model: ModelId::new("fal-ai/flux/dev"), account: None, outcome: JobOutcome::Canceled, count: 1 },
    ];
    let body = prometheus::render_metrics(&Metrics { live, counters, job_times: vec![times], outcomes });

    assert!(body.ends_with("\n# EOF\n"), "{body}");
    assert!(body.contains("# TYPE mediagen_job_outcomes counter\n"), "{body}");
    let succeeded =
        r#"mediagen_job_outcomes_total{model="fal-ai/flux/dev",account="a\"b\\c\nd",outcome="succeeded"} 4"#;
    assert!(body.contains(succeeded), "{body}");
    let canceled = r#"mediagen_job_outcomes_total{model="fal-ai/flux/dev",account="none",outcome="canceled"} 1"#;
    assert!(body.contains(canceled), "{body}");
    assert_eq!(body.matches("# EOF").count(), 1, "{body}");
    assert!(body.contains(r#"mediagen_account_limit{account="a\"b\\c\nd"} 10"#), "{body}");
    let series = r#"model="fal-ai/\"odd\"\\model",account="a\"b\\c\nd""#;
    assert!(body.contains(&format!("mediagen_fal_latency_seconds_bucket{{le=\"1800.0\",{series}}} 0\n")), "{body}");
    assert!(body.contains(&format!("mediagen_fal_latency_seconds_bucket{{le=\"+Inf\",{series}}} 1\n")), "{body}");
    let (mut helped, mut typed) = (HashSet::new(), HashSet::new());
    let mut family: Option<(&str, &str)> = None;
    let mut label_values = HashSet::new();
    let mut samples = 0;
    for line in body.lines().filter(|&l| l != "# EOF") {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(helped.insert(name), "HELP of {name} twice in:\n{body}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE of {name} without its HELP in:\n{body}");
            assert!(typed.insert(name), "family {name} declared twice in:\n{body}");
            family = Some((name, kind));
        } else {
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let (name, labels) = parse_sample(line).unwrap_or_else(|e| panic!("{e}: {line:?} in:\n{body}"));
            let (declared, kind) = family.unwrap_or_else(|| panic!("{line:?} before any TYPE"));
            let suffixes: &[&str] = match kind {
                "gauge" => &[""],
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                other => panic!("unexpected type {other}"),
            };
            assert!(
                suffixes.iter().any(|s| name == format!("{declared}{s}")),
                "{line:?} is not in the {kind} family {declared} just declared"
            );
            label_values.extend(labels.into_iter().map(|(_, value)| value));
            samples += 1;
        }
    }
    assert!(samples > 40, "{samples} samples in:\n{body}");
    for family in ["mediagen_jobs", "mediagen_account_balance_dollars", "mediagen_accepted", "mediagen_job_seconds"] {
        assert!(typed.contains(family), "no {family} in:\n{body}");
    }
    assert!(label_values.contains(odd), "{odd:?} not read back from:\n{body}");
    assert!(label_values.contains("fal-ai/\"odd\"\\model"), "{body}");
}

/// A sample line's name and its labels with escapes undone; an error for anything the text
/// format does not allow (a value that is no number included).
fn parse_sample(line: &str) -> Result<(String, Vec<(String, String)>), String> {
    fn word(chars: &mut std::iter::Peekable<std::str::Chars>) -> String {
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':') {
            word.push(c);
        }
        word
    }
    let mut chars = line.chars().peekable();
    let name = word(&mut chars);
    if name.is_empty() {
        return Err("no metric name".into());
    }
    let mut labels = Vec::new();
    if chars.next_if_eq(&'{').is_some() {
        while chars.next_if_eq(&'}').is_none() {
            let key = word(&mut chars);
            if key.is_empty() || chars.next() != Some('=') || chars.next() != Some('"') {
                return Err("a label is not key=\"value\"".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")? {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            match chars.peek() {
                Some('}') => {}
                Some(',') => {
                    chars.next();
                }
                _ => return Err("labels not separated by commas".into()),
            }
        }
    }
    if chars.next() != Some(' ') {
        return Err("no space before the value".into());
    }
    let value: String = chars.collect();
    value.parse::<f64>().map_err(|_| format!("value {value:?} is not a number"))?;
    Ok((name, labels))
}

#[tokio::test]
async fn the_plan_reads_the_history_and_the_accounts() {
    let m = mocks();
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let settings = PlannerSettings::default();
    let report = assemble::capacity_plan(&sources(&m), &rules, &settings, now()).await.unwrap();
    let plan = &report.plan;
    assert_eq!(plan.arrivals, 3);
    assert_eq!((plan.current.accounts, plan.current.slots), (1, 10));
    assert!((plan.mean_service_secs - (20.0 + 25.0 + 2.0) / 3.0).abs() < 1e-9);
    assert_eq!(plan.demand.peak, 3);
    // Three jobs in a day are far below two slots' worth: no purchase needed.
    assert_eq!(plan.recommendation, Recommendation::Tier(0));
    assert_eq!(report.spend_last_window, Money::from_micros(278_000));
    let text = text::plan(&report);
    assert!(text.contains("Recommendation: no purchase needed"), "{text}");
    assert!(text.contains("Now: 1 account(s), 10 slots"), "{text}");
}

/// An account no longer configured takes no work, so its limit is no capacity: the
/// reports agree with the dispatcher on which accounts count.
#[tokio::test]
async fn a_retired_account_adds_no_capacity() {
    let mut m = mocks();
    let record = |name: &str, retired_since: Option<Timestamp>| AccountRecord {
        id: AccountId::new(name),
        key_names: vec!["primary".into()],
        disabled: false,
        locked: None,
        limit_override: None,
        retired_since,
    };
    let retired = record("old", Some(at(23, 8, 0, 0)));
    let live = record("main", None);
    m.accounts = MockAccountStore::new();
    m.accounts.expect_list_accounts().returning(move || Ok(vec![live.clone(), retired.clone()]));
    m.accounts
        .expect_purchases()
        .returning(|_| Ok(vec![CreditPurchase { amount: Money::from_dollars(10), purchased_at: at(20, 9, 0, 0) }]));
    m.accounts.expect_spends().returning(|_| Ok(vec![]));
    let (discounts, credit) = (VolumeDiscounts::default(), CreditPolicy::default());
    let rules = Rules { discounts: &discounts, credit: &credit };
    let states = assemble::account_states(&sources(&m), &rules, now()).await.unwrap();
    let old = states.iter().find(|s| s.id == AccountId::new("old")).unwrap();
    assert_eq!(old.limit, 10, "its credit still gives it a limit");
    assert!(!old.usable, "but it takes no work");
    assert_eq!(mediagen_domain::insights::usable_capacity(&states), 10, "only main's ten slots");
}
