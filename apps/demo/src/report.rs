//! The end-of-run report: what every user got, how long it took, what it cost, what the
//! operator was told, whether fal's limits held, and the checks that decide the exit code.

use crate::queries;
use crate::scenario::{OperatorLog, Script};
use crate::stack::{AccountLimit, OPERATOR_ID};
use crate::status::Peak;
use mediagen_domain::{JobId, JobState, Language, ModelKind, Money};
use mediagen_fal_sim::SimHandle;
use mediagen_ports::UserNotice;
use mediagen_stack::Store;
use mediagen_telegram::texts::render_notice;
use mediagen_telegram_fake::{ChatMessage, FakeTelegram};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

/// Everything the demo found; [`Report::ok`] decides the exit code.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// From the first user message to the end of the drain.
    pub elapsed: Duration,
    /// Generation requests the users sent (prompts, photos, albums, button presses).
    pub requests_sent: u32,
    /// Jobs by outcome.
    pub jobs: JobTotals,
    /// Every simulated user, most pictures first.
    pub users: Vec<UserLine>,
    /// Seconds from a job's creation to its end, over finished jobs.
    pub waits: Option<Waits>,
    /// The ledger joined to jobs, per model.
    pub cost_by_model: Vec<ModelCost>,
    /// What the simulator charged the fal accounts, in total.
    pub fal_billed: Money,
    /// Limits against what was seen, per account.
    pub accounts: Vec<AccountLine>,
    /// Alerts that fired, by key (the `alerts` table).
    pub alert_keys: Vec<String>,
    /// What the alerts said: the bot's messages to the operator that answered no command.
    pub alerts: Vec<String>,
    /// The operator's commands and the bot's answers.
    pub operator: Vec<(String, Option<String>)>,
    /// Users the bot never said anything to.
    pub unanswered: Vec<String>,
    /// Everything that makes the run a failure, worded for a person.
    pub problems: Vec<String>,
    /// Worth knowing, not a failure.
    pub notes: Vec<String>,
    /// What was shut down and dropped at the end.
    pub cleanup: Vec<String>,
}

/// Jobs by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobTotals {
    /// Rows in `jobs`: requests the bot accepted.
    pub accepted: u32,
    /// Delivered.
    pub succeeded: u32,
    /// Ended without a result.
    pub failed: u32,
    /// Canceled.
    pub canceled: u32,
    /// Not finished when the run ended.
    pub unfinished: u32,
}

/// One user's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserLine {
    /// First name.
    pub name: String,
    /// Telegram id.
    pub id: i64,
    /// Their client's language code.
    pub language: String,
    /// Jobs succeeded.
    pub done: u32,
    /// Jobs failed or canceled.
    pub failed: u32,
    /// What they were charged.
    pub charged: Money,
    /// Bot messages in their chat.
    pub answers: usize,
}

/// Wait percentiles, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Waits {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Longest.
    pub max: f64,
}

/// One model's jobs and money.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCost {
    /// Endpoint id.
    pub model: String,
    /// Jobs.
    pub jobs: u32,
    /// Of which succeeded.
    pub succeeded: u32,
    /// Charged to users.
    pub charged: Money,
    /// Refunded to users.
    pub refunded: Money,
    /// What the bot recorded as fal's bill.
    pub fal_cost: Money,
    /// What the simulator billed for this endpoint (calls outside jobs included, such as
    /// the prompt helper rewriting a generation's prompt; `/enhance` is a job of its own).
    pub fal_billed: Money,
}

/// One fal account: its limit against what was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLine {
    /// Name.
    pub name: String,
    /// Limit from the credit window (the simulator got the same).
    pub limit: u32,
    /// Jobs the bot may keep waiting in fal's own queue beyond the limit.
    pub overhang: u32,
    /// The simulator's highest count of jobs running at once.
    pub fal_max_running: u32,
    /// Highest count of jobs at fal at once, running or waiting (sampled).
    pub peak_held_at_fal: u32,
    /// Highest count of jobs in flight in our database at once (sampled).
    pub peak_in_flight: u32,
    /// Jobs the simulator ran to success.
    pub fal_succeeded: u64,
}

