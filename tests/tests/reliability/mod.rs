//! What every reliability scenario checks at the end, from the database, the fake Bot API
//! and the fal simulator: every accepted job ended once, was told once, paid once.
#![allow(dead_code)] // Each scenario file uses its own share of these helpers.

use mediagen_e2e::{FreshDb, with_pool};
use mediagen_fal_sim::RunningSim;
use mediagen_telegram_fake::{ChatMessage, Content, FakeTelegram};
use std::collections::HashMap;
use std::time::Duration;

/// A small deterministic generator, so a run can be replayed from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A number from the environment (`just chaos` raises them), or the quick default.
pub fn env_number(name: &str, quick: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(quick)
}

/// One accepted job as the database has it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: i64,
    pub user: i64,
    pub state: String,
    pub prompt: String,
    pub failure: Option<String>,
    pub delivered: bool,
}

/// Every job in the database.
pub async fn jobs(db: &FreshDb) -> Vec<JobRow> {
    let sql = "SELECT id, user_id, state, spec->>'prompt', CAST(failure AS TEXT), delivered_at IS NOT NULL
               FROM jobs ORDER BY id";
    let rows: Vec<(i64, i64, String, String, Option<String>, bool)> =
        with_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await).expect("jobs");
    rows.into_iter()
        .map(|(id, user, state, prompt, failure, delivered)| JobRow { id, user, state, prompt, failure, delivered })
        .collect()
}

