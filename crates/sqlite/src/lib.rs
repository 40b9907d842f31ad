#![doc = include_str!("../README.md")]

mod accounts;
mod error;
mod misc;
mod queue;
mod reports;
mod rows;
mod sql;
mod store;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use store::{BUSY_TIMEOUT, MIGRATOR, SqliteStore, connect_options, migrate};
