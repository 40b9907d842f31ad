//! The operator's questions from the command line: `mediagen plan` and `mediagen report`,
//! answered from the database the bot uses, without starting the bot.

use crate::settings::Settings;
use anyhow::{Context, bail};
use mediagen_domain::Timestamp;
use mediagen_engine::insights::{self as assemble, Rules, Sources};
use mediagen_engine::{Period, ReportKind};
use mediagen_reports::{chart, csv, text};
use std::path::Path;

/// What `mediagen report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportRequest {
    /// The summary of a period.
    Summary(ReportKind),
    /// The cost allocation per user and model, as CSV.
    Csv(ReportKind),
}

impl ReportRequest {
    /// `day`, `week`, `month`, or `csv` (the month), `csv-week`…
    ///
    /// # Errors
    /// When the text names no report.
    pub fn parse(text: &str) -> anyhow::Result<ReportRequest> {
        let text = text.trim().to_ascii_lowercase();
        if text == "csv" {
            return Ok(ReportRequest::Csv(ReportKind::Month));
        }
        if let Some(kind) = text.strip_prefix("csv-").or_else(|| text.strip_prefix("csv:")) {
            return ReportKind::parse(kind).map(ReportRequest::Csv).context("expected csv-day, csv-week or csv-month");
        }
        match ReportKind::parse(&text) {
            Some(kind) => Ok(ReportRequest::Summary(kind)),
            None => bail!("unknown report {text:?}: expected day, week, month or csv"),
        }
    }
}

/// The capacity plan as text, for `target_secs` (the configured target when `None`).
///
/// # Errors
/// When the database does not exist or cannot be opened or read.
pub async fn plan(settings: &Settings, target_secs: Option<u64>, now: Timestamp) -> anyhow::Result<String> {
    let storage = crate::wiring::connect_existing(settings).await?;
    let sources = Sources { reports: &*storage.reports, accounts: &*storage.accounts, queue: &*storage.queue };
    let rules = Rules { discounts: settings.catalog.volume_discounts(), credit: &settings.credit };
    let mut planner = settings.planner.clone();
    if let Some(target) = target_secs {
        planner.target_wait_secs = target;
    }
    let plan = assemble::capacity_plan(&sources, &rules, &planner, now).await.context("reading the job history")?;
    Ok(text::plan(&plan))
}

/// The report asked for, as text (CSV for [`ReportRequest::Csv`]); the summary's chart is
/// written to `chart_to` when given. `previous` picks the last complete period instead
/// of the one so far.
///
/// # Errors
/// When the database does not exist or cannot be opened or read, or the chart cannot be
/// written.
pub async fn report(
    settings: &Settings,
    request: ReportRequest,
    previous: bool,
    chart_to: Option<&Path>,
    now: Timestamp,
) -> anyhow::Result<String> {
    let storage = crate::wiring::connect_existing(settings).await?;
    let sources = Sources { reports: &*storage.reports, accounts: &*storage.accounts, queue: &*storage.queue };
    let rules = Rules { discounts: settings.catalog.volume_discounts(), credit: &settings.credit };
    let period = |kind| if previous { Period::previous(kind, now) } else { Period::to_date(kind, now) };
    match request {
        ReportRequest::Csv(kind) => {
            let costs =
                assemble::cost_allocation(&sources, &rules, period(kind), now).await.context("reading the ledger")?;
            Ok(csv::cost_allocation(&costs).1)
        }
        ReportRequest::Summary(kind) => {
            let report = assemble::report(&sources, &rules, period(kind), now).await.context("reading the ledger")?;
            if let Some(path) = chart_to {
                let png = chart::render(&report)?;
                std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))?;
            }
            Ok(text::report(&report))
        }
    }
}
