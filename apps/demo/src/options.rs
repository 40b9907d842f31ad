//! What a demo run looks like: its size, its pace, where it keeps data and how it shows
//! progress.

use mediagen_stack::Database;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the live status line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMode {
    /// Refreshed in place on a terminal, a line every few seconds otherwise.
    Auto,
    /// Refreshed in place (`\r`), a terminal is assumed.
    InPlace,
    /// One line every few seconds (logs, CI).
    Lines,
    /// Nothing is printed while the demo runs (tests).
    Off,
}

impl StatusMode {
    /// `Auto` made concrete: in place when stdout is a terminal, lines otherwise.
    pub fn resolve(self) -> StatusMode {
        match self {
            StatusMode::Auto if std::io::stdout().is_terminal() => StatusMode::InPlace,
            StatusMode::Auto => StatusMode::Lines,
            other => other,
        }
    }
}

/// Everything a run depends on.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulated users (besides the operator); at least 10, so each scripted case has one.
    pub users: u32,
    /// Generation requests each user makes after the opening burst: a range.
    pub extra_requests: (u32, u32),
    /// Pause between a user's requests, in milliseconds: a range.
    pub gap_ms: (u64, u64),
    /// The fal simulator's speed-up: 10 makes a 6 s job take 0.6 s.
    pub time_scale: f64,
    /// Seeds the users' scripts and the simulator (timing still varies from run to run).
    pub seed: u64,
    /// Where the bot keeps its data: an embedded SQLite file unless PostgreSQL is chosen.
    pub storage: Database,
    /// How progress is shown.
    pub status: StatusMode,
    /// Where `config/` lives (the shipped settings, catalog and plans).
    pub home: PathBuf,
    /// After the users are done, how long jobs may take to finish before the run gives up.
    pub drain_timeout: Duration,
    /// When, after the users start, fal locks account alpha (the operator's incident).
    pub incident_after: Duration,
}

/// The workspace root this crate was built in, where `config/` lives.
pub fn workspace_home() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Options {
    /// `just demo`: three dozen users and about two hundred jobs, in well under a minute.
    pub fn full() -> Self {
        Options {
            users: 36,
            extra_requests: (2, 5),
            gap_ms: (300, 4_000),
            time_scale: 10.0,
            seed: 7,
            storage: crate::storage::default_database(),
            status: StatusMode::Auto,
            home: workspace_home(),
            drain_timeout: Duration::from_secs(40),
            incident_after: Duration::from_secs(5),
        }
    }

    /// A short run for tests: ten users (one per scripted case) and a few dozen jobs.
    pub fn quick() -> Self {
        Options {
            users: 10,
            extra_requests: (1, 2),
            gap_ms: (200, 1_500),
            incident_after: Duration::from_millis(1_500),
            ..Options::full()
        }
    }
}
