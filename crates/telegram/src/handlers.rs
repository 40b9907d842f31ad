//! The update handlers: a teloxide `dptree` schema that turns updates into engine calls.

use crate::TelegramBot;
use crate::admin;
use crate::app::{Album, BotApp};
use crate::command::{ButtonAction, SettingsChange, UserCommand, parse_text};
use crate::inbox::Handling;
use crate::messaging::classify;
use crate::texts::{BalanceView, Button, HistoryLine, strings};
use mediagen_domain::catalog::PriceRequest;
use mediagen_domain::{
    ChatId, IdempotencyKey, ImageSize, JobId, JobState, Language, MediaRef, ModelKind, Role, User, UserId,
};
use mediagen_engine::{CancelOutcome, EnhanceOutcome, EnhanceRequest, IntakeRequest};
use mediagen_ports::{NewUser, Refusal, StorageError};
use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::{
    FileId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MediaKind, MessageKind, ReplyMarkup,
};

type HandlerResult = Result<(), teloxide::RequestError>;

/// The handler tree: messages and button presses; everything else is ignored.
pub fn schema() -> UpdateHandler<teloxide::RequestError> {
    dptree::entry()
        // Held until the handler is done: only then may the poller confirm the update.
        .map(|update: Update, app: BotApp| app.inbox.handling(update.id.0))
        .branch(Update::filter_message().endpoint(on_message))
        .branch(Update::filter_callback_query().endpoint(on_button))
}

/// Who is talking, resolved once per update.
#[derive(Clone)]
struct Ctx {
    user: User,
    chat: ChatId,
    first_name: String,
}

impl Ctx {
    fn language(&self) -> Language {
        self.user.language
    }
}

/// Finds or creates the user. `None` when the update has no human sender, or storage is
/// down (then the user is told to try again).
async fn resolve_user(bot: &TelegramBot, app: &BotApp, from: &teloxide::types::User, chat: ChatId) -> Option<Ctx> {
    if from.is_bot {
        return None;
    }
    let id = UserId(i64::try_from(from.id.0).ok()?);
    let language = Language::from_code(from.language_code.as_deref());
    let role = if app.is_admin(id) { Role::Admin } else { Role::User };
    let new = NewUser { id, language, plan: app.plans().default_plan().name.clone(), role };
    match app.deps.engine.people.user_on_contact(&new).await {
        Ok(user) => Some(Ctx { user, chat, first_name: from.first_name.clone() }),
        Err(error) => {
            tracing::warn!(error = %error, "cannot load user");
            let text = strings(language).refusal(&Refusal::TemporarilyUnavailable);
            let _ = bot.send_message(tg(chat), text).await;
            None
        }
    }
}

/// The flood gate's verdict for this sender, before anything is read or written.
fn flooded(app: &BotApp, from: &teloxide::types::User) -> Option<crate::app::Flooded> {
    let id = UserId(i64::try_from(from.id.0).ok()?);
    app.flood.check(id, std::time::Instant::now()).err()
}

/// Tells a flooding sender to wait, once per window, in their Telegram language.
async fn refuse_flood(
    bot: &TelegramBot,
    chat: ChatId,
    from: &teloxide::types::User,
    flooded: crate::app::Flooded,
) -> HandlerResult {
    if !flooded.tell {
        return Ok(());
    }
    let language = Language::from_code(from.language_code.as_deref());
    say(bot, chat, strings(language).refusal(&Refusal::RateLimited { retry_after_secs: flooded.retry_after_secs }))
        .await
}

fn tg(chat: ChatId) -> teloxide::types::ChatId {
    teloxide::types::ChatId(chat.0)
}

async fn say(bot: &TelegramBot, chat: ChatId, text: String) -> HandlerResult {
    // Telegram refuses messages over 4096 characters; long admin listings are cut.
    let text = if text.chars().count() > 4000 { text.chars().take(4000).collect::<String>() + "…" } else { text };
    bot.send_message(tg(chat), text).await.map(|_| ())
}

