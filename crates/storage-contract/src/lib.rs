#![doc = include_str!("../README.md")]

pub mod concurrency;
pub mod queue;
pub mod reports;
pub mod sql;
pub mod stores;
pub mod support;

use async_trait::async_trait;
use mediagen_domain::JobId;
use mediagen_ports::{AccountStore, AlertLog, JobQueue, PromptCache, ReportStore, UsageStore, UserStore};

/// Every storage port at once: what an adapter's store implements.
pub trait Store:
    UserStore + JobQueue + AccountStore + PromptCache + AlertLog + UsageStore + ReportStore + Clone + Send + Sync + 'static
{
}

impl<T> Store for T where
    T: UserStore
        + JobQueue
        + AccountStore
        + PromptCache
        + AlertLog
        + UsageStore
        + ReportStore
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// A kind of ledger row: the user's hold at enqueue, then the charge and refund that settle
/// it and what fal bills the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    /// Credit held at enqueue.
    Hold,
    /// Taken from the hold for good.
    Charge,
    /// Given back from the hold.
    Refund,
    /// What fal bills the account.
    FalCost,
}

impl LedgerKind {
    /// The stored spelling (`ledger_kind_check` in both schemas).
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Hold => "hold",
            LedgerKind::Charge => "charge",
            LedgerKind::Refund => "refund",
            LedgerKind::FalCost => "fal_cost",
        }
    }
}

/// A fresh, migrated, empty database of one adapter, made for one story and thrown away
/// with this value. The adapter's tests implement it (a newtype around the adapter's
/// `testing::TestDb`, or around the store itself in memory) and run the stories through
/// [`contract_tests!`].
#[async_trait]
pub trait Database: Sized + Send + Sync + 'static {
    /// The adapter's store.
    type Store: Store;

    /// A database of its own: a new file (SQLite), a new database (PostgreSQL), a new
    /// store (in memory).
    async fn fresh() -> Self;

    /// A store on the database's shared pool.
    async fn store(&self) -> Self::Store;

    /// A store on a pool of its own, as another part of the deployment would hold it: a
    /// second process on PostgreSQL, a second pool on the same file in this process on
    /// SQLite (which serves one machine), a clone sharing the tables in memory.
    async fn peer(&self) -> Self::Store;

    /// A store opened through the adapter's public `connect(url, max_connections)`, which
    /// applies migrations (none pending here); in memory, which has no URL, a clone.
    async fn connect(&self) -> Self::Store;

    /// Closes `store` (its pool, for the SQL adapters): every port must answer
    /// `Unavailable` afterwards.
    async fn close(&self, store: &Self::Store);

    // Probes: what the stories check behind the ports, read straight from the adapter's
    // own records (committed state), so a port cannot vouch for itself.

    /// Jobs stored, whatever their state.
    async fn job_count(&self) -> i64;

    /// Jobs with a finish instant (terminal, settled).
    async fn finished_job_count(&self) -> i64;

    /// The amount of the ledger row of `kind` for `job`, if there is one.
    async fn ledger_amount(&self, job: JobId, kind: LedgerKind) -> Option<i64>;

    /// Ledger rows of `job`, of any kind.
    async fn ledger_rows_of_job(&self, job: JobId) -> i64;

    /// Ledger rows of `kind`, over every job.
    async fn ledger_rows_of_kind(&self, kind: LedgerKind) -> i64;

    /// Jobs with more than one ledger row of `kind` (a double charge, say).
    async fn jobs_with_repeated_entries(&self, kind: LedgerKind) -> i64;

    /// Events named `event` (`claimed`, `submitted`, …), over every job.
    async fn event_count(&self, event: &str) -> i64;

    /// The names of `job`'s events, oldest first.
    async fn job_events(&self, job: JobId) -> Vec<String>;

    /// Finished jobs whose hold is not exactly their charge plus their refund (or whose hold,
    /// charge or refund row is missing, or whose hold row differs from the job's hold), by id.
    async fn unbalanced_jobs(&self) -> Vec<JobId>;

    /// Jobs in flight (dispatching, submitted, running) per account, ordered by account.
    async fn in_flight_per_account(&self) -> Vec<i64>;
}

/// Defines one `#[tokio::test]` per story of the contract for the [`Database`] `$db`,
/// grouped in modules `queue`, `stores`, `reports` and `concurrency`. An adapter's test file says
/// `mediagen_storage_contract::contract_tests!(MyDb);` and has `tokio` as a
/// dev-dependency. Every test runs on a multi-threaded runtime, so concurrent stories
/// really run in parallel.
#[macro_export]
macro_rules! contract_tests {
    ($db:ty) => {
        $crate::contract_tests!(@module queue, $db;
            enqueue_holds_credit_and_reports_the_position,
            enqueue_is_idempotent_on_its_key,
            enqueue_for_an_unknown_user_is_not_found,
            quotas_refuse_without_writing_anything,
            user_usage_counts_today_month_flight_and_queue,
            claim_fills_free_slots_fairly,
            claim_respects_plan_caps_and_not_before,
            claim_names_unknown_accounts,
            submit_and_run_follow_the_state_machine,
            requeue_returns_in_flight_jobs_and_refuses_the_rest,
            finish_settles_once,
            finish_refuses_what_the_state_machine_or_the_hold_forbid,
            cancel_refunds_queued_jobs_and_points_at_in_flight_ones,
            leases_are_renewed_and_expired_ones_rescued,
            a_takeover_by_the_same_owner_still_fences_the_old_task,
            a_refused_write_leaves_nothing_locked_for_the_next_claim,
            the_prompt_helpers_cost_stays_with_the_job_across_a_rescue,
            submit_and_delivery_markers_survive_a_dead_owner,
            queue_positions_and_recent_jobs,
            wait_for_change_wakes_on_an_enqueue_from_a_peer,
            every_finished_job_balances_its_hold,
        );
        $crate::contract_tests!(@module stores, $db;
            users_are_created_once_and_keep_their_settings,
            updating_an_unknown_user_is_not_found,
            accounts_store_key_names_locks_and_overrides,
            unknown_accounts_are_not_found,
            purchases_come_back_oldest_first_and_spend_sums_the_ledger,
            the_prompt_cache_expires_and_replaces,
            an_alert_fires_once_per_period,
            media_records_are_saved_and_completed,
            usage_reports_add_up_the_ledger,
            connect_migrates_and_reaches_the_same_database,
            a_closed_store_is_unavailable_on_every_port,
        );
        $crate::contract_tests!(@module reports, $db;
            usage_rows_group_finished_jobs_by_utc_day_user_model_and_account,
            requests_by_day_count_every_accepted_submission_and_match_the_request_count,
            job_counts_are_by_current_state,
            job_timings_cover_every_job_alive_in_the_period,
            slot_intervals_pair_each_claim_with_the_event_that_leaves_flight,
        );
        $crate::contract_tests!(@module concurrency, $db;
            a_queue_cap_of_one_admits_one_of_ten_simultaneous_requests,
            a_daily_cap_of_one_admits_one_of_ten_simultaneous_requests,
            ten_deliveries_of_one_update_make_one_job,
        );
    };
    (@module $module:ident, $db:ty; $($story:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $story() {
                    let db = <$db as $crate::Database>::fresh().await;
                    $crate::$module::$story(&db).await;
                }
            )*
        }
    };
}