impl Report {
    /// True when every accepted job got exactly one outcome and nothing else went wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What the report is made from.
pub struct Inputs<'a> {
    /// The bot's database.
    pub store: &'a Store,
    /// The fake Bot API's record.
    pub telegram: &'a FakeTelegram,
    /// The simulator.
    pub fal: &'a SimHandle,
    /// The users and their scripts.
    pub scripts: &'a [Script],
    /// Limits per account.
    pub limits: &'a [AccountLimit],
    /// Peaks from the status samples.
    pub peaks: &'a BTreeMap<String, Peak>,
    /// The bot's overhang setting.
    pub overhang: u32,
    /// The operator's commands.
    pub operator: &'a OperatorLog,
}

/// One job as the checks see it: from the storage ports, with its ledger rows.
#[derive(Debug, Clone)]
struct Outcome {
    id: i64,
    user: i64,
    chat: i64,
    model: String,
    /// The prompt as the user typed it.
    prompt: String,
    /// What the model makes: a `/enhance` job (`Llm`) ends in the rewrite, not a file.
    kind: ModelKind,
    state: JobState,
    language: Language,
    /// Ledger rows of kind `hold` (one expected), and the sums per kind.
    holds: u32,
    hold: i64,
    charge: i64,
    refund: i64,
    /// From creation to the end; `None` while unfinished.
    wait_secs: Option<f64>,
}

/// The ledger of one job, summed per kind.
#[derive(Debug, Clone, Copy, Default)]
struct JobMoney {
    holds: u32,
    hold: i64,
    charge: i64,
    refund: i64,
}

/// Why a job's outcome as the user saw it does not match the database, if it does not.
fn check_job(job: &Outcome, chat: &[ChatMessage], media: &[String]) -> Vec<String> {
    let Outcome { id, state, language, holds, hold, charge, refund, kind, prompt, .. } = job;
    let mut problems = Vec::new();
    let job = JobId(*id);
    if *holds != 1 {
        problems.push(format!("job #{id}: {holds} credit holds in the ledger, expected 1"));
    }
    if charge + refund != *hold {
        problems.push(format!(
            "job #{id}: charged {} + refunded {} ≠ held {}",
            Money::from_micros(*charge),
            Money::from_micros(*refund),
            Money::from_micros(*hold)
        ));
    }
    let notice = match state {
        JobState::Succeeded => UserNotice::Done { job, charged: Money::from_micros(*charge) },
        JobState::Failed { reason } => {
            UserNotice::Failed { job, reason: reason.clone(), refunded: Money::from_micros(*refund) }
        }
        JobState::Canceled => UserNotice::Canceled { job, refunded: Money::from_micros(*refund) },
        other => {
            problems.push(format!("job #{id}: still {} at the end", other.name()));
            return problems;
        }
    };
    if *kind == ModelKind::Llm && *state == JobState::Succeeded {
        // The rewrite itself is the outcome: its text is the LLM's, so the check is on
        // the part we write. A repeat of the prompt is answered from the cache the same way.
        let opening = UserNotice::EnhancedPrompt { original: prompt.clone(), enhanced: String::new() };
        let opening = render_notice(*language, &opening);
        if !chat.iter().any(|m| m.from_bot && m.text().starts_with(&opening) && m.text().len() > opening.len()) {
            problems.push(format!("job #{id}: the rewrite of {prompt:?} never reached the user"));
        }
        if !media.is_empty() {
            problems.push(format!("job #{id}: a rewrite, but {} files were delivered", media.len()));
        }
        return problems;
    }
    let expected = render_notice(*language, &notice);
    let told = chat.iter().filter(|m| m.from_bot && m.text() == expected).count();
    if told != 1 {
        problems.push(format!("job #{id}: the user was told its outcome {told} times, expected once ({expected:?})"));
    }
    if *state == JobState::Succeeded {
        if media.is_empty() {
            problems.push(format!("job #{id}: succeeded with no delivered file recorded"));
        }
        for file in media {
            let sent = chat.iter().filter(|m| m.from_bot && m.content.file_id() == Some(file.as_str())).count();
            if sent != 1 {
                problems.push(format!("job #{id}: its picture reached the chat {sent} times, expected once"));
            }
        }
    } else if !media.is_empty() {
        problems.push(format!("job #{id}: {} but {} files were delivered", state.name(), media.len()));
    }
    problems
}