async fn on_message(bot: TelegramBot, msg: Message, update: Update, app: BotApp, handling: Handling) -> HandlerResult {
    let Some(from) = msg.from.as_ref() else { return Ok(()) };
    if !msg.chat.is_private() {
        // Group chats are out of scope: progress messages and quotas are per person.
        return Ok(());
    }
    // Before anything else: a flooded update costs no database write.
    if let Some(flooded) = flooded(&app, from) {
        return refuse_flood(&bot, ChatId(msg.chat.id.0), from, flooded).await;
    }
    let Some(ctx) = resolve_user(&bot, &app, from, ChatId(msg.chat.id.0)).await else { return Ok(()) };
    if ctx.user.blocked {
        return say(&bot, ctx.chat, strings(ctx.language()).refusal(&Refusal::Blocked)).await;
    }
    let key = IdempotencyKey::new(format!("tg:{}", update.id.0));

    // Photos and image documents: edits (albums are gathered first).
    if let Some(media) = input_media(&msg) {
        let media = match media {
            Ok(media) => media,
            Err(refusal) => return say(&bot, ctx.chat, strings(ctx.language()).refusal(&refusal)).await,
        };
        let caption = msg.caption().map(str::to_owned);
        if let Some(group) = msg.media_group_id() {
            gather_album(&app, group.0.clone(), &ctx, update.id.0, caption, media, handling);
            return Ok(());
        }
        submit_edit(&app, &ctx, key, caption.unwrap_or_default(), vec![media]).await;
        return Ok(());
    }

    let Some(text) = msg.text() else {
        return say(&bot, ctx.chat, strings(ctx.language()).unsupported_message()).await;
    };

    // A reply to one of our pictures edits it.
    if !text.starts_with('/')
        && let Some(replied) = msg.reply_to_message()
    {
        let from_us = replied.from.as_ref().is_some_and(|u| u.is_bot);
        match (from_us, input_media(replied)) {
            (true, Some(Ok(media))) => {
                submit_edit(&app, &ctx, key, text.to_owned(), vec![media]).await;
                return Ok(());
            }
            _ => return say(&bot, ctx.chat, strings(ctx.language()).reply_needs_image()).await,
        }
    }

    let username = match app.username.get() {
        Some(name) => name.clone(),
        None => {
            let name = bot.get_me().await?.username.clone().unwrap_or_default();
            app.username.get_or_init(|| name).clone()
        }
    };
    match parse_text(text, &username) {
        UserCommand::Start => say(&bot, ctx.chat, strings(ctx.language()).welcome(&ctx.first_name)).await,
        UserCommand::Help => say(&bot, ctx.chat, strings(ctx.language()).help()).await,
        UserCommand::Generate(prompt) => {
            generate(&app, &ctx, key, None, None, 1, prompt, None).await;
            Ok(())
        }
        UserCommand::Img(prompt) if prompt.is_empty() => say(&bot, ctx.chat, strings(ctx.language()).img_usage()).await,
        UserCommand::Img(prompt) => offer_models(&bot, &app, &ctx, prompt).await,
        UserCommand::Enhance(prompt) if prompt.is_empty() => {
            say(&bot, ctx.chat, strings(ctx.language()).enhance_usage()).await
        }
        UserCommand::Enhance(prompt) => enhance(&bot, &app, &ctx, key, prompt).await,
        UserCommand::Models => say(&bot, ctx.chat, models_text(&app, ctx.language())).await,
        UserCommand::Settings(change) => settings(&bot, &app, ctx, change).await,
        UserCommand::Balance => balance(&bot, &app, &ctx).await,
        UserCommand::History => history(&bot, &app, &ctx).await,
        UserCommand::Cancel => cancel_latest(&bot, &app, &ctx).await,
        UserCommand::Admin(command) => {
            if ctx.user.role != Role::Admin || !app.is_admin(ctx.user.id) {
                return say(&bot, ctx.chat, strings(ctx.language()).admins_only()).await;
            }
            let reply = admin::run(&bot, &app, command).await;
            admin::send(&bot, ctx.chat, reply).await
        }
        UserCommand::Unknown(detail) if detail.starts_with("usage:") && app.is_admin(ctx.user.id) => {
            say(&bot, ctx.chat, detail).await
        }
        UserCommand::Unknown(_) => say(&bot, ctx.chat, strings(ctx.language()).unknown_command()).await,
    }
}