/// Waits until at least `expected` jobs exist, every one finished and its delivery
/// recorded, or `limit` passes.
pub async fn settle_down(db: &FreshDb, expected: u64, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let sql = "SELECT count(*), count(*) FILTER (WHERE delivered_at IS NULL) FROM jobs";
        let (all, open): (i64, i64) =
            with_pool!(db, |pool| sqlx::query_as(sql).fetch_one(pool).await).expect("open jobs");
        if open == 0 && all as u64 >= expected {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Tally {
    pub jobs: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub delivered: usize,
    pub lost: Vec<i64>,
    /// Succeeded and told "done", but the buttons under the pictures never went out (a
    /// send whose answer timed out is not repeated): pictures are counted per user instead.
    pub unbuttoned: Vec<i64>,
    pub duplicates: usize,
    pub double_submits: Vec<String>,
    pub double_charges: usize,
    pub unsettled: Vec<i64>,
    pub failures: HashMap<String, usize>,
    /// Users who got fewer pictures than they have jobs that succeeded: a "done" without
    /// its picture is not a delivery.
    pub missing_pictures: Vec<i64>,
}

impl Tally {
    pub fn line(&self) -> String {
        format!(
            "jobs {}, succeeded {}, failed {} {:?}, delivered {} ({} without buttons), lost {}, duplicates {}, \
             double submits {}, double charges {}, unsettled holds {}, users missing pictures {}",
            self.jobs,
            self.succeeded,
            self.failed,
            self.failures,
            self.delivered,
            self.unbuttoned.len(),
            self.lost.len(),
            self.duplicates,
            self.double_submits.len(),
            self.double_charges,
            self.unsettled.len(),
            self.missing_pictures.len()
        )
    }
}

fn text(message: &ChatMessage) -> &str {
    message.text.as_deref().unwrap_or("")
}

/// Result deliveries of `job`: the follow-up under its pictures carries its buttons.
fn deliveries(messages: &[ChatMessage], job: i64) -> usize {
    let again = format!("\"a:{job}\"");
    messages.iter().filter(|m| m.reply_markup.as_ref().is_some_and(|k| k.to_string().contains(&again))).count()
}

/// Checks every accepted job: finished, told to its user once, at most one accepted
/// submit per job at fal, one settlement, charged only on success.
pub async fn tally(db: &FreshDb, telegram: &FakeTelegram, fal: &RunningSim) -> Tally {
    let jobs = jobs(db).await;
    let mut tally = Tally { jobs: jobs.len(), ..Tally::default() };
    let mut by_user: HashMap<i64, Vec<ChatMessage>> = HashMap::new();
    for job in &jobs {
        let messages = by_user.entry(job.user).or_insert_with(|| telegram.messages_to(job.user));
        let heading = format!("Job #{} ", job.id);
        let told = |needle: &str| {
            messages.iter().filter(|m| text(m).starts_with(&heading) && text(m).contains(needle)).count()
        };
        let (count, photos_ok) = match job.state.as_str() {
            "succeeded" => {
                tally.succeeded += 1;
                (deliveries(messages, job.id), told("is done") >= 1)
            }
            "failed" => {
                tally.failed += 1;
                let kind = failure_kind(job.failure.as_deref());
                *tally.failures.entry(kind).or_default() += 1;
                (told("failed"), true)
            }
            _ => (0, false),
        };
        if count == 0 && photos_ok && job.delivered && job.state == "succeeded" {
            tally.unbuttoned.push(job.id);
            tally.delivered += 1;
        } else if count == 0 || !photos_ok || !job.delivered {
            tally.lost.push(job.id);
        } else {
            tally.delivered += 1;
            tally.duplicates += count - 1;
        }
    }

    let mut succeeded_by_user: HashMap<i64, usize> = HashMap::new();
    for job in jobs.iter().filter(|j| j.state == "succeeded") {
        *succeeded_by_user.entry(job.user).or_default() += 1;
    }
    for (user, succeeded) in succeeded_by_user {
        if photos_to(telegram, user) < succeeded {
            tally.missing_pictures.push(user);
        }
    }
    tally.missing_pictures.sort_unstable();

    // fal: one accepted submit per job prompt (every prompt in a scenario is unique).
    let mut submits: HashMap<String, usize> = HashMap::new();
    for request in fal.handle().requests() {
        if let Some(prompt) = request.input["prompt"].as_str() {
            *submits.entry(prompt.to_owned()).or_default() += 1;
        }
    }
    for job in &jobs {
        if submits.get(&job.prompt).copied().unwrap_or(0) > 1 {
            tally.double_submits.push(job.prompt.clone());
        }
    }

    // The ledger: one hold; once finished one charge, one refund, splitting the hold; a charge
    // only for a success.
    let sql = "SELECT j.id, j.state,
                count(*) FILTER (WHERE l.kind = 'charge'),
                CAST(coalesce(sum(l.amount_micros) FILTER (WHERE l.kind IN ('charge', 'refund')), 0) AS BIGINT)
                    - CAST(coalesce(sum(l.amount_micros) FILTER (WHERE l.kind = 'hold'), 0) AS BIGINT),
                CAST(coalesce(sum(l.amount_micros) FILTER (WHERE l.kind = 'charge'), 0) AS BIGINT)
         FROM jobs j LEFT JOIN ledger l ON l.job_id = j.id GROUP BY j.id, j.state ORDER BY j.id";
    let rows: Vec<(i64, String, i64, i64, i64)> =
        with_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await).expect("ledger");
    for (id, state, charges, imbalance, charged) in rows {
        if charges > 1 || (state != "succeeded" && charged > 0) {
            tally.double_charges += 1;
        }
        if imbalance != 0 || charges != 1 {
            tally.unsettled.push(id);
        }
    }
    tally
}

/// Photos sent to `user` (for a rough cross-check of deliveries).
pub fn photos_to(telegram: &FakeTelegram, user: i64) -> usize {
    telegram.messages_to(user).iter().filter(|m| matches!(m.content, Content::Photo { .. })).count()
}

/// A plans file that never refuses a request of a test's burst.
pub const ROOMY_PLANS: &str = "default_plan = \"roomy\"\n[plans.roomy]\nmax_in_flight = 4\nmax_queued = 1000\n";

/// The name of a stored `FailureReason` (`content_policy`, `upstream`, …).
fn failure_kind(failure: Option<&str>) -> String {
    let value: serde_json::Value = failure.and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
    match &value {
        serde_json::Value::String(kind) => kind.clone(),
        serde_json::Value::Object(map) => map
            .get("kind")
            .and_then(|k| k.as_str())
            .map(str::to_owned)
            .or_else(|| map.keys().next().cloned())
            .unwrap_or_else(|| "?".into()),
        _ => "?".into(),
    }
}

/// How often each rescue path ran, from the bot logs in `dir` (`*.log`).
pub fn rescues(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    let count = |needle: &str| text.matches(needle).count();
    format!(
        "rescued: resumed at fal {}, requeued {}, interrupted submits failed {}, outcomes delivered again {}",
        count("resuming a job at fal"),
        count("requeued a job whose dispatcher died"),
        count("a dispatcher died during a submit"),
        count("delivering the outcome of a job whose deliverer died"),
    )
}

/// What fal's own records say about the jobs, against our ledger: for every job, the
/// requests fal ran for its prompt, and whether the `fal_cost` we recorded is what fal
/// billed. Prompts must be unique and none a part of another (number them `#0001#`).
#[derive(Debug, Default)]
pub struct FalAudit {
    /// Jobs fal ran more than once (prompt, runs).
    pub ran_twice: Vec<(String, usize)>,
    /// Jobs whose recorded fal cost differs from fal's bill (job, ours, fal's, in micro-dollars).
    pub cost_mismatches: Vec<(i64, i64, i64)>,
    /// Jobs whose submit was interrupted (the answer never stored): whether fal got the
    /// request cannot be known, so their fal cost is an estimate, not compared.
    pub estimated: Vec<i64>,
    /// Requests fal ran in all, and what it billed in all (micro-dollars).
    pub runs: usize,
    pub billed: i64,
}

/// Compares fal's records (the simulator's run and billing counts per prompt) with ours.
pub async fn fal_audit(db: &FreshDb, fal: &RunningSim) -> FalAudit {
    let sql = "SELECT j.id, j.spec->>'prompt',
                (SELECT l.amount_micros FROM ledger l WHERE l.job_id = j.id AND l.kind = 'fal_cost'),
                coalesce(CAST(j.failure AS TEXT) LIKE '%submit outcome unknown%', false)
         FROM jobs j ORDER BY j.id";
    let rows: Vec<(i64, String, Option<i64>, bool)> =
        with_pool!(db, |pool| sqlx::query_as(sql).fetch_all(pool).await).expect("fal costs");
    let sim = fal.handle();
    let mut audit = FalAudit::default();
    for (job, prompt, ours, unknown) in rows {
        let runs = sim.runs_for_prompt(&prompt);
        audit.runs += runs;
        if runs > 1 {
            audit.ran_twice.push((prompt.clone(), runs));
        }
        let billed = sim.billed_for_prompt(&prompt).micros();
        audit.billed += billed;
        if unknown {
            audit.estimated.push(job);
            continue;
        }
        if let Some(ours) = ours
            && ours != billed
        {
            audit.cost_mismatches.push((job, ours, billed));
        }
    }
    audit
}
