//! What the operator can ask about usage, cost and capacity, and the summaries sent on a
//! schedule. Assembly and rendering live in `mediagen-reports`; this module picks the
//! periods, supplies the ports and rules, and sends.
//!
//! Scheduled summaries are deduplicated through the `AlertLog` like alerts
//! (`report-daily` per UTC day, `report-weekly` per ISO week): a restart, or a second
//! process, does not send them again.

use crate::Engine;
use chrono::{Datelike, TimeDelta};
use mediagen_domain::planner::PlannerSettings;
use mediagen_ports::{MediaBytes, OperatorAlert, Severity, StorageError};
use mediagen_reports::assemble;
use mediagen_reports::prometheus::{self, Counter};
use mediagen_reports::{Period, ReportKind, Rules, Sources, chart, text};

/// A summary ready to send: its text and its chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedReport {
    /// The summary, for an operator's chat.
    pub text: String,
    /// The chart as a PNG (`None` when drawing failed; the text still goes out).
    pub chart: Option<MediaBytes>,
    /// What the chart shows, for its caption.
    pub caption: String,
}

impl Engine {
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
    pub async fn report(&self, kind: ReportKind) -> Result<RenderedReport, StorageError> {
        let now = self.inner.ports.clock.now();
        self.report_for(Period::to_date(kind, now)).await
    }

    /// The summary of `period`.
    ///
    /// # Errors
    /// The storage error when the figures cannot be read.
    pub async fn report_for(&self, period: Period) -> Result<RenderedReport, StorageError> {
        let now = self.inner.ports.clock.now();
        let report = assemble::report(&self.sources(), &self.rules(), period, now).await?;
        let chart = match chart::render(&report) {
            Ok(bytes) => Some(MediaBytes {
                bytes,
                content_type: "image/png".to_owned(),
                file_name: format!("mediagen-{}-{}.png", period.kind, period.from.format("%Y-%m-%d")),
            }),
            Err(error) => {
                tracing::error!(%error, "report chart not drawn");
                None
            }
        };
        Ok(RenderedReport { text: text::report(&report), chart, caption: text::chart_caption(&report) })
    }

    /// Who spent what on which model over `kind` so far, as a CSV file.
    ///
    /// # Errors
    /// The storage error when the figures cannot be read.
    pub async fn cost_allocation(&self, kind: ReportKind) -> Result<MediaBytes, StorageError> {
        let now = self.inner.ports.clock.now();
        let period = Period::to_date(kind, now);
        let csv = assemble::cost_allocation(&self.sources(), &self.rules(), period, now).await?;
        Ok(MediaBytes {
            bytes: csv.into_bytes(),
            content_type: "text/csv".to_owned(),
            file_name: format!("mediagen-costs-{}-{}.csv", kind, period.from.format("%Y-%m-%d")),
        })
    }

    /// The capacity plan as text, for a p95 wait target (the configured one when `None`).
    ///
    /// # Errors
    /// The storage error when the history cannot be read.
    pub async fn capacity_plan(&self, target: Option<TimeDelta>) -> Result<String, StorageError> {
        let now = self.inner.ports.clock.now();
        let mut settings: PlannerSettings = self.inner.config.insights.planner.clone();
        if let Some(target) = target {
            settings.target_wait_secs = u64::try_from(target.num_seconds()).unwrap_or(0);
        }
        let plan = assemble::capacity_plan(&self.sources(), &self.rules(), &settings, now).await?;
        Ok(text::plan(&plan))
    }

    /// The live counters as text: queue, accounts, today's and the month's spend.
    ///
    /// # Errors
    /// The storage error when the counters cannot be read.
    pub async fn live_text(&self) -> Result<String, StorageError> {
        let now = self.inner.ports.clock.now();
        Ok(text::live(&assemble::live(&self.sources(), &self.rules(), now).await?))
    }

    /// The Prometheus text of the live counters and this process's counters.
    ///
    /// # Errors
    /// The storage error when the counters cannot be read.
    pub async fn metrics_text(&self) -> Result<String, StorageError> {
        let now = self.inner.ports.clock.now();
        let stats = self.stats();
        let counters = [
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
        let live = assemble::live(&self.sources(), &self.rules(), now).await?;
        Ok(prometheus::render(&live, &counters))
    }

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
        let rendered = match self.report_for(Period::previous(kind, now)).await {
            Ok(rendered) => rendered,
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
        let alert = OperatorAlert { severity: Severity::Info, title: title.to_owned(), body: rendered.text };
        let sent = match &rendered.chart {
            Some(chart) => ports.messaging.notify_operators_with_file(&alert, chart).await,
            None => ports.messaging.notify_operators(&alert).await,
        };
        if let Err(error) = sent {
            tracing::error!(%error, report = key, "scheduled report not delivered");
        }
    }
}
