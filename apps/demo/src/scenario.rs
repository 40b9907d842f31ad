//! The crowd: simulated users with seeded scripts (prompts, photos to edit, an album,
//! `/img` and `/enhance` with a button press, "again" under a result, and a few bad
//! inputs), and the operator, who answers the account-lock alert with a top-up.

use crate::options::Options;
use crate::queries;
use crate::stack::{ACCOUNTS, OPERATOR_ID};
use bytes::Bytes;
use mediagen_fal_sim::{AccountUpdate, FaultKind, FaultRule, SimHandle};
use mediagen_stack::Store;
use mediagen_telegram_fake::{ChatMessage, FakeTelegram, SimUser};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long a user waits for an answer before counting it as missing.
const PATIENCE: Duration = Duration::from_secs(20);

const EN_NAMES: [&str; 18] = [
    "Alice", "Ben", "Chloe", "Daniel", "Emma", "Frank", "Grace", "Henry", "Isla", "Jack", "Kate", "Liam", "Mia",
    "Noah", "Olivia", "Peter", "Ruby", "Sam",
];
const RU_NAMES: [&str; 18] = [
    "Anna", "Boris", "Vera", "Dmitri", "Elena", "Fyodor", "Galina", "Igor", "Katya", "Lev", "Maria", "Nikita", "Olga",
    "Pavel", "Sofia", "Timur", "Ulyana", "Yuri",
];

const EN_PROMPTS: [&str; 16] = [
    "a red fox in fresh snow, watercolor",
    "a lighthouse at dusk, oil painting",
    "a cat astronaut floating above the moon",
    "a cozy reading nook with rain on the window",
    "a steampunk owl made of brass gears",
    "a bowl of ramen, studio food photography",
    "an old tram in Lisbon, golden hour",
    "a tiny dragon sleeping in a teacup",
    "a neon-lit street market at night, cinematic",
    "a watercolor map of an imaginary island",
    "a robot tending a vegetable garden",
    "mountains reflected in a still lake at sunrise",
    "a paper-cut style forest with deer",
    "a vintage travel poster for Mars",
    "a jellyfish made of stained glass",
    "a snowy cabin under the northern lights",
];

const RU_PROMPTS: [&str; 16] = [
    "рыжая лиса на свежем снегу, акварель",
    "маяк в сумерках, масляная живопись",
    "кот-космонавт над Луной",
    "уютный уголок для чтения, дождь за окном",
    "сова в стиле стимпанк из латунных шестерёнок",
    "тарелка борща, студийная фотосъёмка",
    "старый трамвай в Петербурге на закате",
    "маленький дракон спит в чашке",
    "ночной рынок в неоновом свете, кинокадр",
    "акварельная карта выдуманного острова",
    "робот ухаживает за огородом",
    "горы отражаются в озере на рассвете",
    "лес из вырезанной бумаги с оленями",
    "винтажный туристический плакат о Марсе",
    "медуза из витражного стекла",
    "заснеженная изба под северным сиянием",
];

const EN_EDITS: [&str; 4] =
    ["make it look like a comic", "turn it into a pencil sketch", "add falling snow", "make it a night scene"];
const RU_EDITS: [&str; 4] =
    ["сделай в стиле комикса", "преврати в карандашный набросок", "добавь падающий снег", "сделай ночную сцену"];

/// One thing a user does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Plain text: a picture with the default model.
    Prompt(String),
    /// A photo with a caption: an edit.
    Edit(String),
    /// Three photos as one album, the caption on the first.
    Album(String),
    /// `/img <prompt>`, then a press on one of the offered model buttons.
    Img(String),
    /// `/enhance <prompt>`, then a press on one of the offered model buttons.
    Enhance(String),
    /// A press on "again" under the user's latest result.
    Again,
    /// Several prompts at once: more than the plan lets one user queue.
    Burst(Vec<String>),
    /// A photo without a caption (bad input).
    EmptyCaption,
    /// `/frobnicate` (bad input).
    UnknownCommand,
    /// A sticker, sent as a raw update (bad input).
    Sticker,
    /// A 20 MB image document, above the edit model's limit (bad input).
    OversizedDocument,
    /// A prompt the simulator's content checker refuses (`[[fault:content_policy]]`).
    ContentPolicy(String),
}

