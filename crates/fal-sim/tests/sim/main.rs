//! Integration tests: the simulator over real HTTP (reqwest) on port 0.

mod common;

mod cli;
mod concurrency;
mod delivery;
mod faults;
mod money;
mod queue;
mod storage;
