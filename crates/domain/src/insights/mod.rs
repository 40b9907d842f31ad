//! The read model of operator reports: usage, costs, waits, saturation and the capacity
//! plan as data, folded from the rows storage reports. Rendering (text, charts, CSV,
//! metrics) is an adapter's job.

pub mod model;
pub mod period;
pub mod rows;
pub mod usage;

pub use model::{
    AccountState, AccountTrend, CostAllocation, Counter, Histogram, JOB_TIME_BUCKETS_SECS, JobOutcome, JobTimes, Live,
    Metrics, ModelTrend, OperatorSummary, OutcomeCount, PlanReport, Report, Saturation, Spend, saturation_of,
    usable_capacity, waits,
};
pub use period::{Period, ReportKind};
pub use rows::{DayCount, JobCounts, JobTiming, SlotInterval, UsageRow};

/// A duration for people: `4.0 s`, `2 min 05 s`, `1 h 02 min`; `never` when infinite.
pub fn duration_text(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".to_owned();
    }
    let secs = secs.max(0.0);
    if secs < 10.0 {
        return format!("{secs:.1} s");
    }
    let whole = secs.round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60),
    }
}