impl Action {
    /// Generation requests this action makes (each may become a job or a refusal).
    pub fn requests(&self) -> u32 {
        match self {
            Action::Prompt(_)
            | Action::Edit(_)
            | Action::Album(_)
            | Action::Img(_)
            | Action::Enhance(_)
            | Action::Again
            | Action::ContentPolicy(_) => 1,
            Action::Burst(prompts) => u32::try_from(prompts.len()).unwrap_or(u32::MAX),
            Action::EmptyCaption | Action::UnknownCommand | Action::Sticker | Action::OversizedDocument => 0,
        }
    }

    /// Bad input that must get an answer of its own, before anything else the user does.
    fn is_bad_input(&self) -> bool {
        matches!(self, Action::EmptyCaption | Action::UnknownCommand | Action::Sticker | Action::OversizedDocument)
    }
}

/// One step of a script: wait, then act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Pause before the action.
    pub gap: Duration,
    /// The action.
    pub action: Action,
}

/// A user and what they will do.
#[derive(Debug, Clone)]
pub struct Script {
    /// The user.
    pub user: SimUser,
    /// Their steps, in order.
    pub steps: Vec<Step>,
}

impl Script {
    /// Generation requests the script makes.
    pub fn requests(&self) -> u32 {
        self.steps.iter().map(|s| s.action.requests()).sum()
    }
}

/// The scripted case user `index` covers, so even a short run has every one.
fn special(index: u32, prompt: &str, edit: &str) -> Option<Action> {
    Some(match index {
        0 => Action::Album(edit.to_owned()),
        1 => Action::Img(prompt.to_owned()),
        2 => Action::Enhance(prompt.to_owned()),
        3 => Action::EmptyCaption,
        4 => Action::UnknownCommand,
        5 => Action::Sticker,
        6 => Action::OversizedDocument,
        7 => Action::ContentPolicy(format!("{prompt} [[fault:content_policy]]")),
        8 => Action::Burst((0..9).map(|n| format!("{prompt}, variant {}", n + 1)).collect()),
        9 => Action::Again,
        _ => return None,
    })
}

/// The crowd's scripts: every user opens with two prompts within the first seconds, then
/// makes a few more requests at random intervals; users 0–9 each add one scripted case.
pub fn plan(options: &Options) -> Vec<Script> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let ms = |rng: &mut StdRng, (low, high): (u64, u64)| Duration::from_millis(rng.random_range(low..=high));
    (0..options.users)
        .map(|index| {
            let russian = index % 2 == 1;
            let (names, prompts, edits, code) =
                if russian { (RU_NAMES, RU_PROMPTS, RU_EDITS, "ru") } else { (EN_NAMES, EN_PROMPTS, EN_EDITS, "en") };
            let slot = index as usize / 2;
            let name = match slot / names.len() {
                0 => names[slot].to_owned(),
                round => format!("{}{}", names[slot % names.len()], round + 1),
            };
            let id = 20_000_001 + i64::from(index);
            let user =
                SimUser::new(id, &name).with_username(format!("{}_{index}", name.to_lowercase())).with_language(code);
            let pick = |rng: &mut StdRng, list: &[&str]| list[rng.random_range(0..list.len())].to_owned();

            let mut steps = Vec::new();
            let special = special(index, &pick(&mut rng, &prompts), &pick(&mut rng, &edits));
            // Bad input first: its answer is then the first thing the bot says to the user.
            if let Some(bad) = special.clone().filter(Action::is_bad_input) {
                steps.push(Step { gap: ms(&mut rng, (0, 500)), action: bad });
            }
            steps.push(Step { gap: ms(&mut rng, (0, 1_500)), action: Action::Prompt(pick(&mut rng, &prompts)) });
            steps.push(Step { gap: ms(&mut rng, (50, 400)), action: Action::Prompt(pick(&mut rng, &prompts)) });
            let extra = rng.random_range(options.extra_requests.0..=options.extra_requests.1);
            let special_at = rng.random_range(0..=extra);
            for n in 0..=extra {
                if n == special_at
                    && let Some(action) = special.clone().filter(|a| !a.is_bad_input())
                {
                    steps.push(Step { gap: ms(&mut rng, options.gap_ms), action });
                }
                if n == extra {
                    break;
                }
                let roll = rng.random_range(0..100);
                let action = match roll {
                    0..65 => Action::Prompt(pick(&mut rng, &prompts)),
                    65..82 => Action::Edit(pick(&mut rng, &edits)),
                    82..92 => Action::Img(pick(&mut rng, &prompts)),
                    92..96 => Action::Enhance(pick(&mut rng, &prompts)),
                    _ => Action::Again,
                };
                steps.push(Step { gap: ms(&mut rng, options.gap_ms), action });
            }
            Script { user, steps }
        })
        .collect()
}

