//! Following a request fal holds, against the simulator: lost result answers are fetched
//! again (never a second run), failed runs are `Retryable` and unbilled, every follow ends
//! at its deadline, and refused keys are set aside for the account's other keys.

mod common;

use common::*;
use mediagen_domain::AccountId;
use mediagen_fal::FalGeneration;
use mediagen_fal_sim::{AccountUpdate, RequestStatus};
use mediagen_ports::{CancelOutcome, Generation, GenerationError};
use std::time::{Duration, Instant};

/// fal's answer to a result fetch lost in every way the simulator scripts, more times in a
/// row than the adapter's retry budget (1 + 3): the old adapter gave up with `Retryable` and
/// the engine submitted the job again.
#[tokio::test]
async fn lost_result_answers_are_fetched_again_and_the_job_runs_once() {
    let env = start().await;
    for fault in ["result_transport", "result_502", "result_503_gateway", "result_504", "result_cut_body"] {
        let prompt = format!("fox for {fault}");
        let request = image_request("fal-ai/flux/dev", &format!("{prompt} [[fault:{fault}:5]]"));
        let handle = env.fal.submit(&env.account, &request).await.unwrap();
        let out = env.fal.wait(&handle, deadline()).await.unwrap_or_else(|e| panic!("{fault}: {e:?}"));
        assert_eq!(out.media.len(), 1, "{fault}");

        let sim = env.sim.handle();
        let records = sim.requests_for_prompt(&prompt);
        assert_eq!(records.len(), 1, "{fault}: one submit");
        assert_eq!(sim.runs_for_prompt(&prompt), 1, "{fault}: one run");
        assert!(records[0].charged.micros() > 0);
        assert_eq!(sim.billed_for_prompt(&prompt), records[0].charged, "{fault}: billed once");
        assert_eq!(records[0].result_fetches, 6, "{fault}: five lost answers, then the result");
    }
}

/// A lost answer once, as a rule assigns it (no marker).
#[tokio::test]
async fn a_single_gateway_error_at_result_is_invisible() {
    let env = start().await;
    env.sim.handle().add_faults([mediagen_fal_sim::FaultRule::burst(mediagen_fal_sim::FaultKind::Result504, 1)]);
    let handle = env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "a quiet fox")).await.unwrap();
    env.fal.wait(&handle, deadline()).await.unwrap();
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert_eq!(record.result_fetches, 2);
    assert_eq!(env.sim.handle().runs_for_prompt("a quiet fox"), 1);
}

/// fal's own verdict that the run failed (a 5xx result with its request id and error type)
/// is `Retryable` at once: fetching it again gives the same answer, and fal bills nothing.
#[tokio::test]
async fn a_failed_run_is_retryable_unbilled_and_fetched_once() {
    let env = start().await;
    for fault in ["result_500", "result_503"] {
        let prompt = format!("failing fox {fault}");
        let request = image_request("fal-ai/flux/dev", &format!("{prompt} [[fault:{fault}]]"));
        let handle = env.fal.submit(&env.account, &request).await.unwrap();
        let error = env.fal.wait(&handle, deadline()).await.unwrap_err();
        assert!(matches!(error, GenerationError::Retryable(_)), "{fault}: {error:?}");
        let sim = env.sim.handle();
        assert_eq!(sim.billed_for_prompt(&prompt).micros(), 0, "{fault}");
        assert_eq!(sim.request(handle.request_id.as_str()).unwrap().result_fetches, 1, "{fault}");
    }
}

/// A request that never leaves IN_QUEUE (a stuck endpoint, a locked account) ends at the
/// deadline the engine passes, however long the adapter's own poll settings would wait.
#[tokio::test]
async fn a_stuck_request_times_out_at_the_deadline() {
    let env = start_with(2, |s| s, |c| c.poll.deadline_ms = 600_000).await;
    let handle =
        env.fal.submit(&env.account, &image_request("fal-ai/flux/dev", "stuck fox [[fault:stuck]]")).await.unwrap();
    let started = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(5), env.fal.wait(&handle, in_secs(1.5))).await;
    let took = started.elapsed();
    let error = waited.expect("wait ends at its deadline").unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
    assert!(took >= Duration::from_millis(1_300) && took < Duration::from_secs(5), "took {took:?}");

    assert_eq!(env.fal.cancel(&handle).await.unwrap(), CancelOutcome::Requested);
    let record = env.sim.handle().request(handle.request_id.as_str()).unwrap();
    assert!(record.cancel_requested);
    assert_eq!(record.status, RequestStatus::Completed);
    assert_eq!(env.sim.handle().runs_for_prompt("stuck fox"), 0);
    assert_eq!(env.sim.handle().billed_for_prompt("stuck fox").micros(), 0);

    // A deadline already past ends the follow at once.
    let error = env.fal.wait(&handle, in_secs(-1.0)).await.unwrap_err();
    assert!(matches!(error, GenerationError::Timeout(_)), "{error:?}");
}

const BAD_1: &str = "bad1id:NotKnownToFal-one";
const BAD_2: &str = "bad2id:NotKnownToFal-two";

