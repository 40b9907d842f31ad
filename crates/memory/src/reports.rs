//! `ReportStore`: the figures of operator reports, alerts, the capacity planner and
//! `/metrics`, read from the jobs, their events and the ledger (no aggregate kept).

use crate::misc::settled;
use crate::rows::stamp;
use crate::store::MemoryStore;
use async_trait::async_trait;
use mediagen_domain::{AccountId, JobId, JobState, ModelId, Money, Timestamp, UserId};
use mediagen_ports::{DayCount, JobCounts, JobTiming, ReportStore, SlotInterval, StorageError, UsageRow};
use std::collections::{BTreeMap, HashMap};

/// States in which a job leaves flight: back to the queue, or terminal.
const RELEASES: [&str; 4] = ["queued", "succeeded", "failed", "canceled"];

#[async_trait]
impl ReportStore for MemoryStore {
    async fn usage_rows(&self, from: Timestamp, to: Timestamp) -> Result<Vec<UsageRow>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let money = settled(&t);
        // Accounts sort with none last, as the SQL adapters order them.
        type Group<'a> = (chrono::NaiveDate, UserId, &'a ModelId, bool, Option<&'a AccountId>);
        let mut groups: BTreeMap<Group<'_>, UsageRow> = BTreeMap::new();
        for row in t.jobs.values() {
            let Some(finished) = row.finished_at.filter(|at| *at >= from && *at < to) else { continue };
            let (day, user, model, account) =
                (finished.date_naive(), row.job.user, &row.job.spec.model, row.account.as_ref());
            let group = groups.entry((day, user, model, account.is_none(), account)).or_insert_with(|| UsageRow {
                day,
                user,
                model: model.clone(),
                account: account.cloned(),
                jobs: 0,
                succeeded: 0,
                failed: 0,
                canceled: 0,
                user_charged: Money::ZERO,
                user_refunded: Money::ZERO,
                fal_cost: Money::ZERO,
            });
            group.jobs += 1;
            match row.job.state {
                JobState::Succeeded => group.succeeded += 1,
                JobState::Failed { .. } => group.failed += 1,
                JobState::Canceled => group.canceled += 1,
                _ => {}
            }
            let [charged, refunded, fal_cost] = money.get(&row.id()).copied().unwrap_or_default();
            group.user_charged = group.user_charged.saturating_add(charged);
            group.user_refunded = group.user_refunded.saturating_add(refunded);
            group.fal_cost = group.fal_cost.saturating_add(fal_cost);
        }
        Ok(groups.into_values().collect())
    }

    async fn requests_by_day(&self, from: Timestamp, to: Timestamp) -> Result<Vec<DayCount>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let mut days: BTreeMap<chrono::NaiveDate, u64> = BTreeMap::new();
        for event in t.events.iter().filter(|e| e.event == "submitted" && e.at >= from && e.at < to) {
            *days.entry(event.at.date_naive()).or_default() += 1;
        }
        Ok(days.into_iter().map(|(day, count)| DayCount { day, count }).collect())
    }

    async fn job_counts(&self) -> Result<JobCounts, StorageError> {
        let t = self.open()?;
        let mut counts = JobCounts::default();
        for row in t.jobs.values() {
            let slot = match row.job.state {
                JobState::Queued => &mut counts.queued,
                JobState::Dispatching { .. } => &mut counts.dispatching,
                JobState::Submitted { .. } => &mut counts.submitted,
                JobState::Running { .. } => &mut counts.running,
                JobState::Succeeded => &mut counts.succeeded,
                JobState::Failed { .. } => &mut counts.failed,
                JobState::Canceled => &mut counts.canceled,
            };
            *slot += 1;
        }
        Ok(counts)
    }

    async fn job_timings(&self, from: Timestamp, to: Timestamp) -> Result<Vec<JobTiming>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let mut first_claims: HashMap<JobId, Timestamp> = HashMap::new();
        for claim in t.events.iter().filter(|e| e.event == "claimed") {
            first_claims.entry(claim.job).and_modify(|at| *at = (*at).min(claim.at)).or_insert(claim.at);
        }
        let mut timings: Vec<JobTiming> = t
            .jobs
            .values()
            .filter(|row| row.enqueued_at < to && row.finished_at.is_none_or(|at| at > from))
            .map(|row| JobTiming {
                job: row.id(),
                user: row.job.user,
                model: row.job.spec.model.clone(),
                state: row.job.state.name().to_owned(),
                enqueued_at: row.enqueued_at,
                first_claimed_at: first_claims.get(&row.id()).copied(),
                finished_at: row.finished_at,
            })
            .collect();
        timings.sort_by_key(|timing| (timing.enqueued_at, timing.job));
        Ok(timings)
    }

    async fn slot_intervals(&self, from: Timestamp, to: Timestamp) -> Result<Vec<SlotInterval>, StorageError> {
        let (from, to) = (stamp(from), stamp(to));
        let t = self.open()?;
        let mut intervals = Vec::new();
        for (i, claim) in t.events.iter().enumerate() {
            let Some(account) = claim.account.as_ref().filter(|_| claim.event == "claimed" && claim.at < to) else {
                continue;
            };
            // The job's next event that left flight, in the order events were written.
            let release = t.events[i + 1..].iter().find(|e| e.job == claim.job && RELEASES.contains(&e.to));
            if release.is_some_and(|r| r.at <= from) {
                continue;
            }
            let Some(row) = t.jobs.get(&claim.job) else { continue };
            intervals.push((
                (claim.at, claim.job, i),
                SlotInterval {
                    job: claim.job,
                    account: account.clone(),
                    model: row.job.spec.model.clone(),
                    claimed_at: claim.at,
                    released_at: release.map(|r| r.at),
                    released_to: release.map(|r| r.to.to_owned()),
                },
            ));
        }
        intervals.sort_by_key(|(key, _)| *key);
        Ok(intervals.into_iter().map(|(_, interval)| interval).collect())
    }
}