/// Small real PNG files for the users' photos.
#[derive(Debug, Clone)]
pub struct Pictures(Arc<Vec<Bytes>>);

impl Pictures {
    /// Three 96×96 gradients in different colours.
    pub fn new() -> Self {
        let tints: [[u32; 3]; 3] = [[255, 120, 40], [40, 160, 255], [120, 220, 90]];
        let pictures = tints
            .iter()
            .map(|tint| {
                Bytes::from(mediagen_fal_sim::media::png_rgb(96, 96, |x, y| {
                    let shade = |c: u32, t: u32| u8::try_from((c * (t + 64)) / 160 % 256).unwrap_or(u8::MAX);
                    [shade(tint[0], x), shade(tint[1], y), shade(tint[2], (x + y) / 2)]
                }))
            })
            .collect();
        Pictures(Arc::new(pictures))
    }

    fn get(&self, n: usize) -> Bytes {
        self.0[n % self.0.len()].clone()
    }
}

impl Default for Pictures {
    fn default() -> Self {
        Pictures::new()
    }
}

/// What playing one script produced.
#[derive(Debug, Default)]
pub struct Played {
    /// Generation requests sent.
    pub requests: u32,
    /// What did not happen as a user would expect (no answer, no keyboard, …).
    pub problems: Vec<String>,
}

fn bot_messages_after(messages: &[ChatMessage], after: i64) -> impl Iterator<Item = &ChatMessage> {
    messages.iter().filter(move |m| m.from_bot && m.message_id > after)
}

/// Plays a script against the fake Bot API, as the user would with a phone.
pub async fn play(telegram: FakeTelegram, script: Script, pictures: Pictures) -> Played {
    let user = &script.user;
    let mut played = Played::default();
    for (n, step) in script.steps.iter().enumerate() {
        tokio::time::sleep(step.gap).await;
        played.requests += step.action.requests();
        if let Err(problem) = act(&telegram, user, &step.action, &pictures, n).await {
            played.problems.push(format!("{} ({}): {problem}", user.first_name, user.id));
        }
    }
    played
}

async fn act(
    telegram: &FakeTelegram,
    user: &SimUser,
    action: &Action,
    pictures: &Pictures,
    n: usize,
) -> Result<(), String> {
    match action {
        Action::Prompt(text) | Action::ContentPolicy(text) => {
            telegram.send_text(user, text);
        }
        Action::Burst(prompts) => {
            for text in prompts {
                telegram.send_text(user, text);
            }
        }
        Action::Edit(caption) => {
            telegram.send_photo(user, pictures.get(n), Some(caption));
        }
        Action::Album(caption) => {
            let photos = (0..3).map(|k| pictures.get(n + k)).collect();
            telegram.send_album(user, photos, Some(caption)).map_err(|e| format!("album refused by the fake: {e}"))?;
        }
        Action::Img(prompt) => pick_model(telegram, user, &format!("/img {prompt}"), n).await?,
        Action::Enhance(prompt) => pick_model(telegram, user, &format!("/enhance {prompt}"), n).await?,
        Action::Again => again(telegram, user).await?,
        Action::EmptyCaption => {
            let sent = telegram.send_photo(user, pictures.get(n), None);
            expect_answer(telegram, user, sent.message_id, "a photo without a caption").await?;
        }
        Action::UnknownCommand => {
            let sent = telegram.send_text(user, "/frobnicate now");
            expect_answer(telegram, user, sent.message_id, "an unknown command").await?;
        }
        Action::Sticker => {
            let before = last_message_id(telegram, user.id);
            telegram.push_update(sticker(user));
            expect_answer(telegram, user, before, "a sticker").await?;
        }
        Action::OversizedDocument => {
            let mut big = pictures.get(n).to_vec();
            big.resize(20 * 1024 * 1024, 0);
            let sent = telegram.send_document(user, big, "holiday.png", "image/png");
            expect_answer(telegram, user, sent.message_id, "a 20 MB document").await?;
        }
    }
    Ok(())
}