/// Every job with its user's language, finish and ledger, by id: through the ports
/// (`UserStore::list_users`, `JobQueue::recent_jobs`, `ReportStore::job_timings`) and the
/// ledger read.
async fn outcomes(store: &Store) -> anyhow::Result<Vec<Outcome>> {
    let ports = store.ports();
    let (from, to) = queries::all_time();
    let finished: HashMap<JobId, Option<chrono::DateTime<chrono::Utc>>> =
        ports.reports.job_timings(from, to).await?.into_iter().map(|t| (t.job, t.finished_at)).collect();
    let mut money: HashMap<i64, JobMoney> = HashMap::new();
    for (job, kind, micros) in queries::ledger(store).await? {
        let entry = money.entry(job).or_default();
        match kind.as_str() {
            "hold" => {
                entry.holds += 1;
                entry.hold += micros;
            }
            "charge" => entry.charge += micros,
            "refund" => entry.refund += micros,
            _ => {}
        }
    }
    let mut outcomes = Vec::new();
    for user in ports.users.list_users().await? {
        for job in ports.queue.recent_jobs(user.id, u32::MAX).await? {
            let JobMoney { holds, hold, charge, refund } = money.get(&job.id.0).copied().unwrap_or_default();
            let wait_secs = finished.get(&job.id).copied().flatten().map(|end| (end - job.created_at).as_seconds_f64());
            outcomes.push(Outcome {
                id: job.id.0,
                user: job.user.0,
                chat: job.chat.0,
                model: job.spec.model.as_str().to_owned(),
                prompt: job.spec.prompt.as_str().to_owned(),
                kind: job.spec.kind,
                state: job.state,
                language: user.language,
                holds,
                hold,
                charge,
                refund,
                wait_secs,
            });
        }
    }
    outcomes.sort_by_key(|o| o.id);
    Ok(outcomes)
}

/// The domain's nearest-rank percentile; 0 for no values.
fn percentile(values: &[f64], p: f64) -> f64 {
    mediagen_domain::planner::percentile(values, p).unwrap_or(0.0)
}

