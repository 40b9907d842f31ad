//! The scheduling policy: which queued jobs go to which fal account, as a pure function.
//!
//! fal runs only a few requests per account at a time and queues the rest FIFO, so one
//! heavy user could starve everyone. We keep our own queue and hand out free slots with
//! [`schedule`]: the user with the fewest jobs in flight goes first, each user's jobs go
//! oldest first, and each job goes to the account with the most free slots. Storage calls
//! it inside its claim transaction and the engine calls it when slots free up, so it takes
//! a snapshot and returns a plan, with no clock, no randomness and no I/O.

use crate::Timestamp;
use crate::ids::{AccountId, JobId, UserId};
use chrono::TimeDelta;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashSet};

/// One fal account's capacity as storage sees it at claim time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSlots {
    /// The account.
    pub account: AccountId,
    /// Requests fal runs at once on this account (its concurrency limit).
    pub limit: u32,
    /// Our jobs currently assigned to it (dispatching, submitted or running).
    pub in_flight: u32,
    /// False for locked, disabled or unhealthy accounts: they get nothing.
    pub usable: bool,
}

impl AccountSlots {
    /// Jobs this account can still take: `limit + overhang - in_flight`, never below zero.
    pub fn free_slots(&self, overhang: u32) -> u32 {
        if !self.usable {
            return 0;
        }
        self.limit.saturating_add(overhang).saturating_sub(self.in_flight)
    }
}

/// A job waiting in our queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// The job.
    pub job: JobId,
    /// Who asked for it.
    pub user: UserId,
    /// When it entered the queue; orders a user's jobs and breaks ties between users.
    pub enqueued_at: Timestamp,
}

/// How much of the shared capacity a user already holds, and how much they may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLoad {
    /// The user.
    pub user: UserId,
    /// Their jobs in flight on any account.
    pub in_flight: u32,
    /// Most jobs their plan lets them have in flight; `None` for no limit (admins).
    pub cap: Option<u32>,
}

/// A snapshot of everything the policy looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerInput {
    /// Every account, usable or not.
    pub accounts: Vec<AccountSlots>,
    /// Extra jobs each account may hold in fal's own queue beyond its limit, so a slot
    /// that frees between two polls is refilled by fal at once instead of idling.
    pub overhang: u32,
    /// The queued jobs, in any order.
    pub queue: Vec<QueuedJob>,
    /// One entry per user with queued jobs; jobs of a user without one are not scheduled.
    pub users: Vec<UserLoad>,
    /// Most assignments to make in this call (`None`: as many as fit).
    pub max_assignments: Option<u32>,
}

/// One decision: run this job on this account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Assignment {
    /// The job to claim.
    pub job: JobId,
    /// The account to submit it on.
    pub account: AccountId,
}

/// The assignments for one claim, in the order they were decided (submit in this order).
///
/// Guarantees, for any input:
/// - no account gets more than [`AccountSlots::free_slots`] jobs, an unusable one none;
/// - no user goes above their cap, counting what they already have in flight;
/// - no job is assigned twice, and only queued jobs are assigned;
/// - each user's jobs are taken oldest first;
/// - while a free slot and the assignment bound remain, every user under their cap with
///   a queued job gets one (work-conserving);
/// - a user is served only while no one under their cap with queued jobs has fewer in flight
///   (so users who keep a backlog end within one job of each other, given equal starts).
///
/// Duplicate accounts or user loads are merged conservatively (fewest free slots, sum of
/// in-flight, smallest cap); a job id queued twice is taken once, at its oldest entry.
pub fn schedule(input: &SchedulerInput) -> Vec<Assignment> {
    let (account_ids, mut accounts) = account_heap(&input.accounts, input.overhang);
    let free: u64 = accounts.iter().map(|(free, _)| u64::from(*free)).sum();
    let mut budget = free.min(input.max_assignments.map_or(u64::MAX, u64::from));
    if budget == 0 {
        return Vec::new();
    }

    let mut users = user_queues(&input.queue, &input.users);
    let mut turns: BinaryHeap<Reverse<Turn>> =
        users.iter().enumerate().filter_map(|(idx, user)| user.turn(idx)).map(Reverse).collect();

    let mut assignments = Vec::new();
    while budget > 0 {
        let Some(Reverse(turn)) = turns.pop() else { break };
        // The budget never exceeds the free slots, so an account is always there.
        let Some((free, Reverse(account))) = accounts.pop() else { break };
        let user = &mut users[turn.idx];
        let job = user.jobs[user.next];
        user.next += 1;
        user.load += 1;
        assignments.push(Assignment { job: job.job, account: account_ids[account].clone() });
        budget -= 1;
        if free > 1 {
            accounts.push((free - 1, Reverse(account)));
        }
        if let Some(next) = user.turn(turn.idx) {
            turns.push(Reverse(next));
        }
    }
    assignments
}

