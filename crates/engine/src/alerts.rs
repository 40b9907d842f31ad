//! Operator alerts, each delivered once per period: deduplicated through the `AlertLog`
//! port, so a restart or a second process does not repeat them.
//!
//! Keys and periods:
//! - `account-locked:<account>` / `bad-key:<account>` / `breaker:<account>`: per UTC day;
//! - `limit-drop:<account>`: per announced drop instant;
//! - `budget-<percent>`: per UTC month (`YYYY-MM`);
//! - `discount-tier:<tier>`: per UTC month;
//! - `unknown-model:<model>`: per UTC day.

use crate::Engine;
use mediagen_domain::budget::period_key;
use mediagen_domain::discount::DiscountTier;
use mediagen_domain::quota::month_start;
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

impl Engine {
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

    /// The periodic operator checks: limit drops ahead, budget thresholds, discount tiers.
    pub(crate) async fn operator_checks(&self) {
        self.check_limit_drops().await;
        self.check_budget().await;
        self.check_discount_tier().await;
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
            Ok(rows) => Money::checked_sum(rows.iter().map(|r| r.fal_cost)).unwrap_or(Money::from_micros(i64::MAX)),
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
