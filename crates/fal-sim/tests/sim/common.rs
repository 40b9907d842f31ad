//! Shared helpers: start a simulator, submit, poll, fetch.

use mediagen_fal_sim::{AccountConfig, RunningSim, ServiceTime, SimConfig, spawn};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Generous bound for anything that should finish within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running simulator plus an HTTP client.
pub struct Harness {
    pub sim: RunningSim,
    pub http: reqwest::Client,
}

/// A config with one account `main` (key `k1`) of the given limit, time scale 100 and a fixed
/// service time of `service` simulated seconds for every model.
pub fn config(limit: u32, service: f64) -> SimConfig {
    SimConfig::default()
        .with_account(AccountConfig::new("main", "k1", limit))
        .with_time_scale(100.0)
        .with_service_time_all(ServiceTime::Fixed(service))
}

pub async fn start(config: SimConfig) -> Harness {
    let sim = spawn(config).await.expect("simulator starts");
    Harness { sim, http: reqwest::Client::new() }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

impl Harness {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    pub async fn submit_with(&self, key: &str, endpoint: &str, body: &Value, headers: &[(&str, &str)]) -> Resp {
        let mut req =
            self.http.post(self.url(&format!("/{endpoint}"))).header("Authorization", format!("Key {key}")).json(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        into_resp(req.send().await.expect("submit sends")).await
    }

    pub async fn submit(&self, key: &str, endpoint: &str, body: &Value) -> Resp {
        self.submit_with(key, endpoint, body, &[]).await
    }

    /// Submits and asserts acceptance; returns the submit JSON.
    pub async fn submit_ok(&self, key: &str, endpoint: &str, body: &Value) -> Value {
        let r = self.submit(key, endpoint, body).await;
        assert_eq!(r.status, StatusCode::OK, "submit to {endpoint} failed: {}", r.text);
        r.body
    }

    pub async fn get(&self, key: Option<&str>, url: &str) -> Resp {
        let mut req = self.http.get(url);
        if let Some(key) = key {
            req = req.header("Authorization", format!("Key {key}"));
        }
        into_resp(req.send().await.expect("get sends")).await
    }

    pub async fn put(&self, key: &str, url: &str) -> Resp {
        into_resp(self.http.put(url).header("Authorization", format!("Key {key}")).send().await.expect("put sends"))
            .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        into_resp(self.http.post(self.url(path)).json(body).send().await.expect("post sends")).await
    }

    /// Polls `status_url` until 200 COMPLETED (ignoring scripted 500s); returns the final status JSON.
    pub async fn wait_completed(&self, key: &str, submitted: &Value) -> Value {
        let url = submitted["status_url"].as_str().expect("status_url");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = self.get(Some(key), url).await;
            if r.status == StatusCode::OK {
                assert_eq!(r.body["status"], "COMPLETED");
                return r.body;
            }
            assert!(
                r.status == StatusCode::ACCEPTED || r.status == StatusCode::INTERNAL_SERVER_ERROR,
                "unexpected status {}: {}",
                r.status,
                r.text
            );
            assert!(Instant::now() < deadline, "request never completed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for completion, then fetches the result.
    pub async fn run(&self, key: &str, endpoint: &str, body: &Value) -> (Value, Resp) {
        let submitted = self.submit_ok(key, endpoint, body).await;
        self.wait_completed(key, &submitted).await;
        let result = self.get(Some(key), submitted["response_url"].as_str().unwrap()).await;
        (submitted, result)
    }

    pub async fn bytes(&self, url: &str) -> (StatusCode, Vec<u8>) {
        let r = self.http.get(url).send().await.expect("cdn get");
        let status = r.status();
        (status, r.bytes().await.expect("cdn body").to_vec())
    }

    pub async fn wait_idle(&self) {
        assert!(self.sim.handle().wait_idle(PATIENCE).await, "simulator never went idle");
    }
}
