//! The mocks exist and behave as configured: the engine's contract tests depend on it.

use mediagen_domain::{AccountId, ModelId, ModelKind, RequestId};
use mediagen_ports::{
    AlertLog, Clock, Generation, GenerationError, GenerationRequest, MockAlertLog, MockClock, MockGeneration,
    RemoteHandle,
};

fn request() -> GenerationRequest {
    GenerationRequest {
        model: ModelId::new("fal-ai/flux/schnell"),
        kind: ModelKind::TextToImage,
        prompt: "a cat".into(),
        size: None,
        num_images: 1,
        seed: None,
        input_image_urls: vec![],
        llm: None,
    }
}

#[tokio::test]
async fn generation_mock_returns_what_it_is_told() {
    let mut generation = MockGeneration::new();
    generation.expect_submit().times(1).returning(|account, request| {
        Ok(RemoteHandle {
            account: account.clone(),
            model: request.model.clone(),
            request_id: RequestId::new("r1"),
            status_url: "http://sim/fal-ai/flux/requests/r1/status".into(),
            response_url: "http://sim/fal-ai/flux/requests/r1".into(),
            cancel_url: "http://sim/fal-ai/flux/requests/r1/cancel".into(),
        })
    });
    generation.expect_upload().returning(|_, _| Err(GenerationError::TooLarge { actual: 11, limit: 10 }));

    let handle = generation.submit(&AccountId::new("main"), &request()).await.unwrap();
    assert_eq!(handle.request_id, RequestId::new("r1"));
    assert_eq!(handle.account, AccountId::new("main"));
    let upload = generation
        .upload(
            &AccountId::new("main"),
            mediagen_ports::MediaBytes {
                bytes: vec![0; 11],
                content_type: "image/png".into(),
                file_name: "a.png".into(),
            },
        )
        .await;
    assert!(matches!(upload, Err(GenerationError::TooLarge { actual: 11, limit: 10 })));
}

#[tokio::test]
async fn alert_log_mock_and_clock_mock() {
    let mut alerts = MockAlertLog::new();
    alerts.expect_record_alert().times(2).returning({
        let mut seen = false;
        move |_, _, _| Ok(!std::mem::replace(&mut seen, true))
    });
    let mut clock = MockClock::new();
    let fixed = chrono::DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z").unwrap().to_utc();
    clock.expect_now().return_const(fixed);

    assert!(alerts.record_alert("budget-80", "2026-11", clock.now()).await.unwrap());
    assert!(!alerts.record_alert("budget-80", "2026-11", clock.now()).await.unwrap());
}

#[test]
fn retryable_classification() {
    assert!(GenerationError::Retryable("503".into()).is_retryable());
    assert!(!GenerationError::ContentPolicy.is_retryable());
    assert!(!GenerationError::SubmitOutcomeUnknown("lost".into()).is_retryable());
}

#[tokio::test]
async fn report_store_mock_returns_what_it_is_told() {
    use mediagen_ports::{JobCounts, MockReportStore, ReportStore};
    let mut reports = MockReportStore::new();
    reports
        .expect_job_counts()
        .times(1)
        .returning(|| Ok(JobCounts { queued: 3, succeeded: 9, ..JobCounts::default() }));
    let counts = reports.job_counts().await.unwrap();
    assert_eq!(counts.by_name()[0], ("queued", 3));
    assert_eq!(counts.by_name()[4], ("succeeded", 9));
    assert_eq!(counts.by_name().iter().map(|(_, n)| n).sum::<u64>(), 12);
}
