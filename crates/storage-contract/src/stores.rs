//! Stories of the small ports: users, accounts, the prompt cache, alerts, media and usage
//! reports; opening a database by URL, and a closed one. Each runs on a fresh database.

use crate::Database;
use crate::support::*;
use mediagen_domain::credit::{CreditPurchase, CreditSpend};
use mediagen_domain::job::Settlement;
use mediagen_domain::{
    AccountId, FailureReason, ImageSize, JobId, JobState, Language, ModelId, Money, Role, UserId, UserSettings,
};
use mediagen_ports::{
    AccountLock, AccountStore, AlertLog, Finish, JobQueue, MediaRecord, ModelUsage, NewUser, PromptCache, StorageError,
    UsageStore, UserSpend, UserStore,
};

/// Users are created once; a later upsert changes only the role.
pub async fn users_are_created_once_and_keep_their_settings(db: &impl Database) {
    let store = db.store().await;
    assert_eq!(store.get_user(UserId(7)).await.unwrap(), None);

    let new = NewUser { id: UserId(7), language: Language::Ru, plan: "free".into(), role: Role::User };
    let user = store.upsert_user(&new).await.unwrap();
    assert_eq!((user.id, user.language, user.plan.as_str(), user.role), (UserId(7), Language::Ru, "free", Role::User));
    assert!(!user.blocked);
    assert_eq!(user.settings, UserSettings::default());

    let mut changed = user.clone();
    changed.language = Language::En;
    changed.plan = "pro".into();
    changed.blocked = true;
    changed.settings = UserSettings {
        default_model: Some(ModelId::new("fal-ai/flux-pro/v1.1")),
        default_size: Some(ImageSize::new(1024, 768)),
        send_as_file: true,
        enhance_prompts: true,
    };
    store.update_user(&changed).await.unwrap();
    assert_eq!(store.get_user(UserId(7)).await.unwrap(), Some(changed.clone()));

    // Seen again (now listed as admin): only the role changes.
    let again = store.upsert_user(&NewUser { role: Role::Admin, ..new }).await.unwrap();
    assert_eq!(again, mediagen_domain::User { role: Role::Admin, ..changed });

    add_user(&store, 3).await;
    let ids: Vec<i64> = store.list_users().await.unwrap().iter().map(|u| u.id.0).collect();
    assert_eq!(ids, vec![3, 7]);
}

/// Updating a user never stored is `NotFound`.
pub async fn updating_an_unknown_user_is_not_found(db: &impl Database) {
    let store = db.store().await;
    let ghost = mediagen_domain::User {
        id: UserId(404),
        language: Language::En,
        plan: "free".into(),
        role: Role::User,
        blocked: false,
        settings: UserSettings::default(),
    };
    assert!(matches!(store.update_user(&ghost).await, Err(StorageError::NotFound(_))));
}

/// Accounts keep key names, locks, the disabled flag and limit overrides.
pub async fn accounts_store_key_names_locks_and_overrides(db: &impl Database) {
    let store = db.store().await;
    let main = AccountId::new("main");
    let record = store.upsert_account(&main, &["primary".into(), "spare".into()]).await.unwrap();
    assert_eq!(record.key_names, vec!["primary", "spare"]);
    assert!(!record.disabled & record.locked.is_none() & record.limit_override.is_none());

    let record = store.upsert_account(&main, &["rotated".into()]).await.unwrap();
    assert_eq!(record.key_names, vec!["rotated"]);
    add_account(&store, "backup").await;

    let lock = AccountLock { reason: "User is locked. Reason: Exhausted balance".into(), since: t(5) };
    store.set_lock(&main, Some(lock.clone())).await.unwrap();
    store.set_admin_state(&main, true, Some(12)).await.unwrap();
    let accounts = store.list_accounts().await.unwrap();
    assert_eq!(accounts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), vec!["backup", "main"]);
    let stored = &accounts[1];
    assert_eq!(stored.locked, Some(lock));
    assert!(stored.disabled);
    assert_eq!(stored.limit_override, Some(12));

    store.set_lock(&main, None).await.unwrap();
    store.set_admin_state(&main, false, None).await.unwrap();
    let stored = store.list_accounts().await.unwrap().remove(1);
    assert!(stored.locked.is_none() & !stored.disabled & stored.limit_override.is_none());
}

