//! Secrets stay secret: with every log captured at debug level through a whole run, no fal
//! key, bot token or database password appears; no request to fal carries a Telegram file
//! URL; operator commands from non-operators change nothing.
//!
//! One test in its own binary, because it installs the process-wide log subscriber.

use mediagen_e2e::{Database, FAL_KEY, Stack, StackOptions, with_pool};
use mediagen_telegram_fake::SimUser;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const DB_PASSWORD: &str = "hunter2-db-secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_fal_and_non_admins_change_nothing() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt().with_env_filter("debug").with_writer(move || writer.clone()).with_ansi(false).init();

    // Local PostgreSQL trusts loopback, so a password in the URL is accepted and ignored:
    // exactly what is needed to see whether it leaks.
    // PostgreSQL: its URL carries a password that must not leak.
    let mut stack = Stack::start(StackOptions { database: Database::Postgres, ..StackOptions::default() }).await;
    let url_with_password =
        stack.db.url().replacen("postgres://postgres@", &format!("postgres://postgres:{DB_PASSWORD}@"), 1);
    assert!(url_with_password.contains(DB_PASSWORD), "the test database URL has the expected shape");
    stack = stack.restart_with_database_url(url_with_password).await;

    let mallory = SimUser::new(4_001, "Mallory").with_language("en");
    stack.telegram.add_user(&mallory);
    stack.telegram.send_text(&mallory, "a lighthouse in a storm");
    stack.telegram.send_photo(&mallory, vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A], Some("make it night"));
    for command in
        ["/topup main 1000", "/block 4002", "/quota 4001 pro", "/broadcast buy crypto", "/stats", "/accounts"]
    {
        stack.telegram.send_text(&mallory, command);
    }
    let answered = stack
        .telegram
        .wait_for(
            |view| {
                let messages = view.messages_to(mallory.id);
                let refusals = messages
                    .iter()
                    .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("for the bot's operators")))
                    .count();
                let pictures =
                    messages.iter().filter(|m| !matches!(m.content, mediagen_telegram_fake::Content::Text)).count();
                refusals >= 6 && pictures >= 2
            },
            Duration::from_secs(60),
        )
        .await;
    assert!(answered.is_ok(), "six refusals and two pictures: {:#?}", stack.telegram.messages_to(mallory.id));

    let sql = "SELECT (SELECT COUNT(*) FROM credit_purchases), (SELECT plan FROM users WHERE id = 4001), \
               (SELECT COALESCE(bool_or(blocked), false) FROM users)";
    let (purchases, plan, blocked): (i64, String, bool) =
        with_pool!(stack.db, |pool| sqlx::query_as(sql).fetch_one(pool).await).unwrap();
    assert_eq!((purchases, plan.as_str(), blocked), (0, "free", false), "non-admin commands changed nothing");
    let broadcasts =
        stack.telegram.calls_of("sendMessage").iter().filter(|c| c.text.as_deref() == Some("buy crypto")).count();
    assert_eq!(broadcasts, 0);

    for request in stack.fal.handle().requests() {
        let body = request.input.to_string();
        assert!(
            !body.contains("api.telegram.org") && !body.contains("/file/bot"),
            "a Telegram file URL reached fal: {body}"
        );
    }
    let token = stack.telegram.token().to_owned();
    stack.stop().await.expect("clean stop");

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.len() > 10_000, "debug logging was really captured ({} bytes)", text.len());
    let key_secret = FAL_KEY.split(':').nth(1).unwrap();
    for (what, secret) in [
        ("fal key", FAL_KEY),
        ("fal key secret", key_secret),
        ("bot token", token.as_str()),
        ("database password", DB_PASSWORD),
    ] {
        if let Some(at) = text.find(secret) {
            let start = text[..at].rfind('\n').unwrap_or(0);
            panic!("the {what} appears in the logs: {}", &text[start..(at + 80).min(text.len())]);
        }
    }
}
