//! The adapter against the fal simulator: every model kind, every error class, retries,
//! uploads, downloads, cancels and the account concurrency limit.

mod common;

use common::*;
use mediagen_domain::{ImageSize, ModelId, RequestId};
use mediagen_fal_sim::{AccountUpdate, FaultKind, FaultRule};
use mediagen_ports::{CancelOutcome, Generation, GenerationError, LlmParams, MediaBytes, RemoteStatus};
use std::time::Duration;

#[tokio::test]
async fn text_to_image_happy_path() {
    let env = start().await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux-pro/v1.1", "a red fox")).await.unwrap();
    assert_eq!(handle.account, env.account);
    // Status, result and cancel URLs keep owner/app only.
    assert!(handle.status_url.contains("/fal-ai/flux-pro/requests/"), "{}", handle.status_url);
    assert!(!handle.status_url.contains("v1.1"));

    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(out.media.len(), 1);
    assert_eq!((out.media[0].width, out.media[0].height), (Some(1024), Some(768)));
    assert!(out.seed.is_some());

    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input["image_size"], "landscape_4_3");
    assert_eq!(record.input["seed"], 42);
    assert_eq!(record.input["num_images"], 1);
    assert_eq!(record.input["output_format"], "jpeg");
    assert_eq!(record.lifecycle_preference.as_deref(), Some(r#"{"expiration_duration_seconds": 3600}"#));

    let file = env.fal.download(&out.media[0]).await.unwrap();
    assert!(file.bytes.starts_with(b"\x89PNG"), "a real PNG");
    assert_eq!(file.content_type, "image/png");
}

#[tokio::test]
async fn custom_sizes_and_big_seeds() {
    let env = start().await;
    let mut request = image_request("fal-ai/flux/schnell", "a fox");
    request.size = Some(ImageSize::new(1000, 600));
    request.seed = Some(u64::MAX - 1);
    request.num_images = 2;
    let handle = env.fal.submit(&env.account, &request).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(out.media.len(), 2);
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input["image_size"], serde_json::json!({"width": 1000, "height": 600}));
    assert_eq!(record.input["seed"].as_u64(), Some(u64::MAX - 1));
}

#[tokio::test]
async fn nano_banana_takes_an_aspect_ratio_and_omits_sizes() {
    let env = start().await;
    let mut request = image_request("fal-ai/nano-banana", "a fox");
    request.size = Some(ImageSize::new(1024, 576));
    let handle = env.fal.submit(&env.account, &request).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(out.media.len(), 1);
    assert_eq!(out.media[0].width, None);
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input["aspect_ratio"], "16:9");
    assert!(record.input.get("image_size").is_none());
}

#[tokio::test]
async fn upload_then_edit_passes_the_fal_url() {
    let env = start().await;
    let png = mediagen_fal_sim::media::seeded_png(7, 8);
    let url = env
        .fal
        .upload(
            &env.account,
            MediaBytes { bytes: png.clone(), content_type: "image/png".into(), file_name: "in.png".into() },
        )
        .await
        .unwrap();
    let uploads = env.sim.handle().uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].file_url, url);
    assert_eq!(uploads[0].size, Some(png.len()));
    assert_eq!(uploads[0].content_type, "image/png");

    let handle = env.fal.submit(&env.account, &edit_request(vec![url.clone()])).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(out.media.len(), 1);
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input["image_urls"], serde_json::json!([url]));
    assert_eq!(record.input["aspect_ratio"], "16:9");
    assert!(!record.input.to_string().contains("telegram"));
}

#[tokio::test]
async fn telegram_file_urls_are_refused_before_sending() {
    let env = start().await;
    let token = "123456789:AAHsecretBotTokenValue";
    let request = edit_request(vec![format!("https://api.telegram.org/file/bot{token}/photos/file_0.jpg")]);
    let error = env.fal.submit(&env.account, &request).await.unwrap_err();
    assert!(matches!(error, GenerationError::InvalidInput(_)), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("AAHsecret"));
    let account = env.sim.handle().account("main").unwrap();
    assert_eq!(account.submits_seen, 0);
    assert!(env.sim.handle().requests().is_empty());
}

