//! Operator reports as Telegram replies: the engine's read model rendered by
//! `mediagen-reports` (text, a PNG chart, a CSV file).

use crate::admin::AdminReply;
use mediagen_domain::insights::{CostAllocation, Report};
use mediagen_ports::MediaBytes;
use mediagen_reports::{chart, csv, text};

/// A summary: its text, then its chart as a picture (text alone when drawing fails).
pub(crate) fn summary(report: &Report) -> AdminReply {
    let chart = match chart::render(report) {
        Ok(bytes) => Some((
            MediaBytes { bytes, content_type: "image/png".to_owned(), file_name: chart::file_name(report) },
            text::chart_caption(report),
        )),
        Err(error) => {
            tracing::error!(%error, "report chart not drawn");
            None
        }
    };
    AdminReply { text: text::report(report), file: chart }
}

/// The cost allocation as a CSV document.
pub(crate) fn cost_allocation(costs: &CostAllocation) -> AdminReply {
    let (file_name, content) = csv::cost_allocation(costs);
    let file = MediaBytes { bytes: content.into_bytes(), content_type: "text/csv".to_owned(), file_name };
    AdminReply {
        text: format!("Cost allocation per user and model, {} so far (UTC):", costs.period.kind),
        file: Some((
            file,
            "charged = what users paid; fal_discounted = what fal charges after the month's volume discount".to_owned(),
        )),
    }
}
