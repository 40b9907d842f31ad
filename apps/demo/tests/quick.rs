//! A short demo run in-process, checked for correctness only (never for timing): every
//! user got an answer, every accepted job finished with exactly one outcome, no fal
//! account ran more than its limit, and the report lists the operator's alerts. Once on
//! the embedded SQLite default and once on PostgreSQL (`TEST_DATABASE_URL`, else the
//! local server), each on a database of its own.

use mediagen_demo::{Options, Report, StatusMode, storage};
use mediagen_stack::Database;
use tokio::sync::Mutex;

/// One run at a time: two bots, two simulators and two crowds at once would only slow
/// each other down on a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn quick_run(database: Database) -> (Report, String) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut options = Options::quick();
    options.status = StatusMode::Off;
    options.storage = database;
    let report = mediagen_demo::run(options).await.expect("the demo runs");
    let shown = report.to_string();
    (report, shown)
}

fn check(report: &Report, shown: &str, removed: &str) {
    assert!(report.ok(), "the demo found problems:\n{shown}");
    assert!(report.unanswered.is_empty(), "users without an answer: {:?}", report.unanswered);
    assert!(report.jobs.accepted > 0, "{shown}");
    assert_eq!(report.jobs.unfinished, 0, "{shown}");
    assert_eq!(
        report.jobs.accepted,
        report.jobs.succeeded + report.jobs.failed + report.jobs.canceled,
        "every accepted job ended one way"
    );
    assert!(report.jobs.failed >= 1, "the content-policy prompt fails: {shown}");
    assert!(report.users.iter().all(|u| u.answers > 0), "{shown}");
    let by_model: u32 = report.cost_by_model.iter().map(|m| m.jobs).sum();
    assert_eq!(by_model, report.jobs.accepted, "every job is in the cost table: {shown}");
    assert!(report.cost_by_model.iter().any(|m| m.charged.micros() > 0), "{shown}");
    assert!(report.waits.is_some(), "{shown}");

    assert_eq!(report.accounts.len(), 2);
    for account in &report.accounts {
        assert!(account.fal_max_running <= account.limit, "{} exceeded its limit:\n{shown}", account.name);
        assert!(account.peak_held_at_fal <= account.limit + account.overhang, "{shown}");
    }
    let limits: Vec<(&str, u32)> = report.accounts.iter().map(|a| (a.name.as_str(), a.limit)).collect();
    assert_eq!(limits, [("alpha", 10), ("beta", 20)], "$10 and $100 in the window");

    assert!(report.alert_keys.iter().any(|k| k == "limit-drop:beta"), "{shown}");
    assert!(!report.alerts.is_empty(), "{shown}");
    assert!(report.alerts.iter().any(|a| a.contains("beta")), "the limit-drop alert names the account: {shown}");
    for alert in &report.alerts {
        let title = alert.lines().next().unwrap_or_default();
        assert!(shown.contains(title), "the report shows what the alerts said ({title:?}):\n{shown}");
    }
    assert!(report.cleanup.iter().any(|c| c.contains(removed)), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_demo_on_sqlite_answers_everyone_and_keeps_within_fal_limits() {
    // A file of its own, so `just demo` running at the same time is not disturbed.
    let database = storage::sqlite(&format!("mediagen_demo_test_{}", std::process::id())).expect("a plain name");
    let Database::SqliteFile(file) = &database else { unreachable!("a SQLite file") };
    let file = file.clone();
    let (report, shown) = quick_run(database).await;
    check(&report, &shown, "removed");
    assert!(shown.contains("SQLite file"), "{shown}");
    for suffix in ["", "-wal", "-shm"] {
        let mut path = file.clone().into_os_string();
        path.push(suffix);
        assert!(!std::path::Path::new(&path).exists(), "{} is left behind", path.to_string_lossy());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_demo_on_postgres_answers_everyone_and_keeps_within_fal_limits() {
    let admin_url = std::env::var("TEST_DATABASE_URL").ok();
    let name = format!("mediagen_demo_test_pg_{}", std::process::id());
    let (report, shown) = quick_run(storage::postgres(admin_url, name)).await;
    check(&report, &shown, "dropped");
}