#[tokio::test]
async fn llm_output_and_usage() {
    let env = start().await;
    let params = LlmParams {
        model: "google/gemini-2.5-flash".into(),
        system_prompt: "Improve the prompt.".into(),
        max_tokens: 300,
    };
    let handle = env.fal.submit(&env.account, &llm_request("a fox", Some(params))).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert!(out.text.as_deref().is_some_and(|t| !t.is_empty()), "{out:?}");
    let usage = out.usage.expect("usage");
    assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input["model"], "google/gemini-2.5-flash");
    assert_eq!(record.input["system_prompt"], "Improve the prompt.");
    assert_eq!(record.input["max_tokens"], 300);
}

#[tokio::test]
async fn tts_makes_audio() {
    let env = start().await;
    let handle = env.fal.submit(&env.account, &tts_request("Hello there")).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(out.media.len(), 1);
    assert_eq!(out.media[0].content_type.as_deref(), Some("audio/wav"));
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.input, serde_json::json!({"text": "Hello there"}));
    let file = env.fal.download(&out.media[0]).await.unwrap();
    assert!(file.bytes.starts_with(b"RIFF"));
}

#[tokio::test]
async fn content_policy_at_result_time() {
    let env = start().await;
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x [[fault:content_policy]]")).await.unwrap();
    // fal says COMPLETED; the refusal only shows in the result.
    let error = env.fal.wait(&handle, deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::ContentPolicy), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn nsfw_flag_is_content_policy() {
    let env = start().await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x [[fault:nsfw]]")).await.unwrap();
    let error = env.fal.wait(&handle, deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::ContentPolicy), "{error:?}");
}

#[tokio::test]
async fn other_422_is_invalid_input_without_the_input_echo() {
    let env = start().await;
    // openrouter/router needs `model`; without LLM params it is missing.
    let marker = "UNIQUE-PROMPT-TEXT-9f3";
    let error = env.fal.submit(&env.account, &llm_request(marker, None)).await.unwrap_err();
    let GenerationError::InvalidInput(message) = &error else { panic!("{error:?}") };
    assert!(message.contains("model"), "{message}");
    assert!(!message.contains(marker), "the input is never echoed: {message}");
}

#[tokio::test]
async fn refused_key_is_bad_key() {
    let env = start_with(2, |s| s, |c| c.accounts[0].keys.truncate(1)).await;
    let mut config = fal_config(env.sim.base_url(), &["nobody:wrong-key"]);
    config.accounts[0].name = "main".into();
    let fal = mediagen_fal::FalGeneration::new(config).unwrap();
    let error = fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(matches!(&error, GenerationError::BadKey(a) if a == &env.account), "{error:?}");
}

#[tokio::test]
async fn locked_account() {
    let env = start().await;
    env.sim.handle().update_account(
        "main",
        &AccountUpdate {
            locked: Some(true),
            lock_reason: Some("Exhausted balance. Top up your balance at fal.ai/dashboard/billing.".into()),
            ..AccountUpdate::default()
        },
    );
    let error = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    let GenerationError::AccountLocked { account, reason } = &error else { panic!("{error:?}") };
    assert_eq!(account, &env.account);
    assert!(reason.contains("Exhausted balance"), "{reason}");
}

#[tokio::test]
async fn unknown_endpoint() {
    let env = start().await;
    let error = env.fal.submit(&env.account, &image_request("fal-ai/no-such-model", "a fox")).await.unwrap_err();
    assert!(matches!(&error, GenerationError::UnknownModel(m) if m == "fal-ai/no-such-model"), "{error:?}");
}

#[tokio::test]
async fn server_errors_at_result_are_retryable() {
    let env = start().await;
    for fault in ["result_503", "result_500"] {
        let request = image_request("fal-ai/flux/dev", &format!("a fox [[fault:{fault}]]"));
        let handle = env.fal.submit(&env.account, &request).await.unwrap();
        let error = env.fal.wait(&handle, deadline()).await.unwrap_err();
        assert!(error.is_retryable(), "{fault}: {error:?}");
    }
}

