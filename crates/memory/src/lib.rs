#![doc = include_str!("../README.md")]

mod accounts;
mod misc;
mod queue;
mod reports;
mod rows;
mod store;
mod users;

#[cfg(feature = "testing")]
pub mod testing;

pub use store::MemoryStore;
