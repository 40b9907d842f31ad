//! Operator intelligence on a real PostgreSQL database filled with a known history: alerts
//! and the scheduled summary fire once, and a second engine on the same database (a
//! restart, or another process) repeats none of them; `mediagen report` and `mediagen
//! plan` read the same history; `/metrics` serves it as OpenMetrics text over HTTP.

use async_trait::async_trait;
use chrono::{NaiveTime, TimeDelta, TimeZone, Utc};
use mediagen::insights::{ReportRequest, plan, report};
use mediagen::metrics::{Render, of_engine, serve};
use mediagen::settings::Settings;
use mediagen_domain::catalog::Catalog;
use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::insights::OperatorSummary;
use mediagen_domain::job::{JobSpec, Settlement};
use mediagen_domain::quota::{Plan, Plans};
use mediagen_domain::{
    AccountId, ChatId, IdempotencyKey, Job, JobId, JobState, Language, MediaRef, ModelId, ModelKind, Money, Prompt,
    RequestId, Role, Timestamp, UserId,
};
use mediagen_engine::{Engine, EngineConfig, Ports, ReportKind};
use mediagen_ports::{
    AccountCapacity, AccountStore, ClaimRequest, DeliveredMedia, EnqueueOutcome, EnqueueRequest, Finish, JobQueue,
    MediaBytes, MessageRef, Messaging, MessagingError, MockClock, MockGeneration, NewUser, OperatorAlert, Recipient,
    RemoteHandle, ResultMedia, Severity, UserNotice, UserStore,
};
use mediagen_postgres::PgStore;
use mediagen_postgres::testing::{TestDb, fresh_database};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn at(h: u32, m: u32) -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 25, h, m, 0).unwrap()
}

fn now() -> Timestamp {
    at(12, 0)
}

/// Records what the engine tells operators; everything else is never called here.
#[derive(Default)]
struct Recorder {
    alerts: Mutex<Vec<OperatorAlert>>,
    files: Mutex<Vec<(OperatorAlert, MediaBytes)>>,
}

#[async_trait]
impl Messaging for Recorder {
    async fn send_notice(&self, to: Recipient, _: &UserNotice) -> Result<MessageRef, MessagingError> {
        Ok(MessageRef { chat: to.chat, message_id: 1 })
    }

    async fn edit_notice(&self, _: &MessageRef, _: Language, _: &UserNotice) -> Result<(), MessagingError> {
        Ok(())
    }

    async fn send_results(
        &self,
        _: Recipient,
        _: JobId,
        _: Vec<ResultMedia>,
        _: bool,
    ) -> Result<Vec<DeliveredMedia>, MessagingError> {
        Ok(Vec::new())
    }

    async fn answer_button(&self, _: &str, _: Option<String>) -> Result<(), MessagingError> {
        Ok(())
    }

    async fn notify_operators(&self, alert: &OperatorAlert) -> Result<(), MessagingError> {
        self.alerts.lock().unwrap().push(alert.clone());
        Ok(())
    }

    /// Renders the summary as the Telegram front end does: its text and its chart.
    async fn notify_operators_summary(&self, summary: &OperatorSummary) -> Result<(), MessagingError> {
        let report = &summary.report;
        let alert = OperatorAlert {
            severity: Severity::Info,
            title: summary.title.clone(),
            body: mediagen_reports::text::report(report),
        };
        let png = mediagen_reports::chart::render(report).map_err(|error| MessagingError::Other(error.into()))?;
        let chart = MediaBytes {
            bytes: png,
            content_type: "image/png".to_owned(),
            file_name: mediagen_reports::chart::file_name(report),
        };
        self.files.lock().unwrap().push((alert, chart));
        Ok(())
    }

    async fn fetch_input(&self, _: &MediaRef, _: u64) -> Result<MediaBytes, MessagingError> {
        Err(MessagingError::Other(anyhow::anyhow!("no input files here")))
    }
}