#[tokio::test]
async fn a_refused_key_is_set_aside_and_the_account_runs_on_its_other_key() {
    let env = start().await;
    let sim = env.sim.handle();
    let fal = FalGeneration::new(fal_config(env.sim.base_url(), &[KEY_1, BAD_1])).unwrap();
    let main = env.account.clone();

    let mut handles = vec![];
    for i in 0..4 {
        handles.push(fal.submit(&main, &image_request("fal-ai/flux/dev", &format!("keyed fox {i}"))).await.unwrap());
    }
    for handle in &handles {
        fal.wait(handle, deadline()).await.unwrap();
    }
    assert_eq!(sim.unauthorized_for_key(BAD_1), 1, "one refusal, then the key is set aside");
    assert_eq!(sim.account("main").unwrap().submits_by_key.get(KEY_1), Some(&4));
    assert_eq!(sim.requests().len(), 4, "no submit was lost or doubled");
    let statuses = fal.key_statuses();
    assert_eq!(statuses.iter().map(|k| k.key.as_str()).collect::<Vec<_>>(), ["key1", "key2"]);
    assert!(statuses.iter().all(|k| k.account == main));
    assert!(statuses[0].refused_since.is_none());
    assert!(statuses[1].refused_since.is_some());

    // The probe runs nothing and keeps the key refused while fal refuses it.
    assert!(fal.probe_refused_keys().await.is_empty());
    assert_eq!(sim.unauthorized_for_key(BAD_1), 2);
    assert!(fal.key_statuses()[1].refused_since.is_some());
    assert_eq!(sim.requests().len(), 4);

    // The operator puts it back too early: its next refusal sets it aside again, and the
    // call goes through on the good key.
    assert!(fal.enable_key(&main, "key2"));
    assert!(!fal.enable_key(&main, "key9"));
    assert!(!fal.enable_key(&AccountId::new("nobody"), "key2"));
    assert!(fal.key_statuses().iter().all(|k| k.refused_since.is_none()));
    for i in 0..2 {
        let handle = fal.submit(&main, &image_request("fal-ai/flux/dev", &format!("again {i}"))).await.unwrap();
        fal.wait(&handle, deadline()).await.unwrap();
    }
    assert_eq!(sim.unauthorized_for_key(BAD_1), 3);
    assert!(fal.key_statuses()[1].refused_since.is_some());

    // fal knows the key now: the probe puts it back.
    sim.update_account("main", &AccountUpdate { add_keys: vec![BAD_1.into()], ..AccountUpdate::default() });
    let restored = fal.probe_refused_keys().await;
    assert_eq!(restored.len(), 1);
    assert_eq!((restored[0].account.as_str(), restored[0].key.as_str()), ("main", "key2"));
    assert!(restored[0].refused_since.is_none());
    assert!(fal.key_statuses().iter().all(|k| k.refused_since.is_none()));

    // A job already at fal is followed with another key when its own is revoked.
    let handle = fal.submit(&main, &image_request("fal-ai/flux/dev", "revoked fox")).await.unwrap();
    let submitted_with = sim.request(handle.request_id.as_str()).unwrap().key;
    sim.update_account(
        "main",
        &AccountUpdate { remove_keys: vec![submitted_with.clone()], ..AccountUpdate::default() },
    );
    fal.wait(&handle, deadline()).await.unwrap();
    assert_eq!(sim.runs_for_prompt("revoked fox"), 1);
    let refused: Vec<_> = fal.key_statuses().into_iter().filter(|k| k.refused_since.is_some()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].key, if submitted_with == KEY_1 { "key1" } else { "key2" });
}

#[tokio::test]
async fn only_refused_keys_is_bad_key_for_the_account() {
    let env = start().await;
    let sim = env.sim.handle();
    let good = &env.fal;
    let handle = good.submit(&env.account, &image_request("fal-ai/flux/dev", "lonely fox")).await.unwrap();

    let fal = FalGeneration::new(fal_config(env.sim.base_url(), &[BAD_1, BAD_2])).unwrap();
    let error = fal.submit(&env.account, &image_request("fal-ai/flux/dev", "x")).await.unwrap_err();
    assert!(matches!(&error, GenerationError::BadKey(a) if a == &env.account), "{error:?}");
    assert_eq!((sim.unauthorized_for_key(BAD_1), sim.unauthorized_for_key(BAD_2)), (1, 1));
    assert!(fal.key_statuses().iter().all(|k| k.refused_since.is_some()));

    // No usable key left: nothing is sent until a probe or the operator puts one back.
    let error = fal.wait(&handle, deadline()).await.unwrap_err();
    assert!(matches!(&error, GenerationError::BadKey(a) if a == &env.account), "{error:?}");
    let error = fal.cancel(&handle).await.unwrap_err();
    assert!(matches!(&error, GenerationError::BadKey(_)), "{error:?}");
    assert_eq!((sim.unauthorized_for_key(BAD_1), sim.unauthorized_for_key(BAD_2)), (1, 1));

    good.wait(&handle, deadline()).await.unwrap();
}
