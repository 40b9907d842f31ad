#![doc = include_str!("../README.md")]

pub mod assemble;
pub mod chart;
pub mod csv;
pub mod period;
pub mod prometheus;
pub mod text;
pub mod usage;

pub use assemble::{
    AccountState, AccountTrend, Live, ModelTrend, PlanReport, Report, Rules, Saturation, Sources, Spend,
};
pub use chart::ChartError;
pub use period::{Period, ReportKind};
pub use prometheus::Counter;
