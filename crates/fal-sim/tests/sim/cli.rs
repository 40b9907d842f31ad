//! The `fal-sim` binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_prints_listening_line_first() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fal-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--account",
            "main=k1,limit=2",
            "--account",
            "main=k2",
            "--time-scale",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(crate::common::PATIENCE, line).await.expect("first line in time").unwrap().unwrap();
    let base =
        line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "a real port: {base}");

    let accounts: serde_json::Value =
        reqwest::get(format!("{base}/_sim/accounts")).await.unwrap().json().await.unwrap();
    assert_eq!(accounts[0]["name"], "main");
    assert_eq!(accounts[0]["keys"], serde_json::json!(["k1", "k2"]));
    assert_eq!(accounts[0]["limit"], 2);

    child.kill().expect("kill");
    child.wait().expect("reaped");
}

#[test]
fn binary_rejects_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_fal-sim"))
        .args(["--account", "main=k1,limit=2", "--account", "main=k2,limit=3"])
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("two limits"));
}