fn last_message_id(telegram: &FakeTelegram, chat: i64) -> i64 {
    telegram.transcript(chat).iter().map(|m| m.message_id).max().unwrap_or(0)
}

/// Waits for any message of the bot after `after` in the user's chat.
async fn expect_answer(telegram: &FakeTelegram, user: &SimUser, after: i64, what: &str) -> Result<(), String> {
    telegram
        .wait_for(|view| bot_messages_after(&view.messages_to(user.id), after).next().is_some(), PATIENCE)
        .await
        .map_err(|_| format!("no answer to {what} within {} s", PATIENCE.as_secs()))
}

/// Sends `/img …` or `/enhance …`, waits for the model keyboard and presses one button.
async fn pick_model(telegram: &FakeTelegram, user: &SimUser, command: &str, n: usize) -> Result<(), String> {
    let sent = telegram.send_text(user, command);
    let offer = telegram
        .wait_for_value(
            |view| {
                bot_messages_after(&view.messages_to(user.id), sent.message_id).find_map(|m| {
                    let picks: Vec<String> = m
                        .inline_buttons()
                        .into_iter()
                        .filter_map(|b| b.callback_data)
                        .filter(|d| d.starts_with("p:"))
                        .collect();
                    (!picks.is_empty()).then_some((m.message_id, picks))
                })
            },
            PATIENCE,
        )
        .await
        .map_err(|_| format!("no model keyboard after {command:?}"))?;
    let (message_id, picks) = offer;
    let data = &picks[(n + user.id.unsigned_abs() as usize) % picks.len()];
    telegram.press_button(user, message_id, data).map(|_| ()).map_err(|e| format!("button press failed: {e}"))
}

/// Presses "again" under the user's latest result, waiting for one if none came yet.
async fn again(telegram: &FakeTelegram, user: &SimUser) -> Result<(), String> {
    let found = telegram
        .wait_for_value(
            |view| {
                view.messages_to(user.id).iter().rev().find_map(|m| {
                    m.inline_buttons()
                        .into_iter()
                        .filter_map(|b| b.callback_data)
                        .find(|d| d.starts_with("a:"))
                        .map(|d| (m.message_id, d))
                })
            },
            PATIENCE,
        )
        .await
        .map_err(|_| "no result to press \"again\" under".to_owned())?;
    telegram.press_button(user, found.0, &found.1).map(|_| ()).map_err(|e| format!("button press failed: {e}"))
}

fn sticker(user: &SimUser) -> serde_json::Map<String, serde_json::Value> {
    let update = json!({
        "message": {
            "message_id": 1_000_000 + user.id % 1_000,
            "date": chrono::Utc::now().timestamp(),
            "chat": user.chat_json(),
            "from": user.to_json(),
            "sticker": {
                "file_id": format!("sticker-{}", user.id), "file_unique_id": format!("s{}", user.id),
                "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false
            }
        }
    });
    update.as_object().cloned().unwrap_or_default()
}

/// The operator's part: a fal account runs dry mid-run (the simulator locks it, as fal
/// does at a zero balance); the bot alerts the operator, who buys credit at fal and
/// records it with `/topup`.
pub struct Incident {
    /// The account that is locked.
    pub account: &'static str,
    /// When, after the users start.
    pub after: Duration,
    /// The top-up the operator records.
    pub top_up: &'static str,
}

impl Incident {
    /// Account alpha runs dry `after` the start; the operator tops it up by $10.
    pub fn new(after: Duration) -> Self {
        Incident { account: ACCOUNTS[0].name, after, top_up: "10" }
    }
}

/// What the operator typed and the bot's answer to each, by message id.
#[derive(Debug, Default, Clone)]
pub struct OperatorLog {
    /// (command, id of the operator's message, id of the bot's answer).
    pub commands: Vec<(String, i64, Option<i64>)>,
    /// What did not happen as expected.
    pub problems: Vec<String>,
}

