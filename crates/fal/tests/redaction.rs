//! Keys never show: not in `Debug` of the configuration or the adapter, not in any error,
//! not in the logs of a whole run at debug level.

mod common;

use common::*;
use mediagen_domain::AccountId;
use mediagen_fal::FalGeneration;
use mediagen_fal_sim::{AccountUpdate, FaultKind, FaultRule};
use mediagen_ports::{Generation, GenerationError, MediaBytes};

/// The key strings and their secret halves.
fn secrets() -> Vec<&'static str> {
    let mut all = vec![KEY_1, KEY_2];
    all.extend([KEY_1, KEY_2].iter().filter_map(|k| k.split_once(':').map(|(_, s)| s)));
    all.push("WrongKeySecretMaterial-charlie");
    all
}

fn assert_clean(what: &str, text: &str) {
    for secret in secrets() {
        assert!(!text.contains(secret), "{what} shows a key: {text}");
    }
}

#[tokio::test]
async fn keys_never_reach_logs_errors_or_debug_output() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runs on one thread (current-thread runtime), so a thread-default subscriber
    // sees the adapter, reqwest, hyper and the simulator alike.
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = start().await;
    assert_clean(
        "config",
        &format!("{:?} {:#?}", fal_config("http://x", &[KEY_1, KEY_2]), fal_config("http://x", &[KEY_1])),
    );
    assert_clean("adapter", &format!("{:?} {:#?}", env.fal, env.fal));

    let mut errors: Vec<GenerationError> = vec![];
    // A full successful run: upload, edit, wait, download.
    let png = mediagen_fal_sim::media::seeded_png(1, 8);
    let url = env
        .fal
        .upload(&env.account, MediaBytes { bytes: png, content_type: "image/png".into(), file_name: "a.png".into() })
        .await
        .unwrap();
    let handle = env.fal.submit(&env.account, &edit_request(vec![url])).await.unwrap();
    assert_clean("handle", &format!("{handle:?}"));
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    env.fal.download(&out.media[0]).await.unwrap();

    // Retries, then failures of every kind.
    env.sim.handle().add_faults([FaultRule::burst(FaultKind::Submit429, 1)]);
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x [[fault:content_policy]]")).await.unwrap();
    errors.push(env.fal.wait(&handle, deadline()).await.unwrap_err());
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x [[fault:result_503]]")).await.unwrap();
    errors.push(env.fal.wait(&handle, deadline()).await.unwrap_err());
    errors.push(env.fal.submit(&env.account, &image_request("fal-ai/nope", "x")).await.unwrap_err());
    errors.push(env.fal.submit(&env.account, &llm_request("x", None)).await.unwrap_err());
    errors.push(
        env.fal
            .submit(&env.account, &edit_request(vec!["https://api.telegram.org/file/bot1:AAx/a.jpg".into()]))
            .await
            .unwrap_err(),
    );
    errors.push(env.fal.submit(&AccountId::new("nobody"), &image_request("fal-ai/flux/dev", "x")).await.unwrap_err());

    let wrong =
        FalGeneration::new(fal_config(env.sim.base_url(), &["wrongid:WrongKeySecretMaterial-charlie"])).unwrap();
    errors.push(wrong.submit(&env.account, &image_request("fal-ai/flux/dev", "x")).await.unwrap_err());
    let dead = FalGeneration::new(fal_config("http://127.0.0.1:1", &[KEY_1])).unwrap();
    errors.push(dead.submit(&env.account, &image_request("fal-ai/flux/dev", "x")).await.unwrap_err());

    env.sim.handle().update_account("main", &AccountUpdate { locked: Some(true), ..AccountUpdate::default() });
    errors.push(env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x")).await.unwrap_err());

    let kinds: Vec<&str> = errors
        .iter()
        .map(|e| match e {
            GenerationError::ContentPolicy => "content",
            GenerationError::InvalidInput(_) => "invalid",
            GenerationError::BadKey(_) => "badkey",
            GenerationError::AccountLocked { .. } => "locked",
            GenerationError::UnknownModel(_) => "unknown",
            GenerationError::Retryable(_) => "retryable",
            GenerationError::SubmitOutcomeUnknown(_) => "lost",
            GenerationError::Timeout(_) => "timeout",
            GenerationError::UnreadableResult(_) => "unreadable",
            GenerationError::TooLarge { .. } => "large",
            GenerationError::Other(_) => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        ["content", "retryable", "unknown", "invalid", "invalid", "other", "badkey", "retryable", "locked"]
    );
    for error in &errors {
        assert_clean("error", &format!("{error} | {error:?} | {error:#?}"));
    }
    let config_error = FalGeneration::new(fal_config("http://x", &["id:bad key with spaces"])).unwrap_err();
    assert!(!config_error.to_string().contains("bad key with"));

    drop(_guard);
    let text = logs.text();
    assert!(text.contains("fal accepted the request"), "logs were captured");
    assert!(text.contains("retrying"), "retries are logged");
    assert_clean("logs", &text);
}
