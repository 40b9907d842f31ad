//! The operator's tools against the stack's parts: `mediagen doctor` is all green on a
//! working setup and names each thing it checks once that thing is broken; `mediagen init`
//! checks its answers and writes settings that doctor finds all green.

use mediagen::doctor::Status;
use mediagen_e2e::{ADMIN_ID, Database, FAL_KEY, FalAccount, FreshDb, Listen, Parts, Stack, StackOptions, bot_binary};
use mediagen_fal_sim::AccountUpdate;
use mediagen_telegram_fake::SimUser;
use serde_json::json;
use std::path::Path;

/// Runs `mediagen <args>` with the parts' environment plus `extra`; returns whether it
/// exited 0 and what it printed (stdout, then stderr).
async fn mediagen(parts: &Parts, args: &[&str], extra: &[(&str, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(bot_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(parts.child_env())
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the mediagen binary");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The line of `output` about `subject` with status `status`, or a panic showing all of it.
fn line<'a>(output: &'a str, status: &str, subject: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with(&format!("{status:<4} {subject}")))
        .unwrap_or_else(|| panic!("no `{status} {subject}` line in:\n{output}"))
}

fn free_port() -> String {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_on_a_working_setup_and_names_each_broken_part() {
    let main = FalAccount::new("main", 4).with_admin_key();
    let spare = FalAccount::new("spare", 2);
    let metrics = free_port();
    let parts = Parts::start(StackOptions {
        fal_accounts: vec![main.clone(), spare.clone()],
        env: vec![("MEDIAGEN__METRICS__LISTEN".to_owned(), metrics.clone())],
        ..StackOptions::default()
    })
    .await;
    parts.fal.handle().update_account("main", &AccountUpdate { balance_usd: Some(42.5), ..AccountUpdate::default() });
    parts.telegram.send_command(&SimUser::new(ADMIN_ID, "Operator"), "start", "");
    let secrets = [parts.telegram.token().to_owned(), main.key(), spare.key()];
    let mut outputs = Vec::new();

    let (green, output) = mediagen(&parts, &["doctor"], &[]).await;
    assert!(green, "doctor failed on a working setup:\n{output}");
    assert!(!output.lines().any(|l| l.starts_with("FAIL")), "{output}");
    line(&output, "ok", "telegram token");
    line(&output, "ok", "telegram webhook");
    line(&output, "ok", &format!("admin {ADMIN_ID}"));
    assert!(line(&output, "ok", "fal key main/k").contains("admin key; balance $42.50"), "{output}");
    assert!(line(&output, "ok", "fal key spare/k").contains("inference only"), "{output}");
    line(&output, "ok", "database");
    line(&output, "ok", &format!("metrics {metrics}"));
    line(&output, "ok", "clock");
    outputs.push(output);

    // A wrong token.
    let wrong = "123456:not-the-bots-token".to_owned();
    let (green, output) = mediagen(&parts, &["doctor"], &[("TELOXIDE_TOKEN", wrong.clone())]).await;
    assert!(!green, "{output}");
    line(&output, "FAIL", "telegram token");
    assert!(!output.contains(&wrong), "the wrong token was printed:\n{output}");
    outputs.push(output);

    // A revoked fal key: fal no longer knows it.
    let revoke = AccountUpdate { remove_keys: vec![spare.key()], ..AccountUpdate::default() };
    parts.fal.handle().update_account("spare", &revoke);
    let (green, output) = mediagen(&parts, &["doctor"], &[]).await;
    assert!(!green, "{output}");
    let refused = line(&output, "FAIL", "fal key spare/k");
    assert!(refused.contains("\"spare\"") && refused.contains("\"k\""), "{refused}");
    assert!(output.contains("FAL_KEY__SPARE__K"), "the fix names the variable:\n{output}");
    line(&output, "ok", "fal key main/k");
    outputs.push(output);
    let restore = AccountUpdate { add_keys: vec![spare.key()], ..AccountUpdate::default() };
    parts.fal.handle().update_account("spare", &restore);

    // A SQLite file that does not exist: named, and not created by the check.
    let missing = parts.scratch().join("not-yet.sqlite");
    let url = format!("sqlite://{}", missing.display());
    let (green, output) = mediagen(&parts, &["doctor"], &[("DATABASE_URL", url.clone())]).await;
    assert!(!green, "{output}");
    assert!(line(&output, "FAIL", "database").contains("does not exist"), "{output}");
    assert!(output.contains("mediagen migrate"), "{output}");
    assert!(!Path::new(&missing).exists(), "doctor created the database file");
    outputs.push(output);
    // Following the fix makes it green.
    let (migrated, output) = mediagen(&parts, &["migrate"], &[("DATABASE_URL", url.clone())]).await;
    assert!(migrated, "{output}");
    let (green, output) = mediagen(&parts, &["doctor"], &[("DATABASE_URL", url)]).await;
    assert!(green, "{output}");
    outputs.push(output);

    // An admin who never started the bot.
    let stranger = (ADMIN_ID + 1).to_string();
    let admins = ("MEDIAGEN__ADMIN__IDS", format!("{ADMIN_ID},{stranger}"));
    let (green, output) = mediagen(&parts, &["doctor"], &[admins]).await;
    assert!(!green, "{output}");
    assert!(line(&output, "FAIL", &format!("admin {stranger}")).contains("has not started the bot"), "{output}");
    line(&output, "ok", &format!("admin {ADMIN_ID}"));
    outputs.push(output);

    // No admin at all: a warning, not a failure.
    let (green, output) = mediagen(&parts, &["doctor"], &[("MEDIAGEN__ADMIN__IDS", String::new())]).await;
    assert!(green, "{output}");
    assert!(line(&output, "warn", "admins").contains("/topup"), "{output}");
    outputs.push(output);

    // The metrics port held by another program.
    let squatter = std::net::TcpListener::bind(&metrics).expect("take the metrics port");
    let (green, output) = mediagen(&parts, &["doctor"], &[]).await;
    assert!(!green, "{output}");
    assert!(line(&output, "FAIL", &format!("metrics {metrics}")).contains("taken"), "{output}");
    drop(squatter);
    outputs.push(output);

    // A webhook registered at Telegram while the settings poll.
    let bot = format!("{}bot{}", parts.telegram.api_url(), parts.telegram.token());
    let http = reqwest::Client::new();
    http.post(format!("{bot}/setWebhook")).json(&json!({"url": "https://example.invalid/hook"})).send().await.unwrap();
    let (green, output) = mediagen(&parts, &["doctor"], &[]).await;
    assert!(!green, "{output}");
    assert!(line(&output, "FAIL", "telegram webhook").contains("https://example.invalid/hook"), "{output}");
    assert!(output.contains("deleteWebhook"), "the fix says how to delete it:\n{output}");
    outputs.push(output);
    http.post(format!("{bot}/deleteWebhook")).send().await.unwrap();

    for output in &outputs {
        for secret in &secrets {
            assert!(!output.contains(secret.as_str()), "a secret was printed:\n{output}");
        }
    }
    parts.shutdown().await.expect("remove the parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_in_process_and_knows_a_running_bots_metrics() {
    let stack = Stack::start(StackOptions { metrics: Some(Listen::Ephemeral), ..StackOptions::default() }).await;
    let report = mediagen::doctor::diagnose(&stack.settings().unwrap()).await;
    assert!(report.failed(), "the admin has not started the bot:\n{report}");
    let admin: Vec<_> = report.about("admin ").collect();
    assert_eq!(admin.len(), 1, "{report}");
    assert!(admin[0].failed() && admin[0].fix.as_deref().unwrap_or_default().contains("/start"), "{report}");
    let key = report.about("fal key main/").next().expect("the main key was checked");
    assert_eq!(key.detail, "accepted (inference only; an admin key lets the bot read its balance)");
    let metrics = report.about("metrics ").next().expect("the metrics port was checked");
    assert_eq!(
        (metrics.status, metrics.detail.as_str()),
        (Status::Ok, "in use by a running mediagen (its /metrics answers)")
    );
    let failed: Vec<&str> = report.checks.iter().filter(|c| c.failed()).map(|c| c.subject.as_str()).collect();
    assert_eq!(failed, [format!("admin {ADMIN_ID}")], "{report}");
    stack.stop().await.expect("clean stop");
}

/// The secrets and the admin list of the parts' environment: `init` is to supply them.
const GIVEN_BY_INIT: [&str; 4] = ["TELOXIDE_TOKEN", "FAL_KEY", "DATABASE_URL", "MEDIAGEN__ADMIN__IDS"];

/// Runs `mediagen <args>` with the parts' environment minus what `init` supplies, plus `extra`.
async fn mediagen_without_secrets(parts: &Parts, args: &[&str], extra: &[(String, String)]) -> (bool, String) {
    let output = tokio::process::Command::new(bot_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .envs(parts.child_env().into_iter().filter(|(k, _)| !GIVEN_BY_INIT.contains(&k.as_str())))
        .envs(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the mediagen binary");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// `export NAME='value'` lines of `output`, as (name, value).
fn exports(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_checks_writes_a_file_without_secrets_and_doctor_is_green_with_it() {
    let parts = Parts::start(StackOptions::default()).await;
    parts.telegram.send_command(&SimUser::new(ADMIN_ID, "Operator"), "start", "");
    let token = parts.telegram.token().to_owned();
    let out = parts.scratch().join("mediagen.toml");
    let database = format!("sqlite://{}", parts.scratch().join("init.sqlite").display());
    let admin = ADMIN_ID.to_string();
    let fal_key = format!("main={FAL_KEY}");
    let args = |token: &str| -> Vec<String> {
        ["init", "--token", token, "--fal-key", &fal_key, "--admin", &admin, "--database", &database, "--out"]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([out.display().to_string()])
            .collect()
    };

    // A refused token: nothing is written.
    let bad = args("123456:not-the-bots-token");
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    let (done, output) = mediagen_without_secrets(&parts, &bad, &[]).await;
    assert!(!done, "{output}");
    line(&output, "FAIL", "telegram token");
    assert!(!out.exists(), "init wrote the file after a failed check");

    let good = args(&token);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let (done, output) = mediagen_without_secrets(&parts, &good, &[]).await;
    assert!(done, "{output}");
    line(&output, "ok", "telegram token");
    assert!(line(&output, "ok", "fal key main/primary").contains("inference only"), "{output}");
    line(&output, "ok", &format!("admin {ADMIN_ID}"));
    line(&output, "ok", "database");
    assert!(output.contains(&format!("MEDIAGEN_CONFIG={} mediagen doctor", out.display())), "{output}");
    assert!(output.contains(&format!("MEDIAGEN_CONFIG={} mediagen run", out.display())), "{output}");
    let file = std::fs::read_to_string(&out).expect("init wrote the settings file");
    assert!(!file.contains(&token) && !file.contains(FAL_KEY), "a secret is in the file:\n{file}");
    assert!(file.contains("FAL_KEY__MAIN__PRIMARY"), "{file}");

    let mut env = exports(&output);
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["TELOXIDE_TOKEN", "FAL_KEY__MAIN__PRIMARY", "DATABASE_URL"], "{output}");
    env.push(("MEDIAGEN_CONFIG".to_owned(), out.display().to_string()));
    let (green, output) = mediagen_without_secrets(&parts, &["doctor"], &env).await;
    assert!(green, "doctor with init's file and lines:\n{output}");
    line(&output, "ok", &format!("admin {ADMIN_ID}"));
    line(&output, "ok", "fal key main/primary");

    // Run again, it refuses to overwrite the file.
    let (done, output) = mediagen_without_secrets(&parts, &good, &[]).await;
    assert!(!done && output.contains("--force"), "{output}");
    parts.shutdown().await.expect("remove the parts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_a_postgresql_database_and_hides_its_password() {
    let db = FreshDb::create(&Database::Postgres).await.expect("a fresh PostgreSQL database");
    let check = mediagen::doctor::check_database(db.url()).await;
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert!(check.detail.starts_with("PostgreSQL") && check.detail.contains("writable"), "{check:?}");

    let refused = "postgres://doctor:pw-never-shown@127.0.0.1:1/none";
    let check = mediagen::doctor::check_database(refused).await;
    assert!(check.failed(), "{check:?}");
    assert!(check.detail.contains("doctor:***@127.0.0.1:1") && !check.detail.contains("pw-never-shown"), "{check:?}");
    db.close().await.expect("remove the database");
}