/// An engine on `store` at the fixed `now()`, with a $0.20 monthly budget and the daily
/// summary at 08:00 UTC.
fn engine(store: &PgStore, recorder: Arc<Recorder>) -> Engine {
    let store = Arc::new(store.clone());
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    let ports = Ports {
        generation: Arc::new(idle_fal()),
        messaging: recorder,
        queue: store.clone(),
        users: store.clone(),
        accounts: store.clone(),
        prompt_cache: store.clone(),
        alerts: store.clone(),
        usage: store.clone(),
        reports: store,
        clock: Arc::new(clock),
    };
    let mut config = EngineConfig::new(Catalog::builtin(), Plans::default(), "insights-test");
    config.budget.monthly_budget = Some(Money::from_cents(20));
    config.insights.daily_report_at = NaiveTime::from_hms_opt(8, 0, 0);
    config.insights.weekly_report_at = None;
    Engine::new(ports, config)
}

async fn enqueue(store: &PgStore, user: UserId, key: &str, when: Timestamp) -> Job {
    let request = EnqueueRequest {
        key: IdempotencyKey::new(key),
        user,
        chat: ChatId(user.0),
        spec: JobSpec {
            model: ModelId::new("fal-ai/nano-banana"),
            kind: ModelKind::TextToImage,
            prompt: Prompt::parse("a lighthouse at dawn").unwrap(),
            size: None,
            num_images: 1,
            input_media: vec![],
            seed: None,
            enhance_prompt: false,
        },
        hold: Money::from_cents(5),
        plan: Plan { name: "free".into(), daily_jobs: None, monthly_spend: None, max_in_flight: 10, max_queued: 10 },
        role: Role::User,
        now: when,
    };
    match store.enqueue(&request).await.unwrap() {
        EnqueueOutcome::Enqueued(job, _) => job,
        other => panic!("expected Enqueued, got {other:?}"),
    }
}

async fn claim(store: &PgStore, account: &AccountId, max: u32, when: Timestamp) -> Vec<JobId> {
    let request = ClaimRequest {
        owner: "owner".into(),
        lease_until: when + TimeDelta::hours(2),
        accounts: vec![AccountCapacity { account: account.clone(), limit: 2, usable: true }],
        overhang: 0,
        max_jobs: max,
        in_flight_caps: vec![],
        now: when,
    };
    store.claim(&request).await.unwrap().into_iter().map(|c| c.job.id).collect()
}

async fn run(store: &PgStore, job: JobId, account: &AccountId, started: Timestamp, done: Timestamp) {
    let id = format!("req-{}", job.0);
    let handle = RemoteHandle {
        account: account.clone(),
        model: ModelId::new("fal-ai/nano-banana"),
        request_id: RequestId::new(&id),
        status_url: format!("http://fal.test/{id}/status"),
        response_url: format!("http://fal.test/{id}"),
        cancel_url: format!("http://fal.test/{id}/cancel"),
    };
    let lease = store.get_job(job).await.unwrap().unwrap().lease.expect("claimed");
    store.mark_submitted(job, &lease, &handle, started).await.unwrap();
    let finish = Finish {
        lease: Some(lease),
        state: JobState::Succeeded,
        settlement: Settlement {
            user_charge: Money::from_cents(4),
            user_refund: Money::from_cents(1),
            fal_cost: Money::from_cents(4),
        },
        media: vec![],
        now: done,
    };
    store.finish(job, &finish).await.unwrap();
}