#[tokio::test]
async fn start_deadline_is_timeout() {
    let env = start_with(2, |s| s, |c| c.start_timeout_secs = Some(2)).await;
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox [[fault:stuck]]")).await.unwrap();
    assert_eq!(env.sim.handle().request(handle.request_id.as_str()).unwrap().request_timeout.as_deref(), Some("2"));
    let error = env.fal.wait(&handle, deadline()).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn follow_deadline_is_timeout() {
    let env = start().await;
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox [[fault:stuck]]")).await.unwrap();
    let error = env.fal.wait(&handle, in_secs(0.1)).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
    assert_eq!(env.fal.cancel(&handle).await.unwrap(), CancelOutcome::Requested);
}

#[tokio::test]
async fn submit_429_burst_is_retried_then_accepted_once() {
    let env = start().await;
    env.sim.handle().add_faults([FaultRule::burst(FaultKind::Submit429, 2)]);
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap();
    let account = env.sim.handle().account("main").unwrap();
    assert_eq!(account.submits_seen, 3, "two refusals and one success");
    assert_eq!(account.submits_accepted, 1);
    assert_eq!(env.sim.handle().requests().len(), 1);
    env.fal.wait(&handle, deadline()).await.unwrap();
}

#[tokio::test]
async fn submit_502_and_503_are_retried() {
    let env = start().await;
    env.sim.handle().add_faults([FaultRule::burst(FaultKind::Submit502, 1), FaultRule::burst(FaultKind::Submit503, 1)]);
    env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap();
    let account = env.sim.handle().account("main").unwrap();
    assert_eq!(account.submits_seen, 3);
    assert_eq!(account.submits_accepted, 1);
}

#[tokio::test]
async fn persistent_429_ends_retryable_after_the_configured_attempts() {
    let env = start().await;
    env.sim.handle().add_faults([FaultRule::always(FaultKind::Submit429)]);
    let error = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
    let account = env.sim.handle().account("main").unwrap();
    assert_eq!(account.submits_seen, 4, "1 attempt + max_retries 3");
    assert_eq!(account.submits_accepted, 0);
}

#[tokio::test]
async fn status_500_is_retried() {
    let env = start().await;
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox [[fault:status_500:3]]")).await.unwrap();
    env.fal.wait(&handle, deadline()).await.unwrap();

    env.sim.handle().add_faults([FaultRule::always(FaultKind::Status500)]);
    let error = env.fal.status(&handle).await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn status_reports_progress_and_queue_position() {
    // Jobs that would run for 10 s, and cancels that stop running jobs.
    let env = start_with(
        1,
        |mut s| {
            s.abort_running_on_cancel = true;
            s.with_service_time_all(mediagen_fal_sim::ServiceTime::Fixed(1_000.0))
        },
        |_| {},
    )
    .await;
    let mut handles = vec![];
    for prompt in ["a", "b", "c"] {
        handles.push(env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", prompt)).await.unwrap());
    }
    assert!(env.sim.handle().wait_until(Duration::from_secs(5), |a| a[0].in_progress == 1).await);
    assert_eq!(env.fal.status(&handles[0]).await.unwrap(), RemoteStatus::InProgress);
    assert_eq!(env.fal.status(&handles[1]).await.unwrap(), RemoteStatus::InQueue { position: Some(0) });
    assert_eq!(env.fal.status(&handles[2]).await.unwrap(), RemoteStatus::InQueue { position: Some(1) });
    for handle in handles.iter().rev() {
        assert_eq!(env.fal.cancel(handle).await.unwrap(), CancelOutcome::Requested);
    }
    assert_eq!(env.sim.handle().account("main").unwrap().jobs_cancelled, 3);
}

#[tokio::test]
async fn cancel_outcomes() {
    let env = start().await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "b")).await.unwrap();
    env.fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(env.fal.status(&handle).await.unwrap(), RemoteStatus::Completed);
    assert_eq!(env.fal.cancel(&handle).await.unwrap(), CancelOutcome::AlreadyCompleted);
    let mut unknown = handle.clone();
    unknown.request_id = RequestId::new("00000000-0000-0000-0000-000000000000");
    unknown.cancel_url = handle.cancel_url.replace(handle.request_id.as_str(), unknown.request_id.as_str());
    assert_eq!(env.fal.cancel(&unknown).await.unwrap(), CancelOutcome::NotFound);
}

#[tokio::test]
async fn concurrency_limit_is_shared_by_the_accounts_keys() {
    // 10 s jobs (100 ms of real time): all ten submits arrive while the first three run.
    let env = start_with(3, |s| s.with_service_time_all(mediagen_fal_sim::ServiceTime::Fixed(10.0)), |_| {}).await;
    let jobs = (0..10).map(|i| {
        let fal = &env.fal;
        let account = &env.account;
        async move {
            let handle = fal.submit(account, &image_request("fal-ai/flux/schnell", &format!("fox {i}"))).await?;
            fal.wait(&handle, deadline()).await
        }
    });
    let results = futures::future::join_all(jobs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let account = env.sim.handle().account("main").unwrap();
    assert_eq!(account.max_in_progress, 3);
    assert_eq!(account.jobs_succeeded, 10);
    assert_eq!(account.submits_accepted, 10);
    // Round robin over the two keys.
    assert_eq!(
        account.submits_by_key.values().copied().collect::<Vec<_>>(),
        vec![5, 5],
        "{:?}",
        account.submits_by_key
    );
}

#[tokio::test]
async fn download_size_cap() {
    let env = start_with(2, |s| s, |c| c.download_max_bytes = 40).await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    let error = env.fal.download(&out.media[0]).await.unwrap_err();
    assert!(matches!(error, GenerationError::TooLarge { limit: 40, .. }), "{error:?}");
}

#[tokio::test]
async fn slow_download_is_timeout() {
    let env = start_with(
        2,
        |mut s| {
            s.slow_cdn_secs = 300.0; // 3 s of real time at this scale
            s
        },
        |c| c.download_timeout_ms = 200,
    )
    .await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a [[fault:slow_cdn]]")).await.unwrap();
    let out = env.fal.wait(&handle, deadline()).await.unwrap();
    let error = env.fal.download(&out.media[0]).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
}

#[tokio::test]
async fn downloads_only_from_the_cdn() {
    let env = start().await;
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a fox")).await.unwrap();
    let mut media = env.fal.wait(&handle, deadline()).await.unwrap().media.remove(0);
    media.url = media.url.replace("/files/", "/_sim/");
    assert!(matches!(env.fal.download(&media).await, Err(GenerationError::Other(_))));
}

#[tokio::test]
async fn upload_size_limit_is_checked_before_any_network_call() {
    let env = start_with(
        2,
        |s| s,
        |c| {
            c.upload_max_bytes = 10;
            c.rest_base = "http://127.0.0.1:1".into(); // nothing listens: a call would fail differently
        },
    )
    .await;
    let media = MediaBytes { bytes: vec![0; 11], content_type: "image/png".into(), file_name: "a.png".into() };
    let error = env.fal.upload(&env.account, media).await.unwrap_err();
    assert!(matches!(error, GenerationError::TooLarge { actual: 11, limit: 10 }), "{error:?}");
}

#[tokio::test]
async fn an_unconfigured_account_is_refused() {
    let env = start().await;
    let error = env
        .fal
        .submit(&mediagen_domain::AccountId::new("other"), &image_request("fal-ai/flux/dev", "x"))
        .await
        .unwrap_err();
    assert!(matches!(error, GenerationError::Other(_)), "{error:?}");
    assert_eq!(env.sim.handle().snapshot().requests.len(), 0);
}

#[tokio::test]
async fn malformed_model_ids_never_reach_fal() {
    let env = start().await;
    let mut request = image_request("fal-ai/flux/dev", "x");
    request.model = ModelId::new("fal-ai/../_sim/accounts");
    let error = env.fal.submit(&env.account, &request).await.unwrap_err();
    assert!(matches!(error, GenerationError::UnknownModel(_)), "{error:?}");
    assert_eq!(env.sim.handle().account("main").unwrap().submits_seen, 0);
}

#[tokio::test]
async fn idle_after_all() {
    // The simulator drains: nothing left running after a finished job.
    let env = start().await;
    let handle = env.fal.submit(&env.account, &tts_request("hi")).await.unwrap();
    env.fal.wait(&handle, deadline()).await.unwrap();
    assert!(env.sim.handle().wait_idle(Duration::from_secs(5)).await);
}
