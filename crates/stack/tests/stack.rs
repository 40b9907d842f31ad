//! The whole stack on sockets the caller bound: every server is where it was told, the bot
//! serves `/metrics` on the socket handed to it, and nothing is left when it stops.

use mediagen_stack::{Listen, Stack, StackOptions};
use std::net::TcpListener;
use std::time::Duration;

fn bound() -> (TcpListener, std::net::SocketAddr) {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_listens_where_the_caller_said_and_nothing_is_left_after_the_stop() {
    let (fal, fal_addr) = bound();
    let (telegram, telegram_addr) = bound();
    let (metrics, metrics_addr) = bound();
    let stack = Stack::start(StackOptions {
        fal_listen: Listen::Bound(fal),
        telegram_listen: Listen::Bound(telegram),
        metrics: Some(Listen::Bound(metrics)),
        ..StackOptions::default()
    })
    .await;
    assert_eq!(stack.fal.addr(), fal_addr);
    assert_eq!(stack.telegram.base_url(), format!("http://{telegram_addr}"));
    assert_eq!(stack.metrics_addr(), Some(metrics_addr));
    assert_eq!(stack.vars()["MEDIAGEN__METRICS__LISTEN"], metrics_addr.to_string());

    stack.telegram.wait_for(|view| view.polls() > 0, Duration::from_secs(30)).await.expect("the bot polls");
    assert!(!stack.is_finished());
    let answer = reqwest::get(format!("http://{metrics_addr}/metrics")).await.expect("/metrics answers");
    assert!(answer.status().is_success(), "{}", answer.status());
    let body = answer.text().await.unwrap();
    assert!(body.trim_end().ends_with("# EOF"), "an OpenMetrics document: {body}");

    let file = std::path::PathBuf::from(stack.db.url().trim_start_matches("sqlite://"));
    let scratch = stack.scratch().to_path_buf();
    assert!(file.exists() && scratch.exists());
    stack.stop().await.expect("a clean stop");
    assert!(!file.exists(), "the database is removed");
    assert!(!scratch.exists(), "the scratch directory is removed");
}