/// Account `main` runs two jobs at once (a negotiated limit) and holds $50 bought 350 days
/// ago, mostly unspent. This morning three jobs arrived at 09:00: two ran at once, the
/// third waited until 09:20; all were done at 09:40 (12¢ billed by fal).
async fn history() -> (TestDb, PgStore, AccountId) {
    let db = fresh_database().await;
    let store = db.store().await;
    let main = store.upsert_account(&AccountId::new("main"), &["primary".to_owned()]).await.unwrap().id;
    store.set_admin_state(&main, false, Some(2)).await.unwrap();
    let purchase = CreditPurchase { amount: Money::from_dollars(50), purchased_at: now() - TimeDelta::days(350) };
    store.add_purchase(&main, &purchase).await.unwrap();
    let user = NewUser { id: UserId(42), language: Language::En, plan: "free".into(), role: Role::User };
    let user = store.upsert_user(&user).await.unwrap().id;

    let mut jobs: Vec<Job> = Vec::new();
    for key in ["a", "b", "c"] {
        jobs.push(enqueue(&store, user, key, at(9, 0)).await);
    }
    let first = claim(&store, &main, 3, at(9, 0)).await;
    assert_eq!(first, vec![jobs[0].id, jobs[1].id], "two slots");
    run(&store, jobs[1].id, &main, at(9, 0), at(9, 20)).await;
    assert_eq!(claim(&store, &main, 3, at(9, 20)).await, vec![jobs[2].id]);
    run(&store, jobs[0].id, &main, at(9, 0), at(9, 40)).await;
    run(&store, jobs[2].id, &main, at(9, 20), at(9, 40)).await;
    (db, store, main)
}

async fn fired(store: &PgStore) -> Vec<(String, String)> {
    sqlx::query_as("SELECT key, period FROM alerts ORDER BY key, period").fetch_all(store.pool()).await.unwrap()
}

#[tokio::test]
async fn alerts_and_the_daily_summary_fire_once_and_a_second_engine_repeats_none() {
    let (db, store, _) = history().await;
    let first = Arc::new(Recorder::default());
    engine(&store, first.clone()).operator.run_checks().await;

    let titles: Vec<String> = first.alerts.lock().unwrap().iter().map(|a| a.title.clone()).collect();
    assert_eq!(
        titles,
        vec![
            "Budget: 50% of $0.2000 reached".to_owned(),
            "fal account main: $49.8800 of credit expires soon".to_owned(),
            "fal capacity: 50% of today's busy time at full capacity with jobs waiting".to_owned(),
        ]
    );
    let files = first.files.lock().unwrap().clone();
    assert_eq!(files.len(), 1);
    assert!(files[0].0.body.starts_with("Daily report — 2026-11-24 (UTC)\n"), "{}", files[0].0.body);
    assert_eq!(files[0].1.content_type, "image/png");
    assert_eq!(files[0].1.file_name, "mediagen-day-2026-11-24.png");
    let png = &files[0].1.bytes;
    let size =
        (u32::from_be_bytes(png[16..20].try_into().unwrap()), u32::from_be_bytes(png[20..24].try_into().unwrap()));
    assert_eq!(size, (1200, 1350));
    assert_eq!(
        fired(&store).await,
        [
            ("budget-50", "2026-11"),
            ("credit-expiry:main", purchase_period().as_str()),
            ("report-daily", "2026-11-25"),
            ("saturation", "2026-11-25"),
        ]
        .iter()
        .map(|(k, p)| ((*k).to_owned(), (*p).to_owned()))
        .collect::<Vec<_>>()
    );

    // The same engine again, and a second engine on its own connection: nothing new.
    engine(&store, first.clone()).operator.run_checks().await;
    let second = Arc::new(Recorder::default());
    let other_process = db.separate_store(2).await;
    engine(&other_process, second.clone()).operator.run_checks().await;
    assert_eq!(first.alerts.lock().unwrap().len(), 3);
    assert_eq!(first.files.lock().unwrap().len(), 1);
    assert!(second.alerts.lock().unwrap().is_empty(), "{:?}", second.alerts.lock().unwrap());
    assert!(second.files.lock().unwrap().is_empty());
    assert_eq!(fired(&store).await.len(), 4);
}

fn purchase_period() -> String {
    (now() - TimeDelta::days(350)).to_rfc3339()
}

