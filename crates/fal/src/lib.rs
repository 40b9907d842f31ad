#![doc = include_str!("../README.md")]

mod adapter;
pub mod config;
mod http;
mod input;
mod media;
mod wire;

pub use adapter::FalGeneration;
pub use config::{ConfigError, FalAccountConfig, FalConfig, FalKey, PollConfig, RetryConfig};
