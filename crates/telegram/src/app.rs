//! What the bot handlers share: the engine, the stores they read, configuration and the
//! little in-memory state a chat needs (pending prompts, albums, flood control).

use mediagen_domain::catalog::Catalog;
use mediagen_domain::quota::Plans;
use mediagen_domain::{ChatId, MediaRef, Timestamp, UserId};
use mediagen_engine::Engine;
use mediagen_ports::Clock;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Settings of the Telegram front end.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Telegram user ids of the operators: admin commands and alerts.
    pub admins: HashSet<UserId>,
    /// How long to wait for the rest of an album after its first photo.
    pub album_wait: Duration,
    /// Requests one user may make per `flood_window` before being asked to wait.
    pub flood_limit: u32,
    /// The flood window.
    pub flood_window: Duration,
    /// Broadcast messages in flight at once. The throttle releases queued sends four times
    /// a second, so each one in flight sends at most about four a second: 5 use some 20 of
    /// Telegram's 30 a second, and replies and results get the rest.
    pub broadcast_in_flight: usize,
}

impl Default for BotConfig {
    fn default() -> Self {
        Self {
            admins: HashSet::new(),
            album_wait: Duration::from_millis(1200),
            flood_limit: 20,
            flood_window: Duration::from_secs(60),
            broadcast_in_flight: 5,
        }
    }
}

/// The ports and engine the handlers use.
#[derive(Clone)]
pub struct BotDeps {
    /// The use cases: every read and write goes through them.
    pub engine: Engine,
    /// The current instant.
    pub clock: Arc<dyn Clock>,
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct BotApp {
    pub(crate) deps: BotDeps,
    pub(crate) config: Arc<BotConfig>,
    pub(crate) pending: Arc<PendingPrompts>,
    pub(crate) albums: Arc<Mutex<HashMap<String, Album>>>,
    pub(crate) flood: Arc<FloodGate>,
    /// Updates taken from Telegram and not yet handled (see `inbox`).
    pub(crate) inbox: crate::inbox::Inbox,
    /// The bot's own username, learned once (to strip `/cmd@bot` suffixes).
    pub(crate) username: Arc<std::sync::OnceLock<String>>,
}

impl BotApp {
    /// A front end over `deps`.
    pub fn new(deps: BotDeps, config: BotConfig) -> Self {
        let flood = FloodGate::new(config.flood_limit, config.flood_window);
        Self {
            deps,
            config: Arc::new(config),
            pending: Arc::new(PendingPrompts::default()),
            albums: Arc::default(),
            flood: Arc::new(flood),
            inbox: crate::inbox::Inbox::default(),
            username: Arc::default(),
        }
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.deps.engine.config().catalog
    }

    pub(crate) fn plans(&self) -> &Plans {
        &self.deps.engine.config().plans
    }

    pub(crate) fn now(&self) -> Timestamp {
        self.deps.clock.now()
    }

    pub(crate) fn is_admin(&self, user: UserId) -> bool {
        self.config.admins.contains(&user)
    }
}

/// Photos of one album arriving as separate updates.
#[derive(Debug, Clone)]
pub(crate) struct Album {
    pub(crate) chat: ChatId,
    pub(crate) update_id: u32,
    pub(crate) caption: Option<String>,
    pub(crate) media: Vec<MediaRef>,
    /// The album's updates count as handled only once it is enqueued.
    pub(crate) handling: Vec<crate::inbox::Handling>,
}

/// Prompts waiting for a button press (`/img`, `/enhance`), by a small id in the button.
///
/// In memory on purpose: losing them on restart costs a user one re-send, and the
/// buttons then say they expired.
#[derive(Default)]
pub(crate) struct PendingPrompts {
    next: AtomicU64,
    entries: Mutex<VecDeque<(u64, UserId, String)>>,
}

impl PendingPrompts {
    /// How many prompts are remembered before the oldest are forgotten.
    const CAPACITY: usize = 10_000;

    pub(crate) fn put(&self, user: UserId, prompt: String) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut entries = self.entries.lock().expect("pending prompts lock");
        if entries.len() >= Self::CAPACITY {
            entries.pop_front();
        }
        entries.push_back((id, user, prompt));
        id
    }

    /// The prompt, only for the user who made it (buttons can be forwarded or forged).
    pub(crate) fn get(&self, id: u64, user: UserId) -> Option<String> {
        let entries = self.entries.lock().expect("pending prompts lock");
        entries.iter().find(|(i, u, _)| *i == id && *u == user).map(|(_, _, p)| p.clone())
    }
}

/// Per-user flood control: at most `limit` requests per `window`, checked before any other
/// work (no database read or write for a refused update), and at most one refusal told
/// per window, so a flood costs the bot neither storage nor outgoing messages.
pub(crate) struct FloodGate {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<UserId, Recent>>,
}

/// One user's admitted requests in the window, and when they were last told to wait.
#[derive(Default)]
struct Recent {
    admitted: VecDeque<std::time::Instant>,
    told: Option<std::time::Instant>,
}

/// A request over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flooded {
    /// Seconds until a request is admitted again.
    pub(crate) retry_after_secs: u32,
    /// True for the first refusal of the window: only that one is answered.
    pub(crate) tell: bool,
}

impl FloodGate {
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, seen: Mutex::default() }
    }

    /// `Ok` when the request may go on; otherwise how long to wait and whether to say so.
    pub(crate) fn check(&self, user: UserId, now: std::time::Instant) -> Result<(), Flooded> {
        let mut seen = self.seen.lock().expect("flood lock");
        let recent = seen.entry(user).or_default();
        while recent.admitted.front().is_some_and(|t| now.duration_since(*t) >= self.window) {
            recent.admitted.pop_front();
        }
        if recent.admitted.len() as u32 >= self.limit {
            let oldest = *recent.admitted.front().expect("non-empty when at the limit");
            let wait = self.window.saturating_sub(now.duration_since(oldest));
            let tell = recent.told.is_none_or(|told| now.duration_since(told) >= self.window);
            if tell {
                recent.told = Some(now);
            }
            return Err(Flooded { retry_after_secs: u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX), tell });
        }
        recent.admitted.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn flood_gate_admits_the_limit_then_says_how_long_to_wait() {
        let gate = FloodGate::new(3, Duration::from_secs(60));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(gate.check(UserId(1), start), Ok(()));
        }
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(gate.check(UserId(1), at(20)), Err(Flooded { retry_after_secs: 40, tell: true }));
        assert_eq!(gate.check(UserId(1), at(21)), Err(Flooded { retry_after_secs: 39, tell: false }), "told once");
        assert_eq!(gate.check(UserId(1), at(50)), Err(Flooded { retry_after_secs: 10, tell: false }));
        assert_eq!(gate.check(UserId(2), start), Ok(()), "other users are not affected");
        assert_eq!(gate.check(UserId(1), at(61)), Ok(()));
        for _ in 0..2 {
            assert_eq!(gate.check(UserId(1), at(62)), Ok(()));
        }
        let again = gate.check(UserId(1), at(81)).unwrap_err();
        assert!(again.tell, "a new window, a new refusal: {again:?}");
    }

    #[test]
    fn pending_prompts_belong_to_their_user() {
        let pending = PendingPrompts::default();
        let id = pending.put(UserId(1), "a cat".into());
        assert_eq!(pending.get(id, UserId(1)).as_deref(), Some("a cat"));
        assert_eq!(pending.get(id, UserId(2)), None);
        assert_eq!(pending.get(id + 1, UserId(1)), None);
    }
}