/// The image a message carries: a photo (largest size) or an image document.
fn input_media(msg: &Message) -> Option<Result<MediaRef, Refusal>> {
    let MessageKind::Common(common) = &msg.kind else { return None };
    match &common.media_kind {
        MediaKind::Photo(photo) => {
            let best = photo.photo.iter().max_by_key(|p| u64::from(p.width) * u64::from(p.height))?;
            Some(Ok(MediaRef { file_id: best.file.id.0.clone(), size_bytes: Some(u64::from(best.file.size)) }))
        }
        MediaKind::Document(doc) => {
            let is_image = doc.document.mime_type.as_ref().is_some_and(|m| m.type_() == "image");
            if !is_image {
                return Some(Err(Refusal::NotAnImage));
            }
            Some(Ok(MediaRef {
                file_id: doc.document.file.id.0.clone(),
                size_bytes: Some(u64::from(doc.document.file.size)),
            }))
        }
        _ => None,
    }
}

fn gather_album(
    app: &BotApp,
    group: String,
    ctx: &Ctx,
    update_id: u32,
    caption: Option<String>,
    media: MediaRef,
    handling: Handling,
) {
    let mut albums = app.albums.lock().expect("albums lock");
    let first = !albums.contains_key(&group);
    let album = albums.entry(group.clone()).or_insert_with(|| Album {
        chat: ctx.chat,
        update_id,
        caption: None,
        media: Vec::new(),
        handling: Vec::new(),
    });
    album.media.push(media);
    album.handling.push(handling);
    if album.caption.is_none() {
        album.caption = caption;
    }
    drop(albums);
    if first {
        let app = app.clone();
        let user = ctx.user.clone();
        tokio::spawn(async move {
            tokio::time::sleep(app.config.album_wait).await;
            let Some(album) = app.albums.lock().expect("albums lock").remove(&group) else { return };
            let ctx = Ctx { user, chat: album.chat, first_name: String::new() };
            let key = IdempotencyKey::new(format!("tg:{}", album.update_id));
            submit_edit(&app, &ctx, key, album.caption.unwrap_or_default(), album.media).await;
            drop(album.handling);
        });
    }
}

async fn submit_edit(app: &BotApp, ctx: &Ctx, key: IdempotencyKey, prompt: String, media: Vec<MediaRef>) {
    let model = app.catalog().edit_model().id.clone();
    generate(app, ctx, key, Some(model), None, 1, prompt, Some(media)).await;
}

#[allow(clippy::too_many_arguments)] // One call site per way in; a struct would only rename them.
async fn generate(
    app: &BotApp,
    ctx: &Ctx,
    key: IdempotencyKey,
    model: Option<mediagen_domain::ModelId>,
    size: Option<ImageSize>,
    num_images: u8,
    prompt: String,
    media: Option<Vec<MediaRef>>,
) {
    let request = IntakeRequest {
        key,
        user: ctx.user.id,
        chat: ctx.chat,
        language: ctx.language(),
        model,
        prompt,
        size,
        num_images,
        input_media: media.unwrap_or_default(),
        seed: None,
        enhance: None,
    };
    // The engine tells the user what happened (queued or refused).
    let outcome = app.deps.engine.intake.submit(request).await;
    tracing::debug!(?outcome, "intake");
}

/// Image models the keyboards offer, in catalog order.
fn image_models(app: &BotApp) -> Vec<&mediagen_domain::catalog::ModelSpec> {
    app.catalog().enabled().filter(|m| m.kind == ModelKind::TextToImage).collect()
}

