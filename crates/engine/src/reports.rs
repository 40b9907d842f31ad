//! What the operator can ask about usage, cost and capacity, and the summaries sent on a
//! schedule. Every answer is data from the domain's read model: the front ends render it
//! (text, chart, CSV, metrics), and scheduled summaries reach the operators' chats as data
//! through the `Messaging` port.
//!
//! Scheduled summaries are deduplicated through the `AlertLog` like alerts
//! (`report-daily` per UTC day, `report-weekly` per ISO week): a restart, or a second
//! process, does not send them again.

use crate::insights::{self, Rules, Sources};
use crate::stats::Counters;
use crate::{EngineConfig, EngineStats, Operator, Shared};
use chrono::{Datelike, TimeDelta};
use mediagen_domain::insights::{
    CostAllocation, Counter, Live, Metrics, OperatorSummary, Period, PlanReport, Report, ReportKind,
};
use mediagen_domain::planner::PlannerSettings;
use mediagen_ports::{AccountStore, Clock, JobQueue, ReportStore, StorageError};
use std::sync::Arc;

/// The ports the read side reads.
#[derive(Clone)]
pub struct InsightsPorts {
    /// Usage rows, request counts, job counts, timings and slot intervals.
    pub reports: Arc<dyn ReportStore>,
    /// Accounts with their purchases and spend.
    pub accounts: Arc<dyn AccountStore>,
    /// Jobs in flight per account.
    pub queue: Arc<dyn JobQueue>,
    /// "So far" for every period.
    pub clock: Arc<dyn Clock>,
}

/// The read side: reports, cost allocation, the capacity plan, the live counters and
/// metrics, all as the domain's read model. Owns nothing but a view of this process's
/// counters.
#[derive(Clone)]
pub struct Insights {
    inner: Arc<InsightsInner>,
}

struct InsightsInner {
    ports: InsightsPorts,
    config: Arc<EngineConfig>,
    counters: Arc<Counters>,
}

impl Insights {
    pub(crate) fn new(ports: InsightsPorts, shared: Shared) -> Self {
        Self { inner: Arc::new(InsightsInner { ports, config: shared.config, counters: shared.counters }) }
    }

    /// What this process did since it started.
    pub fn stats(&self) -> EngineStats {
        self.inner.counters.snapshot()
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    fn sources(&self) -> Sources<'_> {
        let ports = &self.inner.ports;
        Sources { reports: &*ports.reports, accounts: &*ports.accounts, queue: &*ports.queue }
    }

