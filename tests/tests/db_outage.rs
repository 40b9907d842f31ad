//! A database outage during a burst: the shared PostgreSQL cluster is stopped for 20 s and
//! started again. The bot keeps running, tells users whose requests cannot be accepted that
//! it cannot take them for a moment, and afterwards every accepted job ends and is told.
//!
//! It stops the whole local cluster, so it runs only on its own: `just chaos` runs it with
//! `--ignored` and one test thread. `DB_OUTAGE_JOBS` sets the burst (default 40).

mod reliability;

use mediagen_e2e::{Database, Stack, StackOptions};
use mediagen_telegram_fake::SimUser;
use reliability::{ROOMY_PLANS, env_number, settle_down, tally};
use std::process::Command;
use std::time::{Duration, Instant};

/// The local cluster's version, as `pg_lsclusters` lists it.
fn cluster_version() -> String {
    let out = Command::new("pg_lsclusters").arg("-h").output().expect("pg_lsclusters (postgresql-common) is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.split_whitespace().nth(1) == Some("main"))
        .and_then(|l| l.split_whitespace().next())
        .expect("a `main` cluster")
        .to_owned()
}

fn cluster(version: &str, action: &str) {
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", action])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {version} main {action} failed");
}

/// Starts the cluster again if the test fails while it is down.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster").args(["--skip-systemctl-redirect", &self.0, "main", "start"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the shared PostgreSQL cluster for 20 s: run alone with `just chaos`"]
async fn a_database_outage_delays_requests_and_loses_no_accepted_job() {
    let total = env_number("DB_OUTAGE_JOBS", 40);
    let outage = Duration::from_secs(env_number("DB_OUTAGE_SECS", 20));
    let version = cluster_version();
    // The outage is the PostgreSQL server's: a SQLite file has no server to lose.
    let options = StackOptions {
        database: Database::Postgres,
        plans: Some(ROOMY_PLANS.to_owned()),
        fal_limit: Some(4),
        env: vec![
            ("MEDIAGEN__ENGINE__LEASE_SECS".into(), "5".into()),
            ("MEDIAGEN__ENGINE__RESCUE_SECS".into(), "2".into()),
        ],
        ..StackOptions::default()
    };
    let stack = Stack::start(options).await;
    let users: Vec<SimUser> = (0..total.div_ceil(5).max(4))
        .map(|i| {
            let user = SimUser::new(6_000 + i as i64, format!("Outage{i}")).with_language("en");
            stack.telegram.add_user(&user);
            user
        })
        .collect();
    let send = |n: u64| {
        let user = &users[(n as usize) % users.len()];
        stack.telegram.send_text(user, &format!("db outage picture number {n}"));
        user.id
    };

    // The first half before the outage, so jobs are at fal when the database goes.
    for n in 0..total / 2 {
        send(n);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let guard = Restart(version.clone());
    cluster(&version, "stop");
    let down_at = Instant::now();
    let mut during = Vec::new();
    for n in total / 2..total {
        during.push((n, send(n)));
        tokio::time::sleep(outage / u32::try_from(total).unwrap_or(1)).await;
    }
    tokio::time::sleep(outage.saturating_sub(down_at.elapsed())).await;
    cluster(&version, "start");
    drop(guard);
    let down_for = down_at.elapsed();

    // Requests sent during the outage were refused with "try again" or accepted later.
    let answered = stack.telegram.wait_for(|view| view.pending_updates() == 0, Duration::from_secs(60)).await.is_ok();
    let refusals = |user: i64| {
        stack
            .telegram
            .messages_to(user)
            .iter()
            .filter(|m| m.text.as_deref().is_some_and(|t| t.contains("can't accept new requests")))
            .count()
    };
    let told_to_wait: usize = users.iter().map(|u| refusals(u.id)).sum();
    let settled = settle_down(&stack.db, 0, Duration::from_secs(180)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let found = tally(&stack.db, &stack.telegram, &stack.fal).await;
    let bot_alive = !stack.is_finished();
    println!(
        "db outage: down {:.1} s; requests {total} ({} during the outage), accepted {}, told to try again {told_to_wait}; \
         bot kept running {bot_alive}; {}",
        down_for.as_secs_f64(),
        during.len(),
        found.jobs,
        found.line()
    );
    assert!(answered && settled, "the bot did not recover from the outage");
    assert!(bot_alive, "the bot kept running through the outage");
    assert_eq!(found.jobs + told_to_wait, total as usize, "every request was accepted or told to try again");
    assert!(told_to_wait > 0, "requests during the outage were told they cannot be accepted now");
    assert!(found.lost.is_empty(), "accepted jobs lost: {:?}", found.lost);
    assert!(found.double_submits.is_empty() && found.double_charges == 0 && found.unsettled.is_empty());
    stack.stop().await.expect("the bot stops cleanly");
}