/// Sends an operator command and waits for the bot's answer.
pub async fn operator_command(telegram: &FakeTelegram, text: &str, log: &mut OperatorLog) {
    let operator = SimUser::new(OPERATOR_ID, "Operator").with_username("operator").with_language("en");
    let sent = telegram.send_text(&operator, text);
    let answer = telegram
        .wait_for_value(
            |view| bot_messages_after(&view.messages_to(OPERATOR_ID), sent.message_id).next().map(|m| m.message_id),
            PATIENCE,
        )
        .await
        .ok();
    if answer.is_none() {
        log.problems.push(format!("operator: no answer to {text:?}"));
    }
    log.commands.push((text.to_owned(), sent.message_id, answer));
}

/// Runs the incident: locks the account at the simulator, waits until the bot has taken it
/// out of rotation (its lock is in the database), then unlocks it at the simulator and
/// records the top-up, as an operator would after reading the alert. Ends early on `stop`.
pub async fn run_incident(
    incident: Incident,
    telegram: FakeTelegram,
    fal: SimHandle,
    store: Store,
    mut stop: watch::Receiver<bool>,
) -> OperatorLog {
    let mut log = OperatorLog::default();
    tokio::select! {
        () = tokio::time::sleep(incident.after) => {}
        _ = stop.wait_for(|s| *s) => return log,
    }
    fal.add_faults([FaultRule {
        kind: FaultKind::LockAccount,
        rate: None,
        count: Some(1),
        skip: 0,
        account: Some(incident.account.to_owned()),
        endpoint: None,
    }]);
    let locked = async {
        loop {
            let locked = queries::locked_accounts(&store).await.unwrap_or_default();
            if locked.iter().any(|id| id.as_str() == incident.account) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        () = locked => {}
        // The bot never tried the account again before the users stopped: no alert to answer.
        _ = stop.wait_for(|s| *s) => {
            fal.update_account(incident.account, &AccountUpdate { locked: Some(false), ..AccountUpdate::default() });
            return log;
        }
    }
    // Reading the alert and paying at fal take a moment.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fal.update_account(incident.account, &AccountUpdate { locked: Some(false), ..AccountUpdate::default() });
    operator_command(&telegram, &format!("/topup {} {}", incident.account, incident.top_up), &mut log).await;
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_seeded_and_covers_every_scripted_case() {
        let options = Options::quick();
        let plan_once = plan(&options);
        let again: Vec<_> = plan(&options).into_iter().map(|s| s.steps).collect();
        assert_eq!(plan_once.iter().map(|s| s.steps.clone()).collect::<Vec<_>>(), again, "same seed, same scripts");

        let actions: Vec<&Action> = plan_once.iter().flat_map(|s| s.steps.iter().map(|step| &step.action)).collect();
        let has = |f: fn(&Action) -> bool| actions.iter().any(|a| f(a));
        assert!(has(|a| matches!(a, Action::Album(_))));
        assert!(has(|a| matches!(a, Action::Img(_))));
        assert!(has(|a| matches!(a, Action::Enhance(_))));
        assert!(has(|a| matches!(a, Action::Burst(p) if p.len() > 5)));
        assert!(has(|a| matches!(a, Action::ContentPolicy(p) if p.contains("[[fault:content_policy]]"))));
        for bad in [Action::EmptyCaption, Action::UnknownCommand, Action::Sticker, Action::OversizedDocument] {
            let script = plan_once.iter().find(|s| s.steps.iter().any(|step| step.action == bad)).expect("scripted");
            assert_eq!(script.steps[0].action, bad, "bad input comes first, so its answer is the first one");
        }

        let russian = plan_once.iter().filter(|s| s.user.language_code.as_deref() == Some("ru")).count();
        assert_eq!(russian * 2, plan_once.len(), "half the users write in Russian");
        let mut names: Vec<&str> = plan_once.iter().map(|s| s.user.first_name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), plan_once.len(), "names are unique");
    }

    #[test]
    fn a_large_crowd_keeps_unique_names() {
        let options = Options { users: 80, ..Options::full() };
        let scripts = plan(&options);
        let mut names: Vec<&str> = scripts.iter().map(|s| s.user.first_name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 80);
        assert!(scripts.iter().all(|s| s.requests() >= 2));
    }

    #[test]
    fn pictures_are_real_pngs() {
        let pictures = Pictures::new();
        for n in 0..3 {
            assert!(pictures.get(n).starts_with(&mediagen_fal_sim::media::PNG_SIGNATURE));
        }
    }
}
