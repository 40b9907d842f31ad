//! User plans and the intake check: may this user queue this request now, and if not, why
//! and until when.
//!
//! Days and months are UTC calendar periods, so a user in any time zone sees the same
//! reset instant the ledger uses.
//!
//! Intake checks the queue cap, not the in-flight cap: a user whose slots are all busy may
//! still queue, and the scheduler holds their extra jobs back until a slot frees
//! (`Plan::max_in_flight` is read there).

use crate::Timestamp;
use crate::credit::dollars;
use crate::money::Money;
use crate::user::Role;
use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a user on a plan may do; `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The plan's name, as stored on the user.
    pub name: String,
    /// Jobs a user may create per UTC day.
    pub daily_jobs: Option<u32>,
    /// Charges plus active holds allowed per UTC month.
    pub monthly_spend: Option<Money>,
    /// Jobs of the user running at fal at once (enforced by the scheduler).
    pub max_in_flight: u32,
    /// Jobs of the user waiting in our queue at once (enforced at intake).
    pub max_queued: u32,
}

/// A user's consumption, as storage counts it at intake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserUsage {
    /// Jobs created since the start of the UTC day.
    pub jobs_today: u32,
    /// Charges plus active holds since the start of the UTC month.
    pub spend_this_month: Money,
    /// Jobs running at fal.
    pub in_flight: u32,
    /// Jobs waiting in our queue.
    pub queued: u32,
}

/// Why a request was refused, with the numbers a person needs to understand it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QuotaRefusal {
    /// The month's spending cap would be passed.
    #[error(
        "monthly spending limit: {spent} of {limit} used and this request costs {request_cost}; resets {resets_at}"
    )]
    MonthlySpend {
        /// The plan's cap.
        limit: Money,
        /// Charges plus holds so far this month.
        spent: Money,
        /// The request's price.
        request_cost: Money,
        /// The first instant of the next UTC month.
        resets_at: Timestamp,
    },
    /// The day's job cap is reached.
    #[error("daily limit: {used} of {limit} jobs used today; resets {resets_at}")]
    DailyJobs {
        /// The plan's cap.
        limit: u32,
        /// Jobs created today.
        used: u32,
        /// The request's price.
        request_cost: Money,
        /// The next UTC midnight.
        resets_at: Timestamp,
    },
    /// The user's queue is full; a slot frees when one of their jobs starts or ends.
    #[error("queue full: {queued} of {limit} jobs already waiting; try again when one starts")]
    QueueFull {
        /// The plan's cap.
        limit: u32,
        /// Jobs waiting now.
        queued: u32,
        /// The request's price.
        request_cost: Money,
    },
}

impl QuotaRefusal {
    /// When the limit lifts by itself; `None` when it lifts as the user's jobs progress.
    pub fn resets_at(&self) -> Option<Timestamp> {
        match self {
            QuotaRefusal::MonthlySpend { resets_at, .. } | QuotaRefusal::DailyJobs { resets_at, .. } => {
                Some(*resets_at)
            }
            QuotaRefusal::QueueFull { .. } => None,
        }
    }

    /// What the refused request would have cost.
    pub fn request_cost(&self) -> Money {
        match self {
            QuotaRefusal::MonthlySpend { request_cost, .. }
            | QuotaRefusal::DailyJobs { request_cost, .. }
            | QuotaRefusal::QueueFull { request_cost, .. } => *request_cost,
        }
    }
}

/// May `usage` grow by one request costing `request_cost` under `plan` at `now`?
///
/// Admins are never refused. A cap is reached when the request would go beyond it:
/// spend may land exactly on the monthly cap, and a daily cap of `n` allows `n` jobs.
/// When several limits refuse, the longest-lasting is reported (month, then day, then
/// queue), so nobody is told to wait for a queue slot when the month's budget is gone.
///
/// # Errors
/// The [`QuotaRefusal`] that applies.
pub fn check(
    plan: &Plan,
    role: Role,
    usage: &UserUsage,
    request_cost: Money,
    now: Timestamp,
) -> Result<(), QuotaRefusal> {
    if role == Role::Admin {
        return Ok(());
    }
    if let Some(limit) = plan.monthly_spend {
        // An overflowing sum is certainly over any cap.
        let after = usage.spend_this_month.checked_add(request_cost);
        if after.is_err() || after.is_ok_and(|after| after > limit) {
            return Err(QuotaRefusal::MonthlySpend {
                limit,
                spent: usage.spend_this_month,
                request_cost,
                resets_at: next_month_start(now),
            });
        }
    }
    if let Some(limit) = plan.daily_jobs
        && usage.jobs_today >= limit
    {
        return Err(QuotaRefusal::DailyJobs {
            limit,
            used: usage.jobs_today,
            request_cost,
            resets_at: next_day_start(now),
        });
    }
    if usage.queued >= plan.max_queued {
        return Err(QuotaRefusal::QueueFull { limit: plan.max_queued, queued: usage.queued, request_cost });
    }
    Ok(())
}

/// Midnight UTC starting `now`'s day.
pub fn day_start(now: Timestamp) -> Timestamp {
    now.date_naive().and_time(NaiveTime::MIN).and_utc()
}

/// The next midnight UTC after `now`; the end of representable time on its last day.
pub fn next_day_start(now: Timestamp) -> Timestamp {
    day_start(now).checked_add_signed(TimeDelta::days(1)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The first instant of `now`'s UTC month.
pub fn month_start(now: Timestamp) -> Timestamp {
    first_of(now.year(), now.month()).unwrap_or(now)
}

/// The first instant of the UTC month after `now`'s; the end of representable time in its last month.
pub fn next_month_start(now: Timestamp) -> Timestamp {
    let (year, month) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    first_of(year, month).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn first_of(year: i32, month: u32) -> Option<Timestamp> {
    NaiveDate::from_ymd_opt(year, month, 1).map(|date| date.and_time(NaiveTime::MIN).and_utc())
}

/// The plan table, loaded from config; every user's `plan` names one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlansFile", into = "PlansFile")]
pub struct Plans {
    default_plan: String,
    plans: BTreeMap<String, Plan>,
}

/// A plan table that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PlansError {
    /// The text is not TOML of the expected shape.
    #[error("plan table: {0}")]
    Toml(#[from] toml::de::Error),
    /// Nobody could be assigned a plan.
    #[error("the plan table has no plans")]
    Empty,
    /// New users would get a plan that does not exist.
    #[error("the default plan {0:?} is not in the plan table")]
    UnknownDefault(String),
    /// Two plans with one name.
    #[error("plan {0:?} is listed twice")]
    Duplicate(String),
    /// A plan that would take jobs and never run them, or never take any.
    #[error("plan {name:?}: {reason}")]
    Invalid {
        /// The plan.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The file shape: `default_plan = "free"` and one `[plans.<name>]` table per plan.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlansFile {
    default_plan: String,
    plans: BTreeMap<String, PlanLimits>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daily_jobs: Option<u32>,
    #[serde(default, with = "dollars::option", skip_serializing_if = "Option::is_none")]
    monthly_spend: Option<Money>,
    max_in_flight: u32,
    max_queued: u32,
}

impl TryFrom<PlansFile> for Plans {
    type Error = PlansError;
    fn try_from(file: PlansFile) -> Result<Self, Self::Error> {
        let plans = file
            .plans
            .into_iter()
            .map(|(name, limits)| Plan {
                name,
                daily_jobs: limits.daily_jobs,
                monthly_spend: limits.monthly_spend,
                max_in_flight: limits.max_in_flight,
                max_queued: limits.max_queued,
            })
            .collect();
        Plans::new(file.default_plan, plans)
    }
}

impl From<Plans> for PlansFile {
    fn from(plans: Plans) -> Self {
        PlansFile {
            default_plan: plans.default_plan,
            plans: plans
                .plans
                .into_values()
                .map(|plan| {
                    let limits = PlanLimits {
                        daily_jobs: plan.daily_jobs,
                        monthly_spend: plan.monthly_spend,
                        max_in_flight: plan.max_in_flight,
                        max_queued: plan.max_queued,
                    };
                    (plan.name, limits)
                })
                .collect(),
        }
    }
}

impl Default for Plans {
    /// `free` (the default for new users), `basic` and `pro`.
    fn default() -> Self {
        let plan = |name: &str, daily_jobs, monthly_dollars, max_in_flight, max_queued| Plan {
            name: name.to_owned(),
            daily_jobs,
            monthly_spend: Some(Money::from_dollars(monthly_dollars)),
            max_in_flight,
            max_queued,
        };
        let table =
            [plan("free", Some(10), 1, 1, 3), plan("basic", Some(100), 10, 2, 10), plan("pro", None, 100, 4, 30)];
        Plans {
            default_plan: "free".to_owned(),
            plans: table.into_iter().map(|plan| (plan.name.clone(), plan)).collect(),
        }
    }
}

impl Plans {
    /// A table whose `default_plan` is given to new users.
    ///
    /// # Errors
    /// [`PlansError`] when the table is empty, names a plan twice, lacks the default, or has a
    /// plan with `max_in_flight` or `max_queued` of 0.
    pub fn new(default_plan: String, plans: Vec<Plan>) -> Result<Self, PlansError> {
        if plans.is_empty() {
            return Err(PlansError::Empty);
        }
        let mut table = BTreeMap::new();
        for plan in plans {
            let invalid = |reason| PlansError::Invalid { name: plan.name.clone(), reason };
            if plan.name.trim().is_empty() {
                return Err(invalid("the name is empty"));
            }
            if plan.max_in_flight == 0 {
                return Err(invalid("max_in_flight is 0, so its jobs would never run"));
            }
            if plan.max_queued == 0 {
                return Err(invalid("max_queued is 0, so it could never queue a job (block the user instead)"));
            }
            if table.contains_key(&plan.name) {
                return Err(PlansError::Duplicate(plan.name));
            }
            table.insert(plan.name.clone(), plan);
        }
        if !table.contains_key(&default_plan) {
            return Err(PlansError::UnknownDefault(default_plan));
        }
        Ok(Plans { default_plan, plans: table })
    }

    /// Parses a plan table; it replaces the built-in plans rather than merging with them.
    ///
    /// ```toml
    /// default_plan = "free"
    ///
    /// [plans.free]
    /// daily_jobs = 10          # omit for unlimited
    /// monthly_spend = "1.00"   # dollars; omit for unlimited
    /// max_in_flight = 1
    /// max_queued = 3
    /// ```
    ///
    /// # Errors
    /// [`PlansError::Toml`] for text of the wrong shape (including an invalid table).
    pub fn from_toml(text: &str) -> Result<Self, PlansError> {
        Ok(toml::from_str(text)?)
    }

    /// The plan called `name`.
    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The plan new users get.
    pub fn default_plan(&self) -> &Plan {
        &self.plans[&self.default_plan]
    }

    /// Every plan, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Plan> {
        self.plans.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> Timestamp {
        Utc.with_ymd_and_hms(y, m, d, h, min, s).unwrap()
    }

    fn plan() -> Plan {
        Plan {
            name: "test".into(),
            daily_jobs: Some(1),
            monthly_spend: Some(Money::from_dollars(1)),
            max_in_flight: 1,
            max_queued: 1,
        }
    }

    fn cost() -> Money {
        Money::from_cents(4)
    }

    #[test]
    fn period_helpers_are_utc_calendar_boundaries() {
        let now = at(2026, 12, 31, 23, 59, 59);
        assert_eq!(day_start(now), at(2026, 12, 31, 0, 0, 0));
        assert_eq!(next_day_start(now), at(2027, 1, 1, 0, 0, 0));
        assert_eq!(month_start(now), at(2026, 12, 1, 0, 0, 0));
        assert_eq!(next_month_start(now), at(2027, 1, 1, 0, 0, 0));
        let midnight = at(2028, 2, 29, 0, 0, 0);
        assert_eq!(day_start(midnight), midnight);
        assert_eq!(next_day_start(midnight), at(2028, 3, 1, 0, 0, 0));
        assert_eq!(month_start(midnight), at(2028, 2, 1, 0, 0, 0));
        assert_eq!(next_month_start(at(2028, 2, 1, 0, 0, 0)), at(2028, 3, 1, 0, 0, 0));
    }

    #[test]
    fn a_cap_of_one_allows_one() {
        let now = at(2026, 11, 15, 10, 0, 0);
        let fresh = UserUsage::default();
        assert_eq!(check(&plan(), Role::User, &fresh, cost(), now), Ok(()));
        let used = UserUsage { jobs_today: 1, ..fresh };
        assert_eq!(
            check(&plan(), Role::User, &used, cost(), now),
            Err(QuotaRefusal::DailyJobs {
                limit: 1,
                used: 1,
                request_cost: cost(),
                resets_at: at(2026, 11, 16, 0, 0, 0)
            })
        );
    }

    #[test]
    fn monthly_spend_may_land_exactly_on_the_cap() {
        let now = at(2026, 11, 15, 10, 0, 0);
        let near = UserUsage { spend_this_month: Money::from_cents(96), ..UserUsage::default() };
        assert_eq!(check(&plan(), Role::User, &near, cost(), now), Ok(()));
        let over = UserUsage { spend_this_month: Money::from_micros(960_001), ..near };
        let refusal = check(&plan(), Role::User, &over, cost(), now).unwrap_err();
        assert_eq!(
            refusal,
            QuotaRefusal::MonthlySpend {
                limit: Money::from_dollars(1),
                spent: Money::from_micros(960_001),
                request_cost: cost(),
                resets_at: at(2026, 12, 1, 0, 0, 0),
            }
        );
        assert_eq!(refusal.resets_at(), Some(at(2026, 12, 1, 0, 0, 0)));
        assert_eq!(refusal.request_cost(), cost());
        assert_eq!(
            refusal.to_string(),
            "monthly spending limit: $0.9600 of $1.0000 used and this request costs $0.0400; resets 2026-12-01 00:00:00 UTC"
        );
        let overflow = UserUsage { spend_this_month: Money::from_micros(i64::MAX), ..near };
        assert!(matches!(check(&plan(), Role::User, &overflow, cost(), now), Err(QuotaRefusal::MonthlySpend { .. })));
    }

    #[test]
    fn queue_cap_is_checked_at_intake_and_in_flight_is_not() {
        let now = at(2026, 11, 15, 10, 0, 0);
        let busy = UserUsage { in_flight: 5, ..UserUsage::default() };
        assert_eq!(check(&plan(), Role::User, &busy, cost(), now), Ok(()), "the scheduler holds it back");
        let full = UserUsage { queued: 1, ..UserUsage::default() };
        let refusal = check(&plan(), Role::User, &full, cost(), now).unwrap_err();
        assert_eq!(refusal, QuotaRefusal::QueueFull { limit: 1, queued: 1, request_cost: cost() });
        assert_eq!(refusal.resets_at(), None);
        assert_eq!(refusal.to_string(), "queue full: 1 of 1 jobs already waiting; try again when one starts");
    }

    #[test]
    fn the_longest_lasting_refusal_is_reported() {
        let now = at(2026, 11, 15, 10, 0, 0);
        let everything = UserUsage { jobs_today: 1, spend_this_month: Money::from_dollars(1), in_flight: 1, queued: 1 };
        assert!(matches!(check(&plan(), Role::User, &everything, cost(), now), Err(QuotaRefusal::MonthlySpend { .. })));
        let day_and_queue = UserUsage { spend_this_month: Money::ZERO, ..everything };
        assert!(matches!(check(&plan(), Role::User, &day_and_queue, cost(), now), Err(QuotaRefusal::DailyJobs { .. })));
    }

    #[test]
    fn admins_and_unlimited_plans_pass() {
        let now = at(2026, 11, 15, 10, 0, 0);
        let everything =
            UserUsage { jobs_today: 99, spend_this_month: Money::from_dollars(99), in_flight: 9, queued: 9 };
        assert_eq!(check(&plan(), Role::Admin, &everything, cost(), now), Ok(()));
        let unlimited = Plan { daily_jobs: None, monthly_spend: None, max_queued: 10, ..plan() };
        assert_eq!(check(&unlimited, Role::User, &everything, cost(), now), Ok(()));
    }

    #[test]
    fn default_plans_start_new_users_on_free() {
        let plans = Plans::default();
        let listed: Vec<Plan> = plans.iter().cloned().collect();
        assert_eq!(Plans::new("free".into(), listed).unwrap(), plans, "the built-in table passes validation");
        assert_eq!(plans.default_plan().name, "free");
        assert_eq!(plans.get("pro").unwrap().daily_jobs, None);
        assert!(plans.get("gold").is_none());
        assert_eq!(plans.iter().count(), 3);
        let again = Plans::from_toml(&toml::to_string(&plans).unwrap()).unwrap();
        assert_eq!(again, plans);
    }

    #[test]
    fn plans_read_from_toml_replace_the_defaults() {
        let plans = Plans::from_toml(
            r#"
            default_plan = "trial"

            [plans.trial]
            daily_jobs = 5
            monthly_spend = "0.50"
            max_in_flight = 1
            max_queued = 2

            [plans.vip]
            max_in_flight = 8
            max_queued = 50
            "#,
        )
        .unwrap();
        let trial = plans.default_plan();
        assert_eq!(
            (trial.name.as_str(), trial.daily_jobs, trial.monthly_spend),
            ("trial", Some(5), Some(Money::from_cents(50)))
        );
        let vip = plans.get("vip").unwrap();
        assert_eq!((vip.daily_jobs, vip.monthly_spend, vip.max_in_flight), (None, None, 8));
        assert!(plans.get("free").is_none());
    }

    #[test]
    fn unusable_plan_tables_are_refused() {
        let table = |default: &str, body: &str| Plans::from_toml(&format!("default_plan = \"{default}\"\n{body}"));
        let ok = "[plans.a]\nmax_in_flight = 1\nmax_queued = 1\n";
        assert!(table("a", ok).is_ok());
        assert!(table("b", ok).unwrap_err().to_string().contains("\"b\" is not in the plan table"));
        assert!(table("a", "[plans.a]\nmax_in_flight = 0\nmax_queued = 1\n").is_err());
        assert!(table("a", "[plans.a]\nmax_in_flight = 1\nmax_queued = 0\n").is_err());
        assert!(table("a", "[plans.a]\nmax_in_flight = 1\nmax_queue = 1\n").is_err(), "typos are refused");
        assert!(table("a", "plans = {}").is_err());
        assert!(matches!(Plans::new("a".into(), vec![]), Err(PlansError::Empty)));
        let twice = vec![Plan { name: "a".into(), ..plan() }, Plan { name: "a".into(), ..plan() }];
        assert!(matches!(Plans::new("a".into(), twice), Err(PlansError::Duplicate(name)) if name == "a"));
    }

    proptest! {
        #[test]
        fn periods_contain_now(secs in 0i64..4_000_000_000) {
            let now = DateTime::<Utc>::from_timestamp(secs, 0).unwrap();
            prop_assert!(day_start(now) <= now && now < next_day_start(now));
            prop_assert!(month_start(now) <= now && now < next_month_start(now));
            prop_assert_eq!(next_day_start(now) - day_start(now), TimeDelta::days(1));
            prop_assert_eq!(month_start(next_month_start(now) - TimeDelta::nanoseconds(1)), month_start(now));
        }
    }
}
