//! English.

use super::{BalanceView, Button, Strings, duration_en, when};
use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{FailureReason, Language, Money};
use mediagen_ports::Refusal;

/// English strings.
pub(super) struct En;

impl Strings for En {
    fn welcome(&self, first_name: &str) -> String {
        format!(
            "Hi, {first_name}! I turn words into pictures.\n\n\
             Send me a description and I'll draw it. Send a photo with a caption to edit it.\n\
             /help shows everything I can do."
        )
    }

    fn help(&self) -> String {
        "What I can do:\n\
         • Plain text — a picture with your default model. Try: a red fox in fresh snow, watercolor\n\
         • /img <prompt> — choose the model and size (prices on the buttons)\n\
         • A photo (or an album) with a caption — edit it. Try a photo with: make it look like a comic\n\
         • Reply to one of my pictures with text — edit that picture\n\
         • /enhance <prompt> — let me improve your prompt first\n\
         • /models — models and prices\n\
         • /settings — default model, size, photo or file, prompt enhancement, language\n\
         • /balance — what you have left today and this month\n\
         • /history — your latest pictures\n\
         • /cancel — cancel your latest waiting job"
            .to_owned()
    }

    fn queued(&self, job: i64, position: u32, total: u32, eta_secs: u32, price: Money) -> String {
        format!(
            "Job #{job} is in the queue: position {position} of {total}, about {}.\nHeld: {price}",
            duration_en(eta_secs)
        )
    }

    fn generating(&self, job: i64, model: &str) -> String {
        format!("Job #{job}: generating with {model}…")
    }

    fn done(&self, job: i64, charged: Money) -> String {
        format!("Job #{job} is done. Charged: {charged}")
    }

    fn failed(&self, job: i64, reason: &FailureReason, refunded: Money) -> String {
        let why = match reason {
            FailureReason::ContentPolicy => "the content checker refused this request. Please rephrase it.".to_owned(),
            FailureReason::InvalidInput(detail) => format!("the model could not use the input ({detail})."),
            FailureReason::Upstream(_) => "the image service kept failing. Please try again later.".to_owned(),
            FailureReason::AccountLocked => {
                "no image account can take work right now. The operator is informed.".to_owned()
            }
            FailureReason::Timeout => "it took too long.".to_owned(),
        };
        format!("Job #{job} failed: {why}\nRefunded: {refunded}")
    }

    fn canceled(&self, job: i64, refunded: Money) -> String {
        format!("Job #{job} is canceled. Refunded: {refunded}")
    }

    fn quota(&self, refusal: &QuotaRefusal) -> String {
        match refusal {
            QuotaRefusal::DailyJobs { limit, used, request_cost, resets_at } => format!(
                "Daily limit reached: {used} of {limit} pictures today. It resets at {}. (This one would cost {request_cost}.)",
                when(*resets_at)
            ),
            QuotaRefusal::MonthlySpend { limit, spent, request_cost, resets_at } => format!(
                "Monthly spending limit: {spent} of {limit} used, and this request costs {request_cost}. It resets at {}.",
                when(*resets_at)
            ),
            QuotaRefusal::QueueFull { limit, queued, request_cost } => format!(
                "You already have {queued} of {limit} jobs waiting. Send this again when one of them starts. (It would cost {request_cost}.)"
            ),
        }
    }