/// Jobs that can run at once on the usable accounts: the capacity behind a wait estimate.
///
/// Overhang is left out on purpose: jobs parked in fal's queue do not run any sooner.
pub fn total_capacity(accounts: &[AccountSlots]) -> u32 {
    accounts.iter().filter(|a| a.usable).fold(0u32, |sum, a| sum.saturating_add(a.limit))
}

/// The user-facing "about T" for a job with `position` jobs ahead of it (0 = next).
///
/// Jobs leave in rounds of `capacity`, each taking `mean_service`, so the job starts
/// within `ceil((position + 1) / capacity)` rounds. `None` when nothing can run
/// (`capacity` is 0) or the estimate overflows; a negative mean counts as zero.
pub fn estimated_wait(position: u32, capacity: u32, mean_service: TimeDelta) -> Option<TimeDelta> {
    if capacity == 0 {
        return None;
    }
    let rounds = (u64::from(position) + 1).div_ceil(u64::from(capacity));
    let rounds = i32::try_from(rounds).ok()?;
    mean_service.max(TimeDelta::zero()).checked_mul(rounds)
}

/// Whose turn it is, ordered so the smallest is served first.
///
/// Field order is the priority: fewest in flight, then the oldest waiting job (which makes
/// equal users take turns), then the job and user ids so the order is total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Turn {
    load: u64,
    oldest: Timestamp,
    job: JobId,
    idx: usize,
}

/// A user's side of one call: their waiting jobs oldest first and their load so far.
struct UserQueue<'a> {
    jobs: Vec<&'a QueuedJob>,
    next: usize,
    load: u64,
    cap: u64,
}

impl UserQueue<'_> {
    /// The user's next turn, or `None` when they have nothing left or are at their cap.
    fn turn(&self, idx: usize) -> Option<Turn> {
        let job = self.jobs.get(self.next)?;
        (self.load < self.cap).then_some(Turn { load: self.load, oldest: job.enqueued_at, job: job.job, idx })
    }
}

/// Free slots and account index; the max pops first.
type AccountHeap = BinaryHeap<(u32, Reverse<usize>)>;

/// Usable accounts with free slots as a max-heap on free slots; ties pop the smallest id.
///
/// Account ids are sorted first, so the index stands for the id and input order cannot
/// leak into the result.
fn account_heap(accounts: &[AccountSlots], overhang: u32) -> (Vec<AccountId>, AccountHeap) {
    let mut merged: BTreeMap<&AccountId, u32> = BTreeMap::new();
    for slots in accounts {
        let free = slots.free_slots(overhang);
        merged.entry(&slots.account).and_modify(|f| *f = (*f).min(free)).or_insert(free);
    }
    let ids: Vec<AccountId> = merged.keys().map(|id| (*id).clone()).collect();
    let heap =
        merged.values().enumerate().filter(|(_, free)| **free > 0).map(|(i, free)| (*free, Reverse(i))).collect();
    (ids, heap)
}

