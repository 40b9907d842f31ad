//! Operator alerts, each delivered once per period: deduplicated through the `AlertLog`
//! port, so a restart or a second process does not repeat them.
//!
//! Keys and periods:
//! - `account-locked:<account>` / `bad-key:<account>` / `breaker:<account>`: per UTC day;
//! - `limit-drop:<account>`: per announced drop instant;
//! - `budget-<percent>`: per UTC month (`YYYY-MM`);
//! - `discount-tier:<tier>`: per UTC month;
//! - `unknown-model:<model>`: per UTC day;
//! - `balance-runout:<account>`: per credit cycle (the latest purchase: buying resets it);
//! - `credit-expiry:<account>`: per purchase that expires with credit left;
//! - `saturation`: per UTC day (full capacity with jobs waiting for too much of the day).
//!
//! Scheduled summaries use the same log (`report-daily`, `report-weekly`; see `reports`).

use crate::Operator;
use mediagen_domain::budget::period_key;
use mediagen_domain::discount::DiscountTier;
use mediagen_domain::insights::duration_text as duration;
use mediagen_domain::quota::{day_start, month_start};
use mediagen_domain::{Money, Timestamp};
use mediagen_ports::{OperatorAlert, Severity};

/// An alert with the key and period that make it fire once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Alert {
    pub(crate) key: String,
    pub(crate) period: String,
    pub(crate) severity: Severity,
    pub(crate) title: String,
    pub(crate) body: String,
}

/// The period key for alerts that may repeat daily.
pub(crate) fn day_key(now: Timestamp) -> String {
    now.format("%Y-%m-%d").to_string()
}

impl Operator {
    /// Sends `alert` unless it already fired in its period; true when it was sent.
    ///
    /// When storage cannot say whether it fired, it is sent anyway: a repeated alert is
    /// better than a lost one.
    pub(crate) async fn alert_once(&self, alert: Alert) -> bool {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        match ports.alerts.record_alert(&alert.key, &alert.period, now).await {
            Ok(false) => return false,
            Ok(true) => {}
            Err(error) => tracing::warn!(key = %alert.key, %error, "alert log unavailable; sending anyway"),
        }
        let message = OperatorAlert { severity: alert.severity, title: alert.title, body: alert.body };
        if let Err(error) = ports.messaging.notify_operators(&message).await {
            tracing::error!(key = %alert.key, %error, "operator alert not delivered");
        }
        true
    }

    /// The periodic operator checks: limit drops ahead, budget thresholds, discount tiers,
    /// stored locks, credit running out or expiring, time at full capacity; and the
    /// scheduled summaries that are due.
    ///
    /// The engine runs these on its own timers; calling them directly (a test, a second
    /// process) fires nothing twice, since every alert goes through the alert log.
    pub async fn run_checks(&self) {
        self.operator_checks().await;
        self.scheduled_reports().await;
    }

    /// The periodic alert checks.
    pub(crate) async fn operator_checks(&self) {
        self.check_limit_drops().await;
        self.check_budget().await;
        self.check_discount_tier().await;
        self.check_locks().await;
        self.check_credit().await;
        self.check_saturation().await;
    }

    /// Reminds of every account locked in storage, once a day (a lock seen by this
    /// process was announced under the same key when it happened).
    async fn check_locks(&self) {
        let now = self.inner.ports.clock.now();
        let Ok(accounts) = self.accounts().await else { return };
        for account in accounts.iter() {
            let Some(lock) = &account.record.locked else { continue };
            let id = &account.record.id;
            let alert = Alert {
                key: format!("account-locked:{id}"),
                period: day_key(now),
                severity: Severity::Critical,
                title: format!("fal account {id} is locked"),
                body: format!(
                    "Account {id} has been locked since {} ({}). It takes no work until the lock is cleared: \
                     top up at fal, then record it with /topup.",
                    lock.since.format("%Y-%m-%d %H:%M UTC"),
                    lock.reason
                ),
            };
            self.alert_once(alert).await;
        }
    }

    /// Warns when an account's unexpired credit runs out soon at its recent burn rate, and
    /// when a purchase with credit left expires soon.
    async fn check_credit(&self) {
        let now = self.inner.ports.clock.now();
        let insights = &self.inner.config.insights;
        let Ok(accounts) = self.accounts().await else { return };
        for account in accounts.iter() {
            let id = &account.record.id;
            let credit = &account.credit;
            let since = now - insights.burn_window;
            let spent: i64 = credit
                .spends
                .iter()
                .filter(|s| s.spent_at > since && s.spent_at <= now)
                .map(|s| s.amount.micros().max(0))
                .sum();
            let days = insights.burn_window.num_seconds().max(1) as f64 / 86_400.0;
            let burn = Money::from_micros((spent as f64 / days).round() as i64);
            if burn > Money::ZERO
                && let Some(runs_out) = credit.runs_out_at(now, burn)
                && runs_out - now <= insights.balance_warning
            {
                let cycle = credit
                    .purchases
                    .iter()
                    .filter(|p| p.purchased_at <= now)
                    .map(|p| p.purchased_at)
                    .max()
                    .map_or_else(|| "no-purchase".to_owned(), |at| at.to_rfc3339());
                let alert = Alert {
                    key: format!("balance-runout:{id}"),
                    period: cycle,
                    severity: Severity::Warning,
                    title: format!("fal account {id}: credit runs out in about {} days", (runs_out - now).num_days()),
                    body: format!(
                        "Account {id} has {} of unexpired credit. At the last {} days' average spend of {}/day it \
                         reaches the lock threshold around {}, and fal then locks the account. Buy credit before then.",
                        credit.balance(now),
                        insights.burn_window.num_days(),
                        burn,
                        runs_out.format("%Y-%m-%d %H:%M UTC")
                    ),
                };
                self.alert_once(alert).await;
            }
            for expiring in credit.expiring(now, insights.expiry_warning) {
                let purchase = expiring.purchase;
                let alert = Alert {
                    key: format!("credit-expiry:{id}"),
                    period: purchase.purchased_at.to_rfc3339(),
                    severity: Severity::Warning,
                    title: format!("fal account {id}: {} of credit expires soon", expiring.remaining),
                    body: format!(
                        "The {} bought for account {id} on {} expires on {} with {} unspent, which is then lost \
                         (fal credit lasts {} days). Spend it first: route work to this account, or plan purchases \
                         around it.",
                        purchase.amount,
                        purchase.purchased_at.format("%Y-%m-%d"),
                        expiring.expires_at.format("%Y-%m-%d %H:%M UTC"),
                        expiring.remaining,
                        credit.policy.expiry_days
                    ),
                };
                self.alert_once(alert).await;
            }
        }
    }