    fn refusal(&self, refusal: &Refusal) -> String {
        match refusal {
            Refusal::Quota(quota) => self.quota(quota),
            Refusal::Blocked => "Sorry, your access to this bot is suspended.".to_owned(),
            Refusal::UnknownModel(model) => format!("I don't know the model {model}. /models lists the ones I have."),
            Refusal::BadPrompt(why) => format!("I can't use that prompt: {why}."),
            Refusal::SizeNotAllowed { requested, allowed } => {
                format!("Size {requested} is not available for this model. Choose one of: {}.", allowed.join(", "))
            }
            Refusal::TooManyImages { given, max } => {
                format!("You sent {given} images; this model takes at most {max}. Send fewer and try again.")
            }
            Refusal::FileTooLarge { size, max } => format!(
                "That file is {:.1} MB; the limit is {:.1} MB. Send a smaller one.",
                *size as f64 / 1_048_576.0,
                *max as f64 / 1_048_576.0
            ),
            Refusal::NotAnImage => {
                "That file is not an image I can read. Send a photo or a JPEG/PNG/WebP file.".to_owned()
            }
            Refusal::RateLimited { retry_after_secs } => {
                format!("Too many requests at once. Please wait {} and try again.", duration_en(*retry_after_secs))
            }
            Refusal::TemporarilyUnavailable => {
                "I can't accept new requests for a moment. Nothing was charged; please try again in a minute."
                    .to_owned()
            }
        }
    }

    fn enhanced(&self, original: &str, enhanced: &str) -> String {
        format!("Your prompt:\n{original}\n\nImproved:\n{enhanced}")
    }

    fn models_header(&self) -> String {
        "Models and prices:".to_owned()
    }

    fn img_usage(&self) -> String {
        "Write the prompt after the command, e.g. /img a lighthouse at dusk".to_owned()
    }

    fn enhance_usage(&self) -> String {
        "Write the prompt after the command, e.g. /enhance a cat in space".to_owned()
    }

    fn choose_model(&self) -> String {
        "Choose a model and size:".to_owned()
    }

    fn settings(&self, model: &str, size: &str, as_file: bool, enhance: bool, language: Language) -> String {
        format!(
            "Your settings:\n• Default model: {model}\n• Size: {size}\n• Results as: {}\n• Prompt enhancement: {}\n• Language: {}\n\nTo change the model: /settings model <id>; the size: /settings size 1024x1024.",
            if as_file { "files (full quality)" } else { "photos" },
            if enhance { "on" } else { "off" },
            language.code()
        )
    }

    fn saved(&self) -> String {
        "Saved.".to_owned()
    }

    fn balance(&self, view: &BalanceView) -> String {
        let jobs_cap = view.jobs_today.1.map_or("no limit".to_owned(), |c| c.to_string());
        let spend_cap = view.spend_month.1.map_or("no limit".to_owned(), |c| c.to_string());
        format!(
            "Plan: {}\nToday: {} of {jobs_cap} pictures\nThis month: {} of {spend_cap}\nWaiting: {}, running: {}",
            view.plan, view.jobs_today.0, view.spend_month.0, view.queued, view.in_flight
        )
    }

    fn history_empty(&self) -> String {
        "No pictures yet. Send me a description!".to_owned()
    }

    fn history_header(&self) -> String {
        "Your latest jobs:".to_owned()
    }

    fn nothing_to_cancel(&self) -> String {
        "You have no waiting or running job to cancel.".to_owned()
    }

    fn cancel_requested(&self, job: i64) -> String {
        format!("Job #{job} is already running; I asked the service to stop it.")
    }

    fn button_expired(&self) -> String {
        "This button has expired. Send the request again.".to_owned()
    }

    fn admins_only(&self) -> String {
        "Sorry, that command is for the bot's operators.".to_owned()
    }

    fn unknown_command(&self) -> String {
        "I don't know that command. /help lists what I can do.".to_owned()
    }

    fn unsupported_message(&self) -> String {
        "I can only use text and images. Send a description, or a photo with a caption.".to_owned()
    }

    fn reply_needs_image(&self) -> String {
        "Reply to one of my pictures to edit it, or send a new description.".to_owned()
    }

    fn button(&self, button: Button) -> String {
        match button {
            Button::Again => "🔁 Again",
            Button::Variations => "🎲 Variations",
            Button::Edit => "✏️ Edit",
            Button::Generate => "🎨 Generate",
            Button::Cancel => "✖ Cancel",
            Button::ToggleFile => "📎 Photo / file",
            Button::ToggleEnhance => "✨ Enhancement on/off",
            Button::SwitchLanguage => "🌐 Русский",
        }
        .to_owned()
    }
}
