//! The storage setting: one URL picks SQLite or PostgreSQL, `mediagen migrate` works on
//! both, no URL means a SQLite file in the working directory, and `mediagen
//! migrate-storage` moves a filled SQLite database into PostgreSQL with nothing lost.

use mediagen_domain::credit::CreditPurchase;
use mediagen_domain::job::Settlement;
use mediagen_domain::{AccountId, FailureReason, JobId, JobState, MediaRef, Money, UserId};
use mediagen_ports::{
    AccountLock, AccountStore, AlertLog, EnqueueOutcome, Finish, JobQueue, MediaRecord, PromptCache, ReportStore,
    UsageStore, UserStore,
};
use mediagen_postgres::PgStore;
use mediagen_sqlite::SqliteStore;
use mediagen_storage_contract::support::{
    add_account, add_user, add_user_on, as_holder, capacity, cents, claim_request, complete, enqueue, handle, lease_of,
    request, success, t,
};
use std::path::Path;
use std::process::Command;

/// The `mediagen` binary, run from `dir` with the shipped configuration and only the given
/// environment (no inherited DATABASE_URL).
fn mediagen(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediagen"));
    command.current_dir(dir).arg("--home").arg(&home).args(args).env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the mediagen binary")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "mediagen failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn open_picks_the_adapter_from_the_url() {
    let sqlite = mediagen_sqlite::testing::fresh_database().await;
    let storage = mediagen::storage::open(&sqlite.url(), 2).await.unwrap();
    assert_eq!(storage.backend, mediagen::storage::Backend::Sqlite);
    add_user(&sqlite.store(), 7).await;
    assert_eq!(storage.users.list_users().await.unwrap().len(), 1, "the same file");

    let postgres = mediagen_postgres::testing::fresh_database().await;
    let storage = mediagen::storage::open(&postgres.url(), 2).await.unwrap();
    assert_eq!(storage.backend, mediagen::storage::Backend::Postgres);
    assert!(storage.reports.job_counts().await.unwrap() == Default::default());
    let postgresql = postgres.url().replacen("postgres://", "postgresql://", 1);
    assert_eq!(mediagen::storage::open(&postgresql, 2).await.unwrap().backend, mediagen::storage::Backend::Postgres);

    let error = mediagen::storage::open("mysql://root:hunter2@db/mediagen", 2).await.unwrap_err();
    assert!(!format!("{error:#}").contains("hunter2"), "{error:#}");
}

#[tokio::test]
async fn migrate_defaults_to_a_sqlite_file_in_the_working_directory_and_works_on_postgres() {
    let scratch = mediagen_sqlite::testing::fresh_database().await;
    let dir = scratch.file().parent().unwrap().join("workdir");
    std::fs::create_dir_all(&dir).unwrap();

    let out = stdout(&mediagen(&dir, &[], &["migrate"]));
    assert!(out.contains("migrations applied"), "{out}");
    let file = dir.join("mediagen.sqlite");
    assert!(file.exists(), "no DATABASE_URL: the SQLite file is created where the bot runs");
    let store = SqliteStore::connect(&format!("sqlite://{}", file.display()), 1).await.unwrap();
    let applied: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(store.pool()).await.unwrap();
    assert_eq!(applied as usize, mediagen_sqlite::MIGRATOR.iter().count());

    let postgres = mediagen_postgres::testing::fresh_database().await;
    let out = stdout(&mediagen(&dir, &[("DATABASE_URL", &postgres.url())], &["migrate"]));
    assert!(out.contains("migrations applied"), "{out}");

    let wrong = mediagen(&dir, &[("DATABASE_URL", "mysql://root:hunter2@db/x")], &["migrate"]);
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(said.contains("DATABASE_URL must start with") && !said.contains("hunter2"), "{said}");
}

/// A few days of a small bot, written through the ports: users on two plans, two accounts
/// (one locked, one with a negotiated limit and purchases), jobs that succeeded, failed,
/// were canceled, retried, are still in flight or queued, media, the prompt cache, alerts.
async fn fill(store: &SqliteStore) {
    let (a, b) = (add_account(store, "a").await, add_account(store, "b").await);
    store
        .add_purchase(&a, &CreditPurchase { amount: Money::from_dollars(100), purchased_at: t(-86_400) })
        .await
        .unwrap();
    store.add_purchase(&b, &CreditPurchase { amount: Money::from_dollars(25), purchased_at: t(-3_600) }).await.unwrap();
    store.set_admin_state(&b, false, Some(12)).await.unwrap();
    for id in 1..=6 {
        add_user(store, id).await;
    }
    add_user_on(store, 99, "pro", mediagen_domain::Role::Admin).await;

    let mut now = 0;
    for round in 0..8_i64 {
        for user in 1..=6 {
            now += 7;
            let key = format!("r{round}-u{user}");
            let mut request = request(UserId(user), &key, cents(3 + user), t(now));
            request.spec.input_media = vec![MediaRef { file_id: format!("file-{key}"), size_bytes: Some(1_000) }];
            let EnqueueOutcome::Enqueued(..) = store.enqueue(&request).await.unwrap() else { panic!("{key}") };
        }
        let account = if round % 2 == 0 { &a } else { &b };
        let claimed = store.claim(&claim_request("w", vec![capacity(account, 4)], 4, t(now))).await.unwrap();
        for (i, c) in claimed.iter().enumerate() {
            now += 3;
            match (round + i as i64) % 4 {
                0 => {
                    let job = complete(store, &c.job, &c.account, t(now)).await;
                    let media = MediaRecord {
                        job: job.id,
                        fal_url: format!("https://v3.fal.media/files/{}.png", job.id.0),
                        telegram_file_id: Some(format!("AgAD{}", job.id.0)),
                        size_bytes: Some(123_456),
                        content_type: Some("image/png".into()),
                    };
                    store.save_media(&media).await.unwrap();
                }
                1 => {
                    store
                        .mark_submitted(
                            c.job.id,
                            &lease_of(store, c.job.id).await,
                            &handle(&c.account, c.job.id),
                            t(now),
                        )
                        .await
                        .unwrap();
                    store.mark_running(c.job.id, &lease_of(store, c.job.id).await, t(now + 1)).await.unwrap();
                    let failed = Finish {
                        lease: None,
                        state: JobState::Failed { reason: FailureReason::ContentPolicy },
                        settlement: Settlement {
                            user_charge: Money::ZERO,
                            user_refund: c.job.hold,
                            fal_cost: cents(2),
                        },
                        media: vec![],
                        now: t(now + 2),
                    };
                    store.finish(c.job.id, &as_holder(store, c.job.id, &failed).await).await.unwrap();
                }
                2 => {
                    store
                        .requeue(
                            c.job.id,
                            &lease_of(store, c.job.id).await,
                            "fal answered 503",
                            Some(t(now + 30)),
                            t(now),
                        )
                        .await
                        .unwrap();
                }
                _ => {
                    // Left running at fal.
                    store
                        .mark_submitted(
                            c.job.id,
                            &lease_of(store, c.job.id).await,
                            &handle(&c.account, c.job.id),
                            t(now),
                        )
                        .await
                        .unwrap();
                    store.mark_running(c.job.id, &lease_of(store, c.job.id).await, t(now + 1)).await.unwrap();
                }
            }
        }
        // Someone cancels their newest job (refunded if it is still queued).
        let user = UserId(1 + round % 6);
        let newest = store.recent_jobs(user, 1).await.unwrap().remove(0);
        store.cancel(newest.id, user, t(now + 1)).await.unwrap(); // Canceled, in flight or finished.
        now += 86_400 / 4;
    }
    enqueue(store, UserId(99), "admin-1", t(now)).await;
    let claimed = store.claim(&claim_request("w", vec![capacity(&a, 100)], 1, t(now))).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .set_lock(&a, Some(AccountLock { reason: "User is locked. Reason: Exhausted balance".into(), since: t(now) }))
        .await
        .unwrap();
    store.cache_put("enhance:fox", "a red fox, snow, golden hour", t(now + 86_400)).await.unwrap();
    store.cache_put("enhance:cat", "a cat", t(now - 1)).await.unwrap();
    assert!(store.record_alert("budget-80", "2026-11", t(now)).await.unwrap());
    assert!(store.record_alert("limit-drop:a", "2026-11-27", t(now)).await.unwrap());
}

const TABLES: [&str; 9] =
    ["users", "accounts", "credit_purchases", "jobs", "job_events", "ledger", "media", "prompt_cache", "alerts"];

async fn counts_sqlite(store: &SqliteStore) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        counts.push(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.unwrap());
    }
    counts
}