    /// Alerts when, today, fal was at full capacity with jobs waiting for too much of the
    /// busy time: users are queueing behind the concurrency limits (the rate-limit alert).
    async fn check_saturation(&self) {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        let insights = &self.inner.config.insights;
        let capacity = self.running_capacity().await;
        let from = day_start(now);
        let saturation = match crate::insights::saturation(&*ports.reports, capacity, from, now).await {
            Ok(saturation) => saturation,
            Err(error) => {
                tracing::warn!(%error, "job history unavailable; saturation check skipped");
                return;
            }
        };
        if saturation.busy < insights.saturation_min_busy || saturation.percent() < insights.saturation_percent {
            return;
        }
        let secs = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
        let alert = Alert {
            key: "saturation".to_owned(),
            period: day_key(now),
            severity: Severity::Warning,
            title: format!(
                "fal capacity: {:.0}% of today's busy time at full capacity with jobs waiting",
                saturation.percent()
            ),
            body: format!(
                "Today all {} slots were taken while jobs waited for {} of {} busy time ({:.0}%, alert at {:.0}%). \
                 Users queue behind fal's concurrency limits: see /plan for the tier that keeps waits short.",
                saturation.capacity,
                duration(secs(saturation.saturated)),
                duration(secs(saturation.busy)),
                saturation.percent(),
                insights.saturation_percent
            ),
        };
        self.alert_once(alert).await;
    }

    /// Warns when an account's concurrency limit will drop within the warning horizon,
    /// with the top-up that keeps it.
    async fn check_limit_drops(&self) {
        let now = self.inner.ports.clock.now();
        let Ok(accounts) = self.accounts().await else { return };
        for account in accounts.iter() {
            let Some(topup) = account.credit.topup_to_keep_limit(now, self.inner.config.limit_drop_warning) else {
                continue;
            };
            let id = &account.record.id;
            let alert = Alert {
                key: format!("limit-drop:{id}"),
                period: topup.by.to_rfc3339(),
                severity: Severity::Warning,
                title: format!(
                    "fal account {id}: concurrency limit drops from {} to {}",
                    topup.keep_limit, topup.drops_to
                ),
                body: format!("Account {id}: {topup}."),
            };
            self.alert_once(alert).await;
        }
    }

    /// Alerts for each budget threshold the month's fal spend has reached.
    async fn check_budget(&self) {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        if self.inner.config.budget.monthly_budget.is_none() {
            return;
        }
        let spend = match ports.usage.usage_by_model(month_start(now), now).await {
            Ok(rows) => Money::saturating_sum(rows.iter().map(|r| r.fal_cost)),
            Err(error) => {
                tracing::warn!(%error, "usage unavailable; budget check skipped");
                return;
            }
        };
        for crossed in self.inner.config.budget.thresholds_crossed(spend, &[], now) {
            let severity = if crossed.percent >= 100 { Severity::Critical } else { Severity::Warning };
            let alert = Alert {
                key: format!("budget-{}", crossed.percent),
                period: crossed.period.clone(),
                severity,
                title: format!("Budget: {}% of {} reached", crossed.percent, crossed.budget),
                body: crossed.to_string(),
            };
            self.alert_once(alert).await;
        }
    }

    /// Alerts when the month's request count reaches a volume-discount tier.
    async fn check_discount_tier(&self) {
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        let requests = match ports.usage.request_count(month_start(now), now).await {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(%error, "request count unavailable; discount check skipped");
                return;
            }
        };
        let tier = self.inner.config.catalog.volume_discounts().tier_for(requests);
        if tier.name == DiscountTier::STANDARD || tier.percent_off == 0 && !tier.enterprise {
            return;
        }
        let mut body = format!(
            "{requests} requests this month: the `{}` tier ({}% off from {} requests) applies.",
            tier.name, tier.percent_off, tier.from_requests
        );
        if tier.enterprise {
            body.push_str(" This volume qualifies for enterprise pricing: time to talk to fal.");
        }
        let alert = Alert {
            key: format!("discount-tier:{}", tier.name),
            period: period_key(now),
            severity: Severity::Info,
            title: format!("Volume discount tier `{}` reached", tier.name),
            body,
        };
        self.alert_once(alert).await;
    }
}