/// Reads the database, the fake Bot API and the simulator, and checks every job.
///
/// # Errors
/// When a query fails.
pub async fn collect(inputs: Inputs<'_>) -> anyhow::Result<Report> {
    let Inputs { store, telegram, fal, scripts, limits, peaks, overhang, operator } = inputs;
    let mut report = Report::default();

    let jobs = outcomes(store).await?;
    let mut chats: HashMap<i64, Vec<ChatMessage>> = HashMap::new();
    let mut per_user: HashMap<i64, (u32, u32, i64)> = HashMap::new();
    let mut per_model: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut waits = Vec::new();
    for job in &jobs {
        let media: Vec<String> = store
            .ports()
            .usage
            .media_for_job(JobId(job.id))
            .await?
            .into_iter()
            .filter_map(|m| m.telegram_file_id)
            .collect();
        let messages = chats.entry(job.chat).or_insert_with(|| telegram.messages_to(job.chat));
        report.problems.extend(check_job(job, messages, &media));
        report.jobs.accepted += 1;
        let entry = per_user.entry(job.user).or_default();
        let model = per_model.entry(job.model.clone()).or_default();
        model.0 += 1;
        match job.state {
            JobState::Succeeded => {
                report.jobs.succeeded += 1;
                entry.0 += 1;
                model.1 += 1;
            }
            JobState::Failed { .. } => {
                report.jobs.failed += 1;
                entry.1 += 1;
            }
            JobState::Canceled => {
                report.jobs.canceled += 1;
                entry.1 += 1;
            }
            _ => report.jobs.unfinished += 1,
        }
        entry.2 += job.charge;
        waits.extend(job.wait_secs);
    }
    waits.sort_by(f64::total_cmp);
    if !waits.is_empty() {
        report.waits = Some(Waits {
            p50: percentile(&waits, 50.0),
            p95: percentile(&waits, 95.0),
            max: waits.last().copied().unwrap_or(0.0),
        });
    }

    for script in scripts {
        let user = &script.user;
        let (done, failed, charged) = per_user.get(&user.id).copied().unwrap_or_default();
        let answers = telegram.messages_to(user.id).iter().filter(|m| m.from_bot).count();
        if answers == 0 {
            report.unanswered.push(format!("{} ({})", user.first_name, user.id));
        }
        report.requests_sent += script.requests();
        report.users.push(UserLine {
            name: user.first_name.clone(),
            id: user.id,
            language: user.language_code.clone().unwrap_or_default(),
            done,
            failed,
            charged: Money::from_micros(charged),
            answers,
        });
    }
    report.users.sort_by(|a, b| b.done.cmp(&a.done).then(a.failed.cmp(&b.failed)).then(a.id.cmp(&b.id)));
    if !report.unanswered.is_empty() {
        report.problems.push(format!("{} users got no answer at all", report.unanswered.len()));
    }

    // Jobs per model from the jobs; money from `ReportStore::usage_rows` (finished jobs'
    // settlements), summed per model.
    let (from, to) = queries::all_time();
    let mut money: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for row in store.ports().reports.usage_rows(from, to).await? {
        let sums = money.entry(row.model.as_str().to_owned()).or_default();
        sums[0] += row.user_charged.micros();
        sums[1] += row.user_refunded.micros();
        sums[2] += row.fal_cost.micros();
    }
    let models: std::collections::BTreeSet<String> = per_model.keys().chain(money.keys()).cloned().collect();
    report.cost_by_model = models
        .into_iter()
        .map(|model| {
            let (jobs, succeeded) = per_model.get(&model).copied().unwrap_or_default();
            let [charged, refunded, fal_cost] = money.get(&model).copied().unwrap_or_default();
            ModelCost {
                model,
                jobs,
                succeeded,
                charged: Money::from_micros(charged),
                refunded: Money::from_micros(refunded),
                fal_cost: Money::from_micros(fal_cost),
                fal_billed: Money::ZERO,
            }
        })
        .collect();
    report.cost_by_model.sort_by(|a, b| b.charged.micros().cmp(&a.charged.micros()).then(a.model.cmp(&b.model)));
    let mut billed: BTreeMap<String, i64> = BTreeMap::new();
    for request in fal.requests() {
        *billed.entry(request.endpoint).or_default() += request.charged.micros();
    }
    for (endpoint, micros) in billed {
        match report.cost_by_model.iter_mut().find(|m| m.model == endpoint) {
            Some(row) => row.fal_billed = Money::from_micros(micros),
            None => report.cost_by_model.push(ModelCost {
                model: endpoint,
                fal_billed: Money::from_micros(micros),
                ..ModelCost::default()
            }),
        }
    }

    let sim_accounts = fal.accounts();
    report.fal_billed = Money::from_micros(sim_accounts.iter().map(|a| a.charged.micros()).sum());
    for row in &report.cost_by_model {
        if row.fal_cost != row.fal_billed {
            let what = if row.jobs == 0 { " (calls outside jobs, recorded nowhere)" } else { "" };
            report.notes.push(format!(
                "{}: the bot recorded {} as fal's cost, the simulator billed {}{what}",
                row.model,
                row.fal_cost.exact_text(),
                row.fal_billed.exact_text()
            ));
        }
    }
    for limit in limits {
        let name = limit.account.name;
        let sim = sim_accounts.iter().find(|a| a.name == name);
        let peak = peaks.get(name).cloned().unwrap_or_default();
        let line = AccountLine {
            name: name.to_owned(),
            limit: limit.limit,
            overhang,
            fal_max_running: sim.map_or(0, |a| a.max_in_progress),
            peak_held_at_fal: peak.held_at_fal,
            peak_in_flight: peak.in_flight,
            fal_succeeded: sim.map_or(0, |a| a.jobs_succeeded),
        };
        if line.fal_max_running > line.limit {
            report
                .problems
                .push(format!("{name}: {} jobs ran at fal at once; the limit is {}", line.fal_max_running, line.limit));
        }
        if line.peak_held_at_fal > line.limit + overhang {
            report.problems.push(format!(
                "{name}: {} jobs were at fal at once; the bot should hold at most {} + {overhang}",
                line.peak_held_at_fal, line.limit
            ));
        }
        if line.peak_in_flight > line.limit + overhang {
            report.problems.push(format!(
                "{name}: {} jobs were in flight at once; the bot should hold at most {} + {overhang}",
                line.peak_in_flight, line.limit
            ));
        }
        report.accounts.push(line);
    }

    report.alert_keys = queries::alert_keys(store).await?;
    let operator_chat = telegram.messages_to(OPERATOR_ID);
    let answer_ids: Vec<i64> = operator.commands.iter().filter_map(|(_, _, answer)| *answer).collect();
    report.alerts = operator_chat
        .iter()
        .filter(|m| m.from_bot && !answer_ids.contains(&m.message_id))
        .map(|m| m.text().to_owned())
        .collect();
    report.operator = operator
        .commands
        .iter()
        .map(|(command, _, answer)| {
            let text =
                answer.and_then(|id| operator_chat.iter().find(|m| m.message_id == id)).map(|m| m.text().to_owned());
            (command.clone(), text)
        })
        .collect();
    report.problems.extend(operator.problems.iter().cloned());
    Ok(report)
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|line| format!("{by}{line}")).collect::<Vec<_>>().join("\n")
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let jobs = &self.jobs;
        writeln!(f, "──────────────────────────── report ────────────────────────────")?;
        writeln!(
            f,
            "Jobs       {} accepted of {} requests: {} done, {} failed, {} canceled, {} unfinished",
            jobs.accepted, self.requests_sent, jobs.succeeded, jobs.failed, jobs.canceled, jobs.unfinished
        )?;
        let refused = self.requests_sent.saturating_sub(jobs.accepted);
        if refused > 0 {
            writeln!(
                f,
                "           {refused} refused at intake (e.g. a user's queue was full); bad input is not counted"
            )?;
        }

        writeln!(f, "\nPer user   top 10 by pictures done:")?;
        for user in self.users.iter().take(10) {
            writeln!(
                f,
                "           {:<8} {:<3} {:>3} done {:>2} failed  charged {}",
                user.name, user.language, user.done, user.failed, user.charged
            )?;
        }
        let mut done: Vec<u32> = self.users.iter().map(|u| u.done).collect();
        done.sort_unstable();
        if let (Some(low), Some(high)) = (done.first(), done.last()) {
            let median = done[done.len() / 2];
            let total: Money = Money::from_micros(self.users.iter().map(|u| u.charged.micros()).sum());
            writeln!(
                f,
                "           {} users: {low}–{high} pictures each (median {median}), charged {total} in all",
                self.users.len()
            )?;
        }

        match &self.waits {
            Some(w) => writeln!(
                f,
                "\nWaits      created → finished: p50 {:.1} s · p95 {:.1} s · max {:.1} s",
                w.p50, w.p95, w.max
            )?,
            None => writeln!(f, "\nWaits      no job finished")?,
        }

        writeln!(
            f,
            "\nCost       {:<30} {:>5} {:>5} {:>9} {:>9} {:>9} {:>10}",
            "model", "jobs", "done", "charged", "refunded", "fal cost", "fal billed"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, jobs: u32, done: u32, money: [Money; 4]| {
            let [charged, refunded, cost, billed] = money.map(|m| m.to_string());
            writeln!(f, "           {name:<30} {jobs:>5} {done:>5} {charged:>9} {refunded:>9} {cost:>9} {billed:>10}")
        };
        for m in &self.cost_by_model {
            row(f, &m.model, m.jobs, m.succeeded, [m.charged, m.refunded, m.fal_cost, m.fal_billed])?;
        }
        let sum =
            |get: fn(&ModelCost) -> Money| Money::from_micros(self.cost_by_model.iter().map(|m| get(m).micros()).sum());
        let totals = [sum(|m| m.charged), sum(|m| m.refunded), sum(|m| m.fal_cost), self.fal_billed];
        row(f, "total", jobs.accepted, jobs.succeeded, totals)?;
        writeln!(f, "           (charged + refunded = held; fal cost: the bot's ledger; fal billed: the simulator)")?;

        writeln!(
            f,
            "\nOperator   {} messages the bot sent on its own (alerts fired: {}):",
            self.alerts.len(),
            self.alert_keys.join(", ")
        )?;
        for alert in &self.alerts {
            writeln!(f, "{}", indent(alert, "           │ "))?;
            writeln!(f, "           │")?;
        }
        for (command, answer) in &self.operator {
            writeln!(f, "Operator   typed {command}")?;
            writeln!(f, "{}", indent(answer.as_deref().unwrap_or("(no answer)"), "           → "))?;
        }

        writeln!(
            f,
            "\nfal limits {:<8} {:>5} {:>14} {:>16} {:>16} {:>9}",
            "account", "limit", "max running", "max at fal", "max in flight", "ran ok"
        )?;
        for a in &self.accounts {
            let held = a.limit + a.overhang;
            writeln!(
                f,
                "           {:<8} {:>5} {:>12} {} {:>11}/{:<2} {} {:>11}/{:<2} {} {:>9}",
                a.name,
                a.limit,
                a.fal_max_running,
                mark(a.fal_max_running <= a.limit),
                a.peak_held_at_fal,
                held,
                mark(a.peak_held_at_fal <= held),
                a.peak_in_flight,
                held,
                mark(a.peak_in_flight <= held),
                a.fal_succeeded
            )?;
        }
        writeln!(
            f,
            "           (max at fal: running plus waiting in fal's queue; the bot keeps up to limit + overhang there)"
        )?;

        let silent = if self.unanswered.is_empty() { "none".to_owned() } else { self.unanswered.join(", ") };
        writeln!(f, "\nNo answer  {silent}")?;
        for note in &self.notes {
            writeln!(f, "Note       {note}")?;
        }
        for line in &self.cleanup {
            writeln!(f, "Cleanup    {line}")?;
        }
        writeln!(f, "Took       {:.1} s", self.elapsed.as_secs_f64())?;
        if self.ok() {
            writeln!(f, "\nOK: every accepted job got exactly one outcome, and every user got an answer.")
        } else {
            writeln!(f, "\nFAILED: {} problem(s):", self.problems.len())?;
            for problem in &self.problems {
                writeln!(f, "  - {problem}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagen_domain::{AccountId, FailureReason, RequestId};
    use mediagen_telegram_fake::Content;

    fn message(id: i64, text: &str, content: Content) -> ChatMessage {
        ChatMessage {
            chat_id: 7,
            message_id: id,
            from_bot: true,
            date: chrono::Utc::now(),
            content,
            text: Some(text.to_owned()),
            entities: Vec::new(),
            parse_mode: None,
            reply_markup: None,
            reply_to: None,
            media_group_id: None,
            edit_count: 0,
            edit_date: None,
        }
    }

    fn photo(id: i64, file: &str) -> ChatMessage {
        let content = Content::Photo { file_id: file.to_owned(), width: 64, height: 64, file_size: 10 };
        ChatMessage { text: None, ..message(id, "", content) }
    }

    fn row(state: JobState, charge: i64, refund: i64) -> Outcome {
        Outcome {
            id: 5,
            user: 7,
            chat: 7,
            model: "m".into(),
            prompt: "a fox".into(),
            kind: ModelKind::TextToImage,
            state,
            language: Language::En,
            holds: 1,
            hold: 39_000,
            charge,
            refund,
            wait_secs: Some(1.0),
        }
    }

    #[test]
    fn a_job_told_once_with_its_picture_once_passes() {
        let done =
            render_notice(Language::En, &UserNotice::Done { job: JobId(5), charged: Money::from_micros(39_000) });
        let chat = vec![photo(1, "f1"), message(2, &done, Content::Text)];
        assert!(check_job(&row(JobState::Succeeded, 39_000, 0), &chat, &["f1".into()]).is_empty());
    }

    #[test]
    fn silence_repeats_and_unsettled_money_are_problems() {
        let done =
            render_notice(Language::En, &UserNotice::Done { job: JobId(5), charged: Money::from_micros(39_000) });
        let twice = vec![photo(1, "f1"), message(2, &done, Content::Text), message(3, &done, Content::Text)];
        let problems = check_job(&row(JobState::Succeeded, 39_000, 0), &twice, &["f1".into()]);
        assert!(problems.iter().any(|p| p.contains("2 times")), "{problems:?}");

        let problems = check_job(&row(JobState::Succeeded, 39_000, 0), &[], &[]);
        assert_eq!(problems.len(), 2, "not told, and no picture: {problems:?}");

        let running = JobState::Running { account: AccountId::new("a"), request_id: RequestId::new("r") };
        let problems = check_job(&row(running, 0, 0), &[], &[]);
        assert!(problems.iter().any(|p| p.contains("still running")), "{problems:?}");

        let failed = render_notice(
            Language::En,
            &UserNotice::Failed {
                job: JobId(5),
                reason: FailureReason::ContentPolicy,
                refunded: Money::from_micros(20_000),
            },
        );
        let problems = check_job(
            &row(JobState::Failed { reason: FailureReason::ContentPolicy }, 0, 20_000),
            &[message(1, &failed, Content::Text)],
            &[],
        );
        assert_eq!(problems.len(), 1, "refunded less than held: {problems:?}");
        assert!(problems[0].contains("≠ held"));
    }

    #[test]
    fn a_rewrite_job_ends_in_the_rewrite_not_in_a_file() {
        let rewrite = Outcome { kind: ModelKind::Llm, ..row(JobState::Succeeded, 100, 900) };
        let shown = render_notice(
            Language::En,
            &UserNotice::EnhancedPrompt { original: "a fox".into(), enhanced: "a red fox in snow".into() },
        );
        let hold = Outcome { hold: 1_000, ..rewrite };
        assert!(check_job(&hold, &[message(1, &shown, Content::Text)], &[]).is_empty());
        let problems = check_job(&hold, &[], &[]);
        assert!(problems.iter().any(|p| p.contains("never reached")), "{problems:?}");
    }

    #[test]
    fn exact_amounts_keep_every_micro_dollar() {
        assert_eq!(Money::from_micros(106).exact_text(), "$0.000106");
        assert_eq!(Money::from_micros(8_256_106).exact_text(), "$8.256106");
        assert_eq!(Money::from_micros(-5).exact_text(), "-$0.000005");
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let waits: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&waits, 50.0), 10.0);
        assert_eq!(percentile(&waits, 95.0), 19.0);
        assert_eq!(percentile(&waits, 100.0), 20.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