async fn offer_models(bot: &TelegramBot, app: &BotApp, ctx: &Ctx, prompt: String) -> HandlerResult {
    let pending = app.pending.put(ctx.user.id, prompt);
    let mut rows = Vec::new();
    for (model_index, model) in image_models(app).into_iter().enumerate().take(8) {
        let sizes: Vec<Option<ImageSize>> =
            if model.sizes.is_empty() { vec![None] } else { model.sizes.iter().copied().map(Some).take(3).collect() };
        let mut row = Vec::new();
        for (size_index, size) in sizes.into_iter().enumerate() {
            let mut request = PriceRequest::new(model.id.clone());
            request.size = size.or(model.default_size);
            let price = app.catalog().price(&request).map(|p| p.to_string()).unwrap_or_default();
            let label = match size {
                Some(size) => format!("{} {size} {price}", model.name),
                None => format!("{} {price}", model.name),
            };
            let action = ButtonAction::Pick {
                pending,
                model: u8::try_from(model_index).unwrap_or(u8::MAX),
                size: u8::try_from(size_index).unwrap_or(u8::MAX),
            };
            row.push(InlineKeyboardButton::callback(label, action.encode()));
        }
        rows.push(row);
    }
    bot.send_message(tg(ctx.chat), strings(ctx.language()).choose_model())
        .reply_markup(ReplyMarkup::InlineKeyboard(InlineKeyboardMarkup::new(rows)))
        .await
        .map(|_| ())
}

async fn enhance(bot: &TelegramBot, app: &BotApp, ctx: &Ctx, key: IdempotencyKey, prompt: String) -> HandlerResult {
    let request = EnhanceRequest { key, user: ctx.user.id, chat: ctx.chat, language: ctx.language(), prompt };
    // The engine told the user what happened (the rewrite, queued or refused).
    match app.deps.engine.intake.enhance(request).await {
        EnhanceOutcome::Cached { enhanced, .. } => offer_models(bot, app, ctx, enhanced).await,
        EnhanceOutcome::Queued { job, .. } => {
            // The rewrite comes when the queued LLM call ends; the chat is not held up meanwhile.
            let (bot, app, ctx) = (bot.clone(), app.clone(), ctx.clone());
            tokio::spawn(async move {
                if let Some(enhanced) = app.deps.engine.intake.await_rewrite(job).await
                    && let Err(error) = offer_models(&bot, &app, &ctx, enhanced).await
                {
                    tracing::warn!(%error, "model choice after a rewrite not sent");
                }
            });
            Ok(())
        }
        EnhanceOutcome::Duplicate { .. } | EnhanceOutcome::Refused(_) => Ok(()),
    }
}

fn models_text(app: &BotApp, language: Language) -> String {
    let mut text = strings(language).models_header();
    for model in app.catalog().enabled().filter(|m| m.kind.makes_images() || m.kind == ModelKind::TextToSpeech) {
        text.push_str(&format!("\n• {} ({}) — {}", model.name, model.id, model.pricing));
    }
    text
}

async fn settings(bot: &TelegramBot, app: &BotApp, mut ctx: Ctx, change: Option<SettingsChange>) -> HandlerResult {
    let s = strings(ctx.language());
    if let Some(change) = change {
        match change {
            SettingsChange::Model(model) => match app.catalog().get(&model) {
                Some(spec) if spec.enabled && spec.kind == ModelKind::TextToImage => {
                    ctx.user.settings.default_model = Some(model)
                }
                _ => return say(bot, ctx.chat, s.refusal(&Refusal::UnknownModel(model))).await,
            },
            SettingsChange::Size(size) => ctx.user.settings.default_size = Some(size),
        }
        if let Err(error) = app.deps.engine.people.save_user(&ctx.user).await {
            return storage_trouble(bot, &ctx, error).await;
        }
        say(bot, ctx.chat, s.saved()).await?;
    }
    show_settings(bot, app, &ctx.user, ctx.chat).await
}

async fn show_settings(bot: &TelegramBot, app: &BotApp, user: &User, chat: ChatId) -> HandlerResult {
    let s = strings(user.language);
    let model = user.settings.default_model.clone().unwrap_or_else(|| app.catalog().default_model().id.clone());
    let size = user.settings.default_size.map_or_else(|| "auto".to_owned(), |s| s.to_string());
    let keyboard = InlineKeyboardMarkup::new([[
        InlineKeyboardButton::callback(s.button(Button::ToggleFile), ButtonAction::ToggleFile.encode()),
        InlineKeyboardButton::callback(s.button(Button::ToggleEnhance), ButtonAction::ToggleEnhance.encode()),
        InlineKeyboardButton::callback(s.button(Button::SwitchLanguage), ButtonAction::SwitchLanguage.encode()),
    ]]);
    let text =
        s.settings(model.as_str(), &size, user.settings.send_as_file, user.settings.enhance_prompts, user.language);
    bot.send_message(tg(chat), text).reply_markup(ReplyMarkup::InlineKeyboard(keyboard)).await.map(|_| ())
}