fn settings(db: &TestDb) -> Settings {
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let env: HashMap<String, String> =
        [("DATABASE_URL".to_owned(), db.url()), ("FAL_KEY".to_owned(), "k".to_owned())].into_iter().collect();
    Settings::load(&home, None, &env).unwrap()
}

#[tokio::test]
async fn the_cli_reports_and_plans_from_the_same_history() {
    let (db, _store, _) = history().await;
    let settings = settings(&db);
    let chart = std::env::temp_dir().join(format!("mediagen-chart-{}.png", db.name()));

    let text = report(&settings, ReportRequest::Summary(ReportKind::Day), false, Some(&chart), now()).await.unwrap();
    for line in [
        "Daily report — 2026-11-25 (UTC)",
        "Jobs finished: 3 (3 ok, 0 failed, 0 canceled); 3 requests sent to fal",
        "Users were charged $0.1200 (refunded $0.0300)",
        "fal would charge $0.1200 after volume discount (list price $0.1200); margin $0.0000",
        "Queue waits: median 0.0 s, p95 20 min 00 s, longest 20 min 00 s (3 jobs)",
        "At full capacity (2 slots) with jobs waiting: 20 min 00 s of 40 min 00 s busy time (50%)",
        "  main: peak 2 in flight (limit 2)",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
    let png = std::fs::read(&chart).unwrap();
    std::fs::remove_file(&chart).ok();
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1200);
    assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 1350);

    let csv = report(&settings, ReportRequest::parse("csv").unwrap(), false, None, now()).await.unwrap();
    assert_eq!(
        csv,
        "user_id,model,jobs,succeeded,failed,canceled,charged_usd,refunded_usd,fal_list_usd,fal_discounted_usd\n\
         42,fal-ai/nano-banana,3,3,0,0,0.120000,0.030000,0.120000,0.120000\n\
         total,,3,3,0,0,0.120000,0.030000,0.120000,0.120000\n"
    );

    let text = plan(&settings, Some(10), now()).await.unwrap();
    assert!(text.contains("Now: 1 account(s), 2 slots"), "{text}");
    assert!(text.contains("Target: p95 wait ≤ 10 s"), "{text}");
    assert!(text.contains("Observed queue waits: median 0.0 s, p95 20 min 00 s"), "{text}");
}

async fn get(address: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

async fn start(render: Render) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(serve(listener, render, shutdown));
    (address, stop)
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let (_db, store, _) = history().await;
    let (address, stop) = start(of_engine(engine(&store, Arc::default()))).await;
    let response = get(address, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{response}"
    );
    assert!(response.ends_with("\n# EOF\n"), "{response}");
    assert_eq!(response.matches("# EOF").count(), 1, "{response}");
    for line in [
        "mediagen_jobs{state=\"succeeded\"} 3",
        "mediagen_queue_length 0",
        "mediagen_account_limit{account=\"main\"} 2",
        "mediagen_spend_dollars{period=\"today\",kind=\"fal_list\"} 0.12",
        "mediagen_month_requests 3",
        "mediagen_prompt_cache_hits_total 0",
    ] {
        assert!(response.lines().any(|l| l == line), "missing {line:?} in:\n{response}");
    }
    assert!(get(address, "/other").await.starts_with("HTTP/1.1 404 Not Found\r\n"));
    stop.send_replace(true);

    let failing: Render = Arc::new(|| Box::pin(async { Err("database down".to_owned()) }));
    let (address, _stop) = start(failing).await;
    let response = get(address, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{response}");
    assert!(response.ends_with("metrics unavailable: database down\n"), "{response}");
}

/// fal, never called by these stories except for the keys the dispatcher looks at.
fn idle_fal() -> MockGeneration {
    let mut fal = MockGeneration::new();
    fal.expect_key_statuses().returning(Vec::new);
    fal.expect_probe_refused_keys().returning(Vec::new);
    fal
}
