#![doc = include_str!("../README.md")]

pub mod chart;
pub mod csv;
pub mod prometheus;
pub mod text;

pub use chart::ChartError;
pub use prometheus::Counter;