async fn storage_trouble(bot: &TelegramBot, ctx: &Ctx, error: StorageError) -> HandlerResult {
    tracing::warn!(error = %error, "storage error in a command");
    say(bot, ctx.chat, strings(ctx.language()).refusal(&Refusal::TemporarilyUnavailable)).await
}

async fn balance(bot: &TelegramBot, app: &BotApp, ctx: &Ctx) -> HandlerResult {
    let usage = match app.deps.engine.people.usage_of(ctx.user.id).await {
        Ok(usage) => usage,
        Err(error) => return storage_trouble(bot, ctx, error).await,
    };
    let plan = app.plans().get(&ctx.user.plan).unwrap_or_else(|| app.plans().default_plan());
    let view = BalanceView {
        plan: plan.name.clone(),
        jobs_today: (usage.jobs_today, if ctx.user.role == Role::Admin { None } else { plan.daily_jobs }),
        spend_month: (usage.spend_this_month, if ctx.user.role == Role::Admin { None } else { plan.monthly_spend }),
        queued: usage.queued,
        in_flight: usage.in_flight,
    };
    say(bot, ctx.chat, strings(ctx.language()).balance(&view)).await
}

async fn history(bot: &TelegramBot, app: &BotApp, ctx: &Ctx) -> HandlerResult {
    let s = strings(ctx.language());
    let jobs = match app.deps.engine.people.recent_jobs(ctx.user.id, 10).await {
        Ok(jobs) => jobs,
        Err(error) => return storage_trouble(bot, ctx, error).await,
    };
    if jobs.is_empty() {
        return say(bot, ctx.chat, s.history_empty()).await;
    }
    let lines: Vec<HistoryLine> = jobs
        .iter()
        .map(|job| HistoryLine {
            job: job.id.0,
            model: job.spec.model.to_string(),
            state: job.state.name().to_owned(),
            prompt: job.spec.prompt.as_str().chars().take(60).collect(),
        })
        .collect();
    let mut text = s.history_header();
    for line in &lines {
        text.push_str(&format!("\n#{} · {} · {} · {}", line.job, line.state, line.model, line.prompt));
    }
    say(bot, ctx.chat, text).await?;
    // Re-send the latest pictures by Telegram file id, which never expires.
    let mut resent = 0;
    for job in jobs.iter().filter(|j| j.state == JobState::Succeeded) {
        let media = app.deps.engine.people.results_of(job.id).await.unwrap_or_default();
        for file_id in media.into_iter().filter_map(|m| m.telegram_file_id).take(1) {
            if resent >= 5 {
                return Ok(());
            }
            let photo = bot.send_photo(tg(ctx.chat), InputFile::file_id(FileId(file_id.clone()))).await;
            if photo.is_err() {
                // A document (full-quality result) cannot be re-sent as a photo.
                bot.send_document(tg(ctx.chat), InputFile::file_id(FileId(file_id))).await?;
            }
            resent += 1;
        }
    }
    Ok(())
}

async fn cancel_latest(bot: &TelegramBot, app: &BotApp, ctx: &Ctx) -> HandlerResult {
    let jobs = match app.deps.engine.people.recent_jobs(ctx.user.id, 20).await {
        Ok(jobs) => jobs,
        Err(error) => return storage_trouble(bot, ctx, error).await,
    };
    let Some(job) = jobs.iter().find(|j| !j.state.is_terminal()) else {
        return say(bot, ctx.chat, strings(ctx.language()).nothing_to_cancel()).await;
    };
    cancel_job(bot, app, ctx, job.id).await
}