    fn rules(&self) -> Rules<'_> {
        let config = &self.inner.config;
        Rules { discounts: config.catalog.volume_discounts(), credit: &config.credit }
    }

    /// The summary of `kind` so far (today, the last seven days, the month to date).
    ///
    /// # Errors
    /// The storage error when the figures cannot be read.
    pub async fn report(&self, kind: ReportKind) -> Result<Report, StorageError> {
        let now = self.inner.ports.clock.now();
        self.report_for(Period::to_date(kind, now)).await
    }

    /// The summary of `period`.
    ///
    /// # Errors
    /// The storage error when the figures cannot be read.
    pub async fn report_for(&self, period: Period) -> Result<Report, StorageError> {
        let now = self.inner.ports.clock.now();
        insights::report(&self.sources(), &self.rules(), period, now).await
    }

    /// Who spent what on which model over `kind` so far.
    ///
    /// # Errors
    /// The storage error when the figures cannot be read.
    pub async fn cost_allocation(&self, kind: ReportKind) -> Result<CostAllocation, StorageError> {
        let now = self.inner.ports.clock.now();
        insights::cost_allocation(&self.sources(), &self.rules(), Period::to_date(kind, now), now).await
    }

    /// The capacity plan for a p95 wait target (the configured one when `None`).
    ///
    /// # Errors
    /// The storage error when the history cannot be read.
    pub async fn capacity_plan(&self, target: Option<TimeDelta>) -> Result<PlanReport, StorageError> {
        let now = self.inner.ports.clock.now();
        let mut settings: PlannerSettings = self.inner.config.insights.planner.clone();
        if let Some(target) = target {
            settings.target_wait_secs = u64::try_from(target.num_seconds()).unwrap_or(0);
        }
        insights::capacity_plan(&self.sources(), &self.rules(), &settings, now).await
    }

    /// The live counters: queue, accounts, today's and the month's spend.
    ///
    /// # Errors
    /// The storage error when the counters cannot be read.
    pub async fn live(&self) -> Result<Live, StorageError> {
        let now = self.inner.ports.clock.now();
        insights::live(&self.sources(), &self.rules(), now).await
    }

    /// The live counters and this process's counters, for the metrics endpoint.
    ///
    /// # Errors
    /// The storage error when the counters cannot be read.
    pub async fn metrics(&self) -> Result<Metrics, StorageError> {
        let stats = self.stats();
        let counters = vec![
            Counter {
                name: "mediagen_prompt_cache_hits_total",
                help: "Enhanced prompts served from the cache.",
                value: stats.cache_hits,
            },
            Counter {
                name: "mediagen_prompt_cache_misses_total",
                help: "Enhancements that called the LLM.",
                value: stats.cache_misses,
            },
            Counter {
                name: "mediagen_accepted_total",
                help: "Requests accepted into the queue by this process.",
                value: stats.accepted,
            },
            Counter {
                name: "mediagen_refused_total",
                help: "Requests refused at intake by this process.",
                value: stats.refused,
            },
            Counter {
                name: "mediagen_submitted_total",
                help: "Submissions fal accepted from this process.",
                value: stats.submitted,
            },
            Counter {
                name: "mediagen_succeeded_total",
                help: "Jobs delivered by this process.",
                value: stats.succeeded,
            },
            Counter {
                name: "mediagen_failed_total",
                help: "Jobs that ended without a result in this process.",
                value: stats.failed,
            },
            Counter {
                name: "mediagen_retried_total",
                help: "Jobs put back in the queue to be tried again.",
                value: stats.retried,
            },
            Counter {
                name: "mediagen_breaker_trips_total",
                help: "Circuit breakers opened.",
                value: stats.breaker_trips,
            },
        ];
        let counted = &self.inner.counters;
        Ok(Metrics { live: self.live().await?, counters, job_times: counted.job_times(), outcomes: counted.outcomes() })
    }
}

impl Operator {
    /// Sends the daily and weekly summaries that are due and not yet sent.
    pub(crate) async fn scheduled_reports(&self) {
        let now = self.inner.ports.clock.now();
        let insights = &self.inner.config.insights;
        if let Some(at) = insights.daily_report_at
            && now.time() >= at
        {
            self.send_scheduled(ReportKind::Day, "report-daily", crate::alerts::day_key(now)).await;
        }
        if let Some((weekday, at)) = insights.weekly_report_at
            && now.weekday() == weekday
            && now.time() >= at
        {
            let week = now.iso_week();
            let key = format!("{}-W{:02}", week.year(), week.week());
            self.send_scheduled(ReportKind::Week, "report-weekly", key).await;
        }
    }

    /// Builds the summary, claims `(key, period)` in the alert log and sends it; a claim
    /// already taken (by this process before a restart, or by another) sends nothing.
    async fn send_scheduled(&self, kind: ReportKind, key: &str, period: String) {
        let memo = (key.to_owned(), period.clone());
        if self.inner.reports_sent.lock().unwrap().contains(&memo) {
            return;
        }
        let ports = &self.inner.ports;
        let now = ports.clock.now();
        // Built before the claim: if storage is down the claim is not taken and the next
        // tick tries again.
        let report = match self.inner.insights.report_for(Period::previous(kind, now)).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%error, report = key, "scheduled report not built; retrying later");
                return;
            }
        };
        match ports.alerts.record_alert(key, &period, now).await {
            Ok(true) => {}
            Ok(false) => {
                self.inner.reports_sent.lock().unwrap().insert(memo);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, report = key, "alert log unavailable; scheduled report retried later");
                return;
            }
        }
        self.inner.reports_sent.lock().unwrap().insert(memo);
        let title = match kind {
            ReportKind::Day => "Daily report",
            ReportKind::Week => "Weekly report",
            ReportKind::Month => "Monthly report",
        };
        let summary = OperatorSummary { title: title.to_owned(), report };
        let sent = ports.messaging.notify_operators_summary(&summary).await;
        if let Err(error) = sent {
            tracing::error!(%error, report = key, "scheduled report not delivered");
        }
    }
}
