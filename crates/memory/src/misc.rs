//! The small ports: the prompt cache, the alert log, media records and usage reports.

use crate::queue::save_media;
use crate::rows::{EntryKind, stamp};
use crate::store::{MemoryStore, Tables};
use async_trait::async_trait;
use mediagen_domain::{JobId, JobState, ModelId, Money, Timestamp, UserId};
use mediagen_ports::{AlertLog, MediaRecord, ModelUsage, PromptCache, StorageError, UsageStore, UserSpend};
use std::collections::{BTreeMap, HashMap};

/// What the ledger settled for each job: (charged, refunded, billed by fal).
pub(crate) fn settled(t: &Tables) -> HashMap<JobId, [Money; 3]> {
    let mut money: HashMap<JobId, [Money; 3]> = HashMap::new();
    for entry in &t.ledger {
        let slot = match entry.kind {
            EntryKind::Charge => 0,
            EntryKind::Refund => 1,
            EntryKind::FalCost => 2,
            EntryKind::Hold => continue,
        };
        let sums = money.entry(entry.job).or_default();
        sums[slot] = sums[slot].saturating_add(entry.amount);
    }
    money
}

#[async_trait]
impl PromptCache for MemoryStore {
    async fn cache_get(&self, key: &str, now: Timestamp) -> Result<Option<String>, StorageError> {
        let now = stamp(now);
        let mut t = self.open()?;
        match t.cache.get(key) {
            Some((value, expires_at)) if *expires_at > now => Ok(Some(value.clone())),
            Some(_) => {
                // Expired: dropped on the way (only then does a read write).
                t.cache.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn cache_put(&self, key: &str, value: &str, expires_at: Timestamp) -> Result<(), StorageError> {
        self.open()?.cache.insert(key.to_owned(), (value.to_owned(), stamp(expires_at)));
        Ok(())
    }
}

#[async_trait]
impl AlertLog for MemoryStore {
    async fn record_alert(&self, key: &str, period: &str, now: Timestamp) -> Result<bool, StorageError> {
        let mut t = self.open()?;
        let entry = (key.to_owned(), period.to_owned());
        if t.alerts.contains_key(&entry) {
            return Ok(false);
        }
        t.alerts.insert(entry, stamp(now));
        Ok(true)
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn save_media(&self, record: &MediaRecord) -> Result<(), StorageError> {
        let mut t = self.open()?;
        save_media(&mut t, record)
    }

    async fn media_for_job(&self, job: JobId) -> Result<Vec<MediaRecord>, StorageError> {
        Ok(self.open()?.media.iter().filter(|m| m.job == job).cloned().collect())
    }

    async fn usage_by_model(&self, from: Timestamp, to: Timestamp) -> Result<Vec<ModelUsage>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let money = settled(&t);
        let mut models: BTreeMap<&ModelId, ModelUsage> = BTreeMap::new();
        for row in t.jobs.values().filter(|row| row.finished_at.is_some_and(|at| at >= from && at < to)) {
            let model = &row.job.spec.model;
            let usage = models.entry(model).or_insert_with(|| ModelUsage {
                model: model.clone(),
                succeeded: 0,
                failed: 0,
                user_charged: Money::ZERO,
                fal_cost: Money::ZERO,
            });
            if row.job.state == JobState::Succeeded {
                usage.succeeded += 1;
            } else {
                usage.failed += 1;
            }
            let [charged, _, fal_cost] = money.get(&row.id()).copied().unwrap_or_default();
            usage.user_charged = usage.user_charged.saturating_add(charged);
            usage.fal_cost = usage.fal_cost.saturating_add(fal_cost);
        }
        Ok(models.into_values().collect())
    }

    async fn usage_by_user(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UserSpend>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let money = settled(&t);
        let mut users: BTreeMap<UserId, UserSpend> = BTreeMap::new();
        for row in t.jobs.values().filter(|row| row.finished_at.is_some_and(|at| at >= from && at < to)) {
            let user = row.job.user;
            let spend =
                users.entry(user).or_insert(UserSpend { user, jobs: 0, charged: Money::ZERO, fal_cost: Money::ZERO });
            spend.jobs += 1;
            let [charged, _, fal_cost] = money.get(&row.id()).copied().unwrap_or_default();
            spend.charged = spend.charged.saturating_add(charged);
            spend.fal_cost = spend.fal_cost.saturating_add(fal_cost);
        }
        let mut spends: Vec<UserSpend> = users.into_values().collect();
        // Biggest spenders first, then by user id (stable over the id order).
        spends.sort_by_key(|spend| std::cmp::Reverse(spend.charged));
        Ok(spends)
    }

    async fn request_count(&self, from: Timestamp, to: Timestamp) -> Result<u64, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        Ok(t.events.iter().filter(|e| e.event == "submitted" && e.at >= from && e.at < to).count() as u64)
    }
}