/// Every account method on an unknown account is `NotFound`.
pub async fn unknown_accounts_are_not_found(db: &impl Database) {
    let store = db.store().await;
    let ghost = AccountId::new("ghost");
    let purchase = CreditPurchase { amount: Money::from_dollars(100), purchased_at: t(0) };
    assert!(matches!(store.add_purchase(&ghost, &purchase).await, Err(StorageError::NotFound(_))));
    assert!(matches!(store.purchases(&ghost).await, Err(StorageError::NotFound(_))));
    assert!(matches!(store.total_spend(&ghost).await, Err(StorageError::NotFound(_))));
    assert!(matches!(store.spends(&ghost).await, Err(StorageError::NotFound(_))));
    assert!(matches!(store.set_lock(&ghost, None).await, Err(StorageError::NotFound(_))));
    assert!(matches!(store.set_admin_state(&ghost, true, None).await, Err(StorageError::NotFound(_))));
}

/// Purchases come back oldest first; spend sums the ledger, per account and per UTC day.
pub async fn purchases_come_back_oldest_first_and_spend_sums_the_ledger(db: &impl Database) {
    let store = db.store().await;
    let main = add_account(&store, "main").await;
    let other = add_account(&store, "other").await;
    assert_eq!(store.purchases(&main).await.unwrap(), vec![]);
    assert_eq!(store.total_spend(&main).await.unwrap(), Money::ZERO);
    assert_eq!(store.spends(&main).await.unwrap(), vec![]);

    let late = CreditPurchase { amount: Money::from_dollars(50), purchased_at: t(86_400) };
    let early = CreditPurchase { amount: Money::from_dollars(100), purchased_at: t(0) };
    store.add_purchase(&main, &late).await.unwrap();
    store.add_purchase(&main, &early).await.unwrap();
    assert_eq!(store.purchases(&main).await.unwrap(), vec![early, late]);

    // Three jobs on `main` (two today, one tomorrow) and one on `other`.
    let user = add_user(&store, 1).await;
    for (i, (account, at)) in
        [(&main, t(10)), (&main, t(20)), (&main, t(86_400 + 30)), (&other, t(40))].iter().enumerate()
    {
        let job = enqueue(&store, user, &format!("k{i}"), *at).await;
        let claimed = store.claim(&claim_request("w", vec![capacity(account, 1)], 1, *at)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        complete(&store, &job, account, *at).await;
    }
    assert_eq!(store.total_spend(&main).await.unwrap(), cents(12));
    assert_eq!(store.total_spend(&other).await.unwrap(), cents(4));
    assert_eq!(
        store.spends(&main).await.unwrap(),
        vec![CreditSpend { amount: cents(8), spent_at: t(20) }, CreditSpend { amount: cents(4), spent_at: t(86_430) }],
        "one entry per UTC day, stamped at its last spend"
    );
}

/// The prompt cache expires at the expiry instant and replaces older values.
pub async fn the_prompt_cache_expires_and_replaces(db: &impl Database) {
    let store = db.store().await;
    assert_eq!(store.cache_get("k", t(0)).await.unwrap(), None);
    store.cache_put("k", "a better prompt", t(100)).await.unwrap();
    assert_eq!(store.cache_get("k", t(99)).await.unwrap().as_deref(), Some("a better prompt"));
    assert_eq!(store.cache_get("k", t(100)).await.unwrap(), None, "expired at its expiry instant");
    store.cache_put("k", "newer", t(200)).await.unwrap();
    assert_eq!(store.cache_get("k", t(150)).await.unwrap().as_deref(), Some("newer"));
    store.cache_put("k", "newest", t(300)).await.unwrap();
    assert_eq!(store.cache_get("k", t(250)).await.unwrap().as_deref(), Some("newest"));
}

/// An alert fires once per key and period.
pub async fn an_alert_fires_once_per_period(db: &impl Database) {
    let store = db.store().await;
    assert!(store.record_alert("budget-80", "2026-11", t(0)).await.unwrap());
    assert!(!store.record_alert("budget-80", "2026-11", t(10)).await.unwrap());
    assert!(store.record_alert("budget-80", "2026-12", t(20)).await.unwrap());
    assert!(store.record_alert("budget-100", "2026-11", t(30)).await.unwrap());
}

/// Media records are saved, completed without duplicates, and refused for unknown jobs.
pub async fn media_records_are_saved_and_completed(db: &impl Database) {
    let store = db.store().await;
    let user = add_user(&store, 1).await;
    let job = enqueue(&store, user, "k", t(0)).await;
    let mut record = MediaRecord {
        job: job.id,
        fal_url: "https://v3.fal.media/files/cat.png".into(),
        telegram_file_id: None,
        size_bytes: Some(123_456),
        content_type: Some("image/png".into()),
    };
    store.save_media(&record).await.unwrap();
    record.telegram_file_id = Some("AgACAgIAAxkBAAIB".into());
    store.save_media(&MediaRecord { size_bytes: None, content_type: None, ..record.clone() }).await.unwrap();
    assert_eq!(store.media_for_job(job.id).await.unwrap(), vec![record.clone()], "completed, not duplicated");
    assert_eq!(store.media_for_job(JobId(999)).await.unwrap(), vec![]);

    let orphan = MediaRecord { job: JobId(999), ..record };
    assert!(matches!(store.save_media(&orphan).await, Err(StorageError::NotFound(_))));
}

/// Usage reports add up the ledger per model and per user over a half-open range.
pub async fn usage_reports_add_up_the_ledger(db: &impl Database) {
    let store = db.store().await;
    let main = add_account(&store, "main").await;
    let (alice, bob) = (add_user(&store, 1).await, add_user(&store, 2).await);

    // Alice: one success (charged 4c of 5c). Bob: one success, one content-policy failure.
    let a1 = enqueue(&store, alice, "a1", t(0)).await;
    let b1 = enqueue(&store, bob, "b1", t(1)).await;
    let b2 = enqueue(&store, bob, "b2", t(2)).await;
    let claimed = store.claim(&claim_request("w", vec![capacity(&main, 10)], 10, t(3))).await.unwrap();
    assert_eq!(claimed.len(), 3);
    complete(&store, &a1, &main, t(10)).await;
    complete(&store, &b1, &main, t(11)).await;
    store.mark_submitted(b2.id, &lease_of(&store, b2.id).await, &handle(&main, b2.id), t(12)).await.unwrap();
    let refused = Finish {
        lease: None,
        state: JobState::Failed { reason: FailureReason::ContentPolicy },
        settlement: Settlement { user_charge: Money::ZERO, user_refund: b2.hold, fal_cost: cents(4) },
        media: vec![],
        now: t(13),
    };
    store.finish(b2.id, &as_holder(&store, b2.id, &refused).await).await.unwrap();
    // Still queued: not in any report.
    enqueue(&store, alice, "a2", t(14)).await;

    let by_model = store.usage_by_model(t(0), t(60)).await.unwrap();
    assert_eq!(
        by_model,
        vec![ModelUsage {
            model: ModelId::new(MODEL),
            succeeded: 2,
            failed: 1,
            user_charged: cents(8),
            fal_cost: cents(12)
        }]
    );
    let by_user = store.usage_by_user(t(0), t(60)).await.unwrap();
    assert_eq!(
        by_user,
        vec![
            UserSpend { user: alice, jobs: 1, charged: cents(4), fal_cost: cents(4) },
            UserSpend { user: bob, jobs: 2, charged: cents(4), fal_cost: cents(8) },
        ],
        "biggest spenders first, then by user id"
    );
    assert_eq!(store.usage_by_model(t(11), t(13)).await.unwrap()[0].succeeded, 1, "half-open range");
    assert_eq!(store.usage_by_model(t(100), t(200)).await.unwrap(), vec![]);
    assert_eq!(store.request_count(t(0), t(60)).await.unwrap(), 3);
    assert_eq!(store.request_count(t(10), t(12)).await.unwrap(), 2, "submissions at 10 and 11; 12 is out");
}

/// `connect(url)` applies the migrations (none pending) and reaches the same database.
pub async fn connect_migrates_and_reaches_the_same_database(db: &impl Database) {
    let store = db.connect().await;
    add_user(&store, 1).await;
    assert_eq!(db.store().await.list_users().await.unwrap().len(), 1);
}

/// A store whose pool has gone away answers `Unavailable` on every port.
pub async fn a_closed_store_is_unavailable_on_every_port(db: &impl Database) {
    let store = db.store().await;
    db.close(&store).await;
    assert!(matches!(store.get_user(UserId(1)).await, Err(StorageError::Unavailable(_))));
    assert!(matches!(store.list_accounts().await, Err(StorageError::Unavailable(_))));
    assert!(matches!(store.queued_count().await, Err(StorageError::Unavailable(_))));
    let enqueue = JobQueue::enqueue(&store, &request(UserId(1), "k", cents(5), t(0))).await;
    assert!(matches!(enqueue, Err(StorageError::Unavailable(_))), "{enqueue:?}");
    assert!(matches!(store.record_alert("a", "p", t(0)).await, Err(StorageError::Unavailable(_))));
}