/// Each known user's deduplicated jobs, oldest first, in user-id order.
fn user_queues<'a>(queue: &'a [QueuedJob], loads: &[UserLoad]) -> Vec<UserQueue<'a>> {
    let mut known: BTreeMap<UserId, (u64, u64)> = BTreeMap::new();
    for load in loads {
        let cap = load.cap.map_or(u64::MAX, u64::from);
        let entry = known.entry(load.user).or_insert((0, u64::MAX));
        entry.0 += u64::from(load.in_flight);
        entry.1 = entry.1.min(cap);
    }

    let mut jobs: Vec<&QueuedJob> = queue.iter().collect();
    jobs.sort_by_key(|j| (j.enqueued_at, j.job, j.user));
    let mut seen = HashSet::new();
    let mut per_user: BTreeMap<UserId, Vec<&QueuedJob>> = BTreeMap::new();
    for job in jobs {
        // A user without a load has no known cap; scheduling them could break it, so skip.
        if known.contains_key(&job.user) && seen.insert(job.job) {
            per_user.entry(job.user).or_default().push(job);
        }
    }

    per_user
        .into_iter()
        .map(|(user, jobs)| {
            let (load, cap) = known[&user];
            UserQueue { jobs, next: 0, load, cap }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_timestamp(secs, 0).unwrap()
    }

    fn account(name: &str, limit: u32, in_flight: u32) -> AccountSlots {
        AccountSlots { account: AccountId::new(name), limit, in_flight, usable: true }
    }

    fn job(id: i64, user: i64, secs: i64) -> QueuedJob {
        QueuedJob { job: JobId(id), user: UserId(user), enqueued_at: at(secs) }
    }

    fn load(user: i64, in_flight: u32, cap: Option<u32>) -> UserLoad {
        UserLoad { user: UserId(user), in_flight, cap }
    }

    fn per_user(input: &SchedulerInput, out: &[Assignment]) -> BTreeMap<UserId, u32> {
        let owner: HashMap<JobId, UserId> = input.queue.iter().map(|j| (j.job, j.user)).collect();
        let mut counts = BTreeMap::new();
        for a in out {
            *counts.entry(owner[&a.job]).or_insert(0) += 1;
        }
        counts
    }

    fn per_account(out: &[Assignment]) -> BTreeMap<&str, u32> {
        let mut counts = BTreeMap::new();
        for a in out {
            *counts.entry(a.account.as_str()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn a_heavy_user_does_not_starve_light_users() {
        // The heavy user queued first, so a FIFO would hand them every slot.
        let mut queue: Vec<QueuedJob> = (0..50).map(|i| job(i, 1, i)).collect();
        queue.extend((0..20).map(|i| job(100 + i, 10 + i, 100 + i)));
        let mut users = vec![load(1, 0, None)];
        users.extend((0..20).map(|i| load(10 + i, 0, None)));
        let input = SchedulerInput { accounts: vec![account("main", 10, 0)], queue, users, ..Default::default() };

        let out = schedule(&input);
        let counts = per_user(&input, &out);
        assert_eq!(out.len(), 10);
        assert_eq!(counts[&UserId(1)], 1, "one round: the heavy user gets one slot like everyone else");
        assert_eq!(counts.len(), 10, "nine light users served, oldest waiting first");
        assert!((10..19).all(|u| counts.get(&UserId(u)) == Some(&1)));

        // Next claim, with the first ten still running and ten more slots: the eleven light
        // users who have nothing in flight come before the heavy user's second job.
        let mut next = input.clone();
        let served: HashSet<JobId> = out.iter().map(|a| a.job).collect();
        next.queue.retain(|j| !served.contains(&j.job));
        for user in &mut next.users {
            user.in_flight = counts.get(&user.user).copied().unwrap_or(0);
        }
        next.accounts = vec![account("main", 20, 10)];
        let out = schedule(&next);
        let counts = per_user(&next, &out);
        assert_eq!(counts.get(&UserId(1)), None, "the heavy user already has a job running");
        assert_eq!(counts.len(), 10);
        assert!((19..29).all(|u| counts.get(&UserId(u)) == Some(&1)));
    }

    #[test]
    fn per_user_cap_is_respected() {
        let input = SchedulerInput {
            accounts: vec![account("main", 20, 0)],
            queue: (0..10).map(|i| job(i, 1, i)).chain((10..20).map(|i| job(i, 2, i))).collect(),
            users: vec![load(1, 1, Some(3)), load(2, 0, None)],
            ..Default::default()
        };
        let out = schedule(&input);
        let counts = per_user(&input, &out);
        assert_eq!(counts[&UserId(1)], 2, "one already in flight plus two reaches the cap of three");
        assert_eq!(counts[&UserId(2)], 10, "the uncapped user takes the rest");
        let user1: Vec<JobId> = out.iter().map(|a| a.job).filter(|j| j.0 < 10).collect();
        assert_eq!(user1, vec![JobId(0), JobId(1)], "oldest first within a user");
    }

    #[test]
    fn a_locked_account_is_never_used() {
        let locked = AccountSlots { usable: false, ..account("locked", 40, 0) };
        let input = SchedulerInput {
            accounts: vec![locked, account("main", 2, 0)],
            overhang: 3,
            queue: (0..20).map(|i| job(i, i, i)).collect(),
            users: (0..20).map(|i| load(i, 0, None)).collect(),
            ..Default::default()
        };
        let out = schedule(&input);
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|a| a.account.as_str() == "main"));
        assert_eq!(input.accounts[0].free_slots(3), 0);
    }

    #[test]
    fn overhang_adds_exactly_k_per_account() {
        let queue: Vec<QueuedJob> = (0..100).map(|i| job(i, i % 7, i)).collect();
        let users: Vec<UserLoad> = (0..7).map(|u| load(u, 0, None)).collect();
        for k in 0..4 {
            let input = SchedulerInput {
                accounts: vec![account("a", 4, 1), account("b", 2, 0), account("c", 3, 5)],
                overhang: k,
                queue: queue.clone(),
                users: users.clone(),
                ..Default::default()
            };
            let out = schedule(&input);
            let counts = per_account(&out);
            assert_eq!(counts.get("a").copied().unwrap_or(0), 3 + k);
            assert_eq!(counts.get("b").copied().unwrap_or(0), 2 + k);
            assert_eq!(counts.get("c").copied().unwrap_or(0), (3 + k).saturating_sub(5), "saturates at zero");
        }
    }

    #[test]
    fn prefers_the_account_with_most_free_slots() {
        let input = SchedulerInput {
            accounts: vec![account("busy", 10, 8), account("idle", 5, 0), account("also-idle", 5, 0)],
            queue: vec![job(1, 1, 0), job(2, 2, 1), job(3, 3, 2)],
            users: (1..=3).map(|u| load(u, 0, None)).collect(),
            ..Default::default()
        };
        let out = schedule(&input);
        let accounts: Vec<&str> = out.iter().map(|a| a.account.as_str()).collect();
        // Equal free slots tie by id, then the spread keeps them level.
        assert_eq!(accounts, vec!["also-idle", "idle", "also-idle"]);
    }

    #[test]
    fn empty_inputs_give_empty_output() {
        assert!(schedule(&SchedulerInput::default()).is_empty());
        let no_accounts =
            SchedulerInput { queue: vec![job(1, 1, 0)], users: vec![load(1, 0, None)], ..Default::default() };
        assert!(schedule(&no_accounts).is_empty());
        let no_jobs = SchedulerInput { accounts: vec![account("main", 4, 0)], ..Default::default() };
        assert!(schedule(&no_jobs).is_empty());
        let full = SchedulerInput { accounts: vec![account("main", 4, 4)], ..no_accounts.clone() };
        assert!(schedule(&full).is_empty());
        let zero_bound =
            SchedulerInput { accounts: vec![account("main", 4, 0)], max_assignments: Some(0), ..no_accounts };
        assert!(schedule(&zero_bound).is_empty());
    }

    #[test]
    fn max_assignments_bounds_one_claim() {
        let input = SchedulerInput {
            accounts: vec![account("main", 10, 0)],
            queue: (0..10).map(|i| job(i, i, i)).collect(),
            users: (0..10).map(|u| load(u, 0, None)).collect(),
            max_assignments: Some(3),
            ..Default::default()
        };
        let jobs: Vec<JobId> = schedule(&input).into_iter().map(|a| a.job).collect();
        assert_eq!(jobs, vec![JobId(0), JobId(1), JobId(2)], "the users waiting longest go first");
    }

    #[test]
    fn users_with_fewer_in_flight_go_first() {
        let input = SchedulerInput {
            accounts: vec![account("main", 3, 0)],
            queue: vec![job(1, 1, 0), job(2, 1, 1), job(3, 2, 5), job(4, 2, 6), job(5, 2, 7)],
            users: vec![load(1, 2, None), load(2, 0, None)],
            ..Default::default()
        };
        let jobs: Vec<JobId> = schedule(&input).into_iter().map(|a| a.job).collect();
        // User 2 catches up to user 1's two in flight, then the older job breaks the tie.
        assert_eq!(jobs, vec![JobId(3), JobId(4), JobId(1)]);
    }

    #[test]
    fn unknown_users_and_duplicates_are_handled_conservatively() {
        let input = SchedulerInput {
            accounts: vec![account("main", 5, 0), account("main", 2, 0), account("other", 1, 0)],
            queue: vec![job(1, 1, 5), job(1, 1, 0), job(2, 9, 1), job(3, 1, 2), job(4, 1, 3)],
            users: vec![load(1, 1, Some(4)), load(1, 1, Some(6))],
            ..Default::default()
        };
        let out = schedule(&input);
        let jobs: Vec<JobId> = out.iter().map(|a| a.job).collect();
        assert_eq!(jobs, vec![JobId(1), JobId(3)], "job 1 once, user 9 unknown, 2 + 2 reaches cap 4");
        let counts = per_account(&out);
        assert_eq!(counts.values().sum::<u32>(), 2);
        assert!(counts.get("main").copied().unwrap_or(0) <= 2, "a duplicated account keeps its smaller capacity");
    }

    #[test]
    fn output_does_not_depend_on_input_order() {
        let input = SchedulerInput {
            accounts: vec![account("b", 3, 0), account("a", 3, 0), account("c", 1, 0)],
            queue: (0..30).map(|i| job(i, i % 4, i / 3)).collect(),
            users: (0..4).map(|u| load(u, (u % 2) as u32, None)).collect(),
            ..Default::default()
        };
        let mut reversed = input.clone();
        reversed.accounts.reverse();
        reversed.queue.reverse();
        reversed.users.reverse();
        assert_eq!(schedule(&input), schedule(&reversed));
    }

    #[test]
    fn wait_is_whole_rounds_of_the_mean_service_time() {
        let mean = TimeDelta::seconds(20);
        assert_eq!(estimated_wait(0, 4, mean), Some(TimeDelta::seconds(20)), "next in line: one round");
        assert_eq!(estimated_wait(3, 4, mean), Some(TimeDelta::seconds(20)));
        assert_eq!(estimated_wait(4, 4, mean), Some(TimeDelta::seconds(40)));
        assert_eq!(estimated_wait(9, 1, mean), Some(TimeDelta::seconds(200)));
        assert_eq!(estimated_wait(0, 0, mean), None, "no capacity, no estimate");
        assert_eq!(estimated_wait(5, 2, TimeDelta::seconds(-3)), Some(TimeDelta::zero()));
        assert_eq!(estimated_wait(u32::MAX, 1, mean), None, "overflow is no estimate, not a panic");
        assert_eq!(estimated_wait(u32::MAX, u32::MAX, mean), Some(TimeDelta::seconds(40)));
    }

    #[test]
    fn total_capacity_counts_usable_limits_only() {
        let locked = AccountSlots { usable: false, ..account("locked", 40, 0) };
        assert_eq!(total_capacity(&[account("a", 4, 3), locked, account("b", 2, 0)]), 6);
        assert_eq!(total_capacity(&[]), 0);
    }

    /// Arbitrary snapshots small enough to hit every edge: full and unusable accounts,
    /// capped and uncapped users, users with no load entry and tight assignment bounds.
    fn snapshot(equal_starts: bool) -> impl Strategy<Value = SchedulerInput> {
        let accounts = prop::collection::vec((0u32..6, 0u32..8, prop::bool::weighted(0.8)), 0..5).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (limit, in_flight, usable))| AccountSlots {
                    account: AccountId::new(format!("acct-{i}")),
                    limit,
                    in_flight,
                    usable,
                })
                .collect::<Vec<_>>()
        });
        let users = prop::collection::vec((0u32..6, prop::option::weighted(0.6, 0u32..8)), 1..7);
        let queue = prop::collection::vec((0usize..8, 0i64..50), 0..60);
        (accounts, 0u32..3, users, queue, prop::option::weighted(0.3, 0u32..15)).prop_map(
            move |(accounts, overhang, users, queue, max_assignments)| {
                let users: Vec<UserLoad> = users
                    .into_iter()
                    .enumerate()
                    .map(|(i, (in_flight, cap))| UserLoad {
                        user: UserId(i as i64),
                        in_flight: if equal_starts { 0 } else { in_flight },
                        cap,
                    })
                    .collect();
                // Users indexed past the load list stand for users storage knows nothing about.
                let queue =
                    queue.into_iter().enumerate().map(|(i, (user, secs))| job(i as i64, user as i64, secs)).collect();
                SchedulerInput { accounts, overhang, queue, users, max_assignments }
            },
        )
    }

    /// Checks every guarantee of [`schedule`]; returns each known user's (in flight after, cap, backlog).
    fn check_invariants(input: &SchedulerInput, out: &[Assignment]) -> BTreeMap<UserId, (u64, u64, usize)> {
        let queued: HashMap<JobId, &QueuedJob> = input.queue.iter().map(|j| (j.job, j)).collect();
        let mut assigned = HashSet::new();
        for a in out {
            assert!(queued.contains_key(&a.job), "assigned a job that was not queued: {a:?}");
            assert!(assigned.insert(a.job), "assigned twice: {a:?}");
        }

        let mut left: BTreeMap<&AccountId, u32> = BTreeMap::new();
        for slots in &input.accounts {
            left.insert(&slots.account, slots.free_slots(input.overhang));
        }
        for a in out {
            let slots = input.accounts.iter().find(|s| s.account == a.account).unwrap();
            assert!(slots.usable, "assigned to an unusable account: {a:?}");
            let free = left.get_mut(&a.account).unwrap();
            assert!(*free > 0, "over capacity on {}", a.account);
            *free -= 1;
        }
        let free_left: u32 = left.values().sum();
        let bound_left = input.max_assignments.is_none_or(|m| out.len() < m as usize);

        let mut users = BTreeMap::new();
        for load in &input.users {
            let mut mine: Vec<&QueuedJob> = input.queue.iter().filter(|j| j.user == load.user).collect();
            mine.sort_by_key(|j| (j.enqueued_at, j.job));
            let taken = mine.iter().take_while(|j| assigned.contains(&j.job)).count();
            let total = mine.iter().filter(|j| assigned.contains(&j.job)).count();
            assert_eq!(taken, total, "user {} not served oldest first", load.user);
            let after = u64::from(load.in_flight) + total as u64;
            let cap = load.cap.map_or(u64::MAX, u64::from);
            assert!(total == 0 || after <= cap, "user {} over their cap", load.user);
            let backlog = mine.len() - total;
            if free_left > 0 && bound_left {
                assert!(backlog == 0 || after >= cap, "slots idle while user {} waits under their cap", load.user);
            }
            users.insert(load.user, (after, cap, backlog));
        }
        let unknown_served = input.queue.iter().any(|j| !users.contains_key(&j.user) && assigned.contains(&j.job));
        assert!(!unknown_served, "scheduled a user with no known cap");

        let served: HashSet<UserId> = out.iter().map(|a| queued[&a.job].user).collect();
        for (u, &(after_u, cap_u, backlog_u)) in &users {
            if backlog_u == 0 || after_u >= cap_u {
                continue;
            }
            for v in &served {
                let after_v = users[v].0;
                assert!(after_v <= after_u + 1, "user {v} served up to {after_v} while user {u} waits at {after_u}");
            }
        }
        users
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn schedule_keeps_every_guarantee(input in snapshot(false)) {
            let out = schedule(&input);
            check_invariants(&input, &out);
        }

        #[test]
        fn backlogged_users_end_within_one_job_of_each_other(input in snapshot(true)) {
            let out = schedule(&input);
            let users = check_invariants(&input, &out);
            let backlogged: Vec<(u64, u64)> =
                users.values().filter(|(_, _, backlog)| *backlog > 0).map(|&(after, cap, _)| (after, cap)).collect();
            for &(after_u, cap_u) in &backlogged {
                if after_u >= cap_u {
                    continue; // Their cap, not the policy, holds them back.
                }
                for &(after_v, _) in &backlogged {
                    prop_assert!(after_v <= after_u + 1, "{after_v} vs {after_u}");
                }
            }
        }

        #[test]
        fn schedule_ignores_input_order(input in snapshot(false), rotate in 0usize..60) {
            let mut shuffled = input.clone();
            shuffled.accounts.reverse();
            shuffled.users.reverse();
            let len = shuffled.queue.len();
            if len > 0 {
                shuffled.queue.rotate_left(rotate % len);
            }
            prop_assert_eq!(schedule(&input), schedule(&shuffled));
        }

        #[test]
        fn wait_grows_with_position_and_shrinks_with_capacity(
            position in 0u32..10_000,
            capacity in 1u32..100,
            secs in 0i64..600,
        ) {
            let mean = TimeDelta::seconds(secs);
            let wait = estimated_wait(position, capacity, mean).unwrap();
            prop_assert!(wait >= mean);
            prop_assert!(estimated_wait(position + 1, capacity, mean).unwrap() >= wait);
            prop_assert!(estimated_wait(position, capacity + 1, mean).unwrap() <= wait);
            // Capacity jobs at a time: the job ahead by exactly one round waits one mean less.
            if position >= capacity {
                prop_assert_eq!(estimated_wait(position - capacity, capacity, mean).unwrap() + mean, wait);
            }
        }
    }
}