async fn counts_postgres(store: &PgStore) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        counts.push(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(store.pool()).await.unwrap());
    }
    counts
}

#[tokio::test]
async fn migrate_storage_moves_a_filled_database_with_nothing_lost() {
    let sqlite_db = mediagen_sqlite::testing::fresh_database().await;
    let sqlite = sqlite_db.store();
    fill(&sqlite).await;
    let states = sqlite.job_counts().await.unwrap();
    assert!(
        [states.queued, states.dispatching, states.running + states.submitted, states.succeeded, states.failed]
            .iter()
            .all(|n| *n > 0)
            && states.canceled > 0,
        "jobs in every kind of state: {states:?}"
    );
    let postgres_db = mediagen_postgres::testing::fresh_database().await;
    let postgres = postgres_db.store().await;

    // Through the binary, as an operator would.
    let dir = sqlite_db.file().parent().unwrap().to_path_buf();
    let out =
        stdout(&mediagen(&dir, &[], &["migrate-storage", "--from", &sqlite_db.url(), "--to", &postgres_db.url()]));
    assert!(out.contains("jobs") && out.contains("ledger charge"), "{out}");

    // Row counts and ledger totals.
    let counts = counts_sqlite(&sqlite).await;
    assert!(counts.iter().all(|n| *n > 0), "every table was filled: {counts:?}");
    assert_eq!(counts_postgres(&postgres).await, counts);
    let ledger_sql = "SELECT kind, sum(amount_micros) FROM ledger GROUP BY kind ORDER BY kind";
    let before: Vec<(String, i64)> = sqlx::query_as(ledger_sql).fetch_all(sqlite.pool()).await.unwrap();
    let after: Vec<(String, i64)> =
        sqlx::query_as("SELECT kind, sum(amount_micros)::int8 FROM ledger GROUP BY kind ORDER BY kind COLLATE \"C\"")
            .fetch_all(postgres.pool())
            .await
            .unwrap();
    assert_eq!(after, before);
    assert_eq!(before.len(), 4, "hold, charge, refund, fal cost: {before:?}");

    // What the ports read is the same on both sides.
    let (from, to) = (t(-86_400 * 2), t(86_400 * 10));
    let now = t(86_400 * 3);
    assert_eq!(postgres.list_users().await.unwrap(), sqlite.list_users().await.unwrap());
    assert_eq!(postgres.list_accounts().await.unwrap(), sqlite.list_accounts().await.unwrap());
    for account in ["a", "b"].map(AccountId::new) {
        assert_eq!(postgres.purchases(&account).await.unwrap(), sqlite.purchases(&account).await.unwrap());
        assert_eq!(postgres.spends(&account).await.unwrap(), sqlite.spends(&account).await.unwrap());
        assert_eq!(postgres.total_spend(&account).await.unwrap(), sqlite.total_spend(&account).await.unwrap());
    }
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM jobs").fetch_one(sqlite.pool()).await.unwrap();
    for id in 1..=last {
        let job = JobId(id);
        assert_eq!(postgres.get_job(job).await.unwrap(), sqlite.get_job(job).await.unwrap(), "job {id}");
        assert_eq!(postgres.remote_handle(job).await.unwrap(), sqlite.remote_handle(job).await.unwrap());
        assert_eq!(postgres.media_for_job(job).await.unwrap(), sqlite.media_for_job(job).await.unwrap());
        assert_eq!(postgres.queue_position(job).await.unwrap(), sqlite.queue_position(job).await.unwrap());
    }
    for user in (1..=6).chain([99]).map(UserId) {
        assert_eq!(postgres.user_usage(user, now).await.unwrap(), sqlite.user_usage(user, now).await.unwrap());
        assert_eq!(postgres.recent_jobs(user, 100).await.unwrap(), sqlite.recent_jobs(user, 100).await.unwrap());
    }
    assert_eq!(postgres.in_flight_by_account().await.unwrap(), sqlite.in_flight_by_account().await.unwrap());
    assert_eq!(postgres.queued_count().await.unwrap(), sqlite.queued_count().await.unwrap());
    assert_eq!(postgres.usage_by_model(from, to).await.unwrap(), sqlite.usage_by_model(from, to).await.unwrap());
    assert_eq!(postgres.usage_by_user(from, to).await.unwrap(), sqlite.usage_by_user(from, to).await.unwrap());
    assert_eq!(postgres.request_count(from, to).await.unwrap(), sqlite.request_count(from, to).await.unwrap());
    assert_eq!(postgres.usage_rows(from, to).await.unwrap(), sqlite.usage_rows(from, to).await.unwrap());
    assert_eq!(postgres.requests_by_day(from, to).await.unwrap(), sqlite.requests_by_day(from, to).await.unwrap());
    assert_eq!(postgres.job_counts().await.unwrap(), sqlite.job_counts().await.unwrap());
    assert_eq!(postgres.job_timings(from, to).await.unwrap(), sqlite.job_timings(from, to).await.unwrap());
    assert_eq!(postgres.slot_intervals(from, to).await.unwrap(), sqlite.slot_intervals(from, to).await.unwrap());
    assert_eq!(postgres.cache_get("enhance:fox", now).await.unwrap().as_deref(), Some("a red fox, snow, golden hour"));
    assert!(!postgres.record_alert("budget-80", "2026-11", now).await.unwrap(), "already fired, before the move");

    // The identity sequences continue after the copied ids: new rows never collide.
    let job = enqueue(&postgres, UserId(1), "after-the-move", t(86_400 * 3)).await;
    assert_eq!(job.id, JobId(last + 1));
    let a = AccountId::new("a");
    postgres.add_purchase(&a, &CreditPurchase { amount: Money::from_dollars(5), purchased_at: now }).await.unwrap();
    let claimed = postgres.claim(&claim_request("new-host", vec![capacity(&AccountId::new("b"), 100)], 50, now)).await;
    let claimed = claimed.unwrap();
    assert!(!claimed.is_empty(), "the queue carries on in PostgreSQL");
    let first = &claimed[0];
    postgres
        .mark_submitted(
            first.job.id,
            &lease_of(&postgres, first.job.id).await,
            &handle(&first.account, first.job.id),
            now,
        )
        .await
        .unwrap();
    postgres
        .finish(first.job.id, &as_holder(&postgres, first.job.id, &success(first.job.hold, cents(2), now)).await)
        .await
        .unwrap();

    // A second move into a database that is no longer empty is refused, and writes nothing.
    let counts = counts_postgres(&postgres).await;
    let again = mediagen(&dir, &[], &["migrate-storage", "--from", &sqlite_db.url(), "--to", &postgres_db.url()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("needs an empty one"));
    assert_eq!(counts_postgres(&postgres).await, counts);
}

#[tokio::test]
async fn migrate_storage_goes_from_sqlite_to_postgres_only() {
    let sqlite = mediagen_sqlite::testing::fresh_database().await;
    let postgres = mediagen_postgres::testing::fresh_database().await;
    let backwards = mediagen::storage::migrate_storage(&postgres.url(), &sqlite.url()).await.unwrap_err();
    assert!(backwards.to_string().contains("--from must be a sqlite:// URL"), "{backwards}");
    let same = mediagen::storage::migrate_storage(&sqlite.url(), &sqlite.url()).await.unwrap_err();
    assert!(same.to_string().contains("--to must be a postgres://"), "{same}");
}

#[test]
fn read_only_commands_refuse_a_missing_sqlite_database_and_create_none() {
    let dir = std::env::temp_dir().join(format!("mediagen-read-only-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let elsewhere = dir.join("data/bot.sqlite");
    let elsewhere_url = format!("sqlite://{}", elsewhere.display());
    for (env, url) in
        [(vec![], "sqlite://mediagen.sqlite"), (vec![("DATABASE_URL", elsewhere_url.as_str())], &*elsewhere_url)]
    {
        for args in [&["report"][..], &["report", "csv"], &["plan"]] {
            let out = mediagen(&dir, &env, args);
            let said = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} on {url}: {said}");
            assert!(
                said.contains(&format!(
                    "no database at {url}; run `mediagen run` or `mediagen migrate` first, or set DATABASE_URL"
                )),
                "{args:?}: {said}"
            );
        }
    }
    let left: Vec<_> = walk(&dir);
    assert!(left.is_empty(), "nothing is created: {left:?}");

    // `catalog` needs no database at all.
    let out = stdout(&mediagen(&dir, &[], &["catalog"]));
    assert!(out.contains("fal-ai/"), "{out}");
    assert!(walk(&dir).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every file and directory under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[tokio::test]
async fn read_only_commands_say_clearly_when_the_postgres_database_is_missing() {
    let admin =
        std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| mediagen_postgres::testing::DEFAULT_ADMIN_URL.to_owned());
    let (server, _) = admin.rsplit_once('/').unwrap();
    let missing = format!("{server}/mediagen_missing_{}", std::process::id());
    let dir = std::env::temp_dir();
    let out = mediagen(&dir, &[("DATABASE_URL", &missing)], &["report"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&format!("no database at {missing}")), "{said}");
    assert!(said.contains("does not exist); create it and run `mediagen migrate`, or set DATABASE_URL"), "{said}");
}