async fn cancel_job(bot: &TelegramBot, app: &BotApp, ctx: &Ctx, job: JobId) -> HandlerResult {
    let s = strings(ctx.language());
    match app.deps.engine.intake.cancel(ctx.user.id, job).await {
        // The engine told the user.
        CancelOutcome::Canceled { .. } => Ok(()),
        CancelOutcome::TooLate { .. } | CancelOutcome::NotFound => say(bot, ctx.chat, s.nothing_to_cancel()).await,
        CancelOutcome::Unavailable => say(bot, ctx.chat, s.refusal(&Refusal::TemporarilyUnavailable)).await,
    }
}

async fn on_button(bot: TelegramBot, query: CallbackQuery, app: BotApp) -> HandlerResult {
    // Answer first: Telegram drops answers that come late ("query is too old").
    if let Err(error) = bot.answer_callback_query(query.id.clone()).await {
        tracing::debug!(error = %classify(error), "callback answer failed");
    }
    let Some(message) = query.regular_message() else { return Ok(()) };
    if !message.chat.is_private() {
        return Ok(());
    }
    if let Some(flooded) = flooded(&app, &query.from) {
        return refuse_flood(&bot, ChatId(message.chat.id.0), &query.from, flooded).await;
    }
    let Some(ctx) = resolve_user(&bot, &app, &query.from, ChatId(message.chat.id.0)).await else { return Ok(()) };
    let s = strings(ctx.language());
    if ctx.user.blocked {
        return say(&bot, ctx.chat, s.refusal(&Refusal::Blocked)).await;
    }
    let Some(action) = query.data.as_deref().and_then(ButtonAction::decode) else {
        return say(&bot, ctx.chat, s.button_expired()).await;
    };
    let key = IdempotencyKey::new(format!("cb:{}", query.id.0));
    match action {
        ButtonAction::Again(job) | ButtonAction::Variations(job) => {
            let Some(previous) = own_job(&app, &ctx, job).await else {
                return say(&bot, ctx.chat, s.button_expired()).await;
            };
            let max = app.catalog().get(&previous.spec.model).map_or(1, |m| m.max_images);
            let count = if matches!(action, ButtonAction::Variations(_)) { max.min(4) } else { 1 };
            let media = (!previous.spec.input_media.is_empty()).then(|| previous.spec.input_media.clone());
            generate(
                &app,
                &ctx,
                key,
                Some(previous.spec.model.clone()),
                previous.spec.size,
                u8::try_from(count).unwrap_or(1),
                previous.spec.prompt.as_str().to_owned(),
                media,
            )
            .await;
            Ok(())
        }
        ButtonAction::Edit(_) => say(&bot, ctx.chat, s.reply_needs_image()).await,
        ButtonAction::Cancel(job) => cancel_job(&bot, &app, &ctx, job).await,
        ButtonAction::Pick { pending, model, size } => {
            let Some(prompt) = app.pending.get(pending, ctx.user.id) else {
                return say(&bot, ctx.chat, s.button_expired()).await;
            };
            let models = image_models(&app);
            let Some(spec) = models.get(usize::from(model)) else {
                return say(&bot, ctx.chat, s.button_expired()).await;
            };
            let size = spec.sizes.get(usize::from(size)).copied();
            generate(&app, &ctx, key, Some(spec.id.clone()), size, 1, prompt, None).await;
            Ok(())
        }
        ButtonAction::ToggleFile | ButtonAction::ToggleEnhance | ButtonAction::SwitchLanguage => {
            let mut user = ctx.user.clone();
            match action {
                ButtonAction::ToggleFile => user.settings.send_as_file = !user.settings.send_as_file,
                ButtonAction::ToggleEnhance => user.settings.enhance_prompts = !user.settings.enhance_prompts,
                _ => {
                    user.language = match user.language {
                        Language::En => Language::Ru,
                        Language::Ru => Language::En,
                    }
                }
            }
            if let Err(error) = app.deps.engine.people.save_user(&user).await {
                return storage_trouble(&bot, &ctx, error).await;
            }
            show_settings(&bot, &app, &user, ctx.chat).await
        }
    }
}

/// The job, if it belongs to the user pressing the button.
async fn own_job(app: &BotApp, ctx: &Ctx, job: JobId) -> Option<mediagen_domain::Job> {
    app.deps.engine.people.job_of(ctx.user.id, job).await
}
