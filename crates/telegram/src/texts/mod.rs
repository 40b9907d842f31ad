//! Every user-facing string, one file per language. The engine speaks in notices (data);
//! this is the only place they become words.

mod en;
mod ru;

use mediagen_domain::quota::QuotaRefusal;
use mediagen_domain::{FailureReason, Language, Money, Timestamp};
use mediagen_ports::{Refusal, UserNotice};

/// A user's balance, as `/balance` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceView {
    /// The plan's name.
    pub plan: String,
    /// Jobs used today and the daily cap.
    pub jobs_today: (u32, Option<u32>),
    /// Spend this month and the monthly cap.
    pub spend_month: (Money, Option<Money>),
    /// Jobs waiting and running.
    pub queued: u32,
    /// Jobs running.
    pub in_flight: u32,
}

/// One line of `/history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// Job number.
    pub job: i64,
    /// Model name.
    pub model: String,
    /// State name (`succeeded`, `failed`, …).
    pub state: String,
    /// The prompt, shortened.
    pub prompt: String,
}

/// The strings of one language.
pub trait Strings: Sync {
    /// Greeting for `/start`.
    fn welcome(&self, first_name: &str) -> String;
    /// `/help`: short, with examples.
    fn help(&self) -> String;
    /// Accepted, waiting in the queue.
    fn queued(&self, job: i64, position: u32, total: u32, eta_secs: u32, price: Money) -> String;
    /// Running at fal.
    fn generating(&self, job: i64, model: &str) -> String;
    /// Delivered.
    fn done(&self, job: i64, charged: Money) -> String;
    /// Ended without a result.
    fn failed(&self, job: i64, reason: &FailureReason, refunded: Money) -> String;
    /// Canceled.
    fn canceled(&self, job: i64, refunded: Money) -> String;
    /// A plan limit, with when it resets.
    fn quota(&self, refusal: &QuotaRefusal) -> String;
    /// Any other refusal.
    fn refusal(&self, refusal: &Refusal) -> String;
    /// The LLM's rewrite of a prompt.
    fn enhanced(&self, original: &str, enhanced: &str) -> String;
    /// Header of `/models`.
    fn models_header(&self) -> String;
    /// `/img` without a prompt.
    fn img_usage(&self) -> String;
    /// `/enhance` without a prompt.
    fn enhance_usage(&self) -> String;
    /// Asks which model and size to use for a prompt.
    fn choose_model(&self) -> String;
    /// `/settings` summary.
    fn settings(&self, model: &str, size: &str, as_file: bool, enhance: bool, language: Language) -> String;
    /// Confirmation after a settings change.
    fn saved(&self) -> String;
    /// `/balance`.
    fn balance(&self, view: &BalanceView) -> String;
    /// `/history` with no jobs.
    fn history_empty(&self) -> String;
    /// `/history` header.
    fn history_header(&self) -> String;
    /// `/cancel` found nothing to cancel.
    fn nothing_to_cancel(&self) -> String;
    /// `/cancel` of a job at fal: requested.
    fn cancel_requested(&self, job: i64) -> String;
    /// A button whose context is gone (restart, forged data).
    fn button_expired(&self) -> String;
    /// An admin command from a non-admin.
    fn admins_only(&self) -> String;
    /// An unknown command.
    fn unknown_command(&self) -> String;
    /// A message type the bot cannot use (stickers, voice, …).
    fn unsupported_message(&self) -> String;
    /// A reply to something that is not one of our images.
    fn reply_needs_image(&self) -> String;
    /// Button labels: again, variations, edit, generate, cancel.
    fn button(&self, button: Button) -> String;
}

/// Buttons shown under messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Button {
    /// Same prompt, new seed.
    Again,
    /// Same prompt, several images.
    Variations,
    /// Edit this image (reply with text).
    Edit,
    /// Generate the (enhanced) prompt.
    Generate,
    /// Cancel a queued job.
    Cancel,
    /// Settings: toggle photo/file.
    ToggleFile,
    /// Settings: toggle prompt enhancement.
    ToggleEnhance,
    /// Settings: switch language.
    SwitchLanguage,
}

/// The strings for `language`.
pub fn strings(language: Language) -> &'static dyn Strings {
    match language {
        Language::En => &en::En,
        Language::Ru => &ru::Ru,
    }
}

/// Renders an engine notice in `language`.
pub fn render_notice(language: Language, notice: &UserNotice) -> String {
    let s = strings(language);
    match notice {
        UserNotice::Queued { job, position, total, eta_secs, price } => {
            s.queued(job.0, *position, *total, *eta_secs, *price)
        }
        UserNotice::Generating { job, model } => s.generating(job.0, model.as_str()),
        UserNotice::Done { job, charged } => s.done(job.0, *charged),
        UserNotice::Failed { job, reason, refunded } => s.failed(job.0, reason, *refunded),
        UserNotice::Canceled { job, refunded } => s.canceled(job.0, *refunded),
        UserNotice::Refused(Refusal::Quota(quota)) => s.quota(quota),
        UserNotice::Refused(refusal) => s.refusal(refusal),
        UserNotice::EnhancedPrompt { original, enhanced } => s.enhanced(original, enhanced),
    }
}

/// `2026-11-26 00:00 UTC`: absolute, so it reads right whenever it is read.
pub(crate) fn when(at: Timestamp) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `about 40 s` / `about 3 min`.
pub(crate) fn duration_en(secs: u32) -> String {
    if secs < 90 { format!("{secs} s") } else { format!("{} min", secs.div_ceil(60)) }
}

/// `40 с` / `3 мин`.
pub(crate) fn duration_ru(secs: u32) -> String {
    if secs < 90 { format!("{secs} с") } else { format!("{} мин", secs.div_ceil(60)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediagen_domain::{JobId, ModelId};

    fn every_notice() -> Vec<UserNotice> {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z").unwrap().to_utc();
        vec![
            UserNotice::Queued { job: JobId(7), position: 3, total: 9, eta_secs: 40, price: Money::from_cents(4) },
            UserNotice::Generating { job: JobId(7), model: ModelId::new("fal-ai/flux/schnell") },
            UserNotice::Done { job: JobId(7), charged: Money::from_cents(4) },
            UserNotice::Failed { job: JobId(7), reason: FailureReason::ContentPolicy, refunded: Money::from_cents(4) },
            UserNotice::Canceled { job: JobId(7), refunded: Money::from_cents(4) },
            UserNotice::Refused(Refusal::Quota(QuotaRefusal::DailyJobs {
                limit: 20,
                used: 20,
                request_cost: Money::from_cents(4),
                resets_at: now + chrono::TimeDelta::hours(14),
            })),
            UserNotice::Refused(Refusal::TooManyImages { given: 5, max: 3 }),
            UserNotice::Refused(Refusal::TemporarilyUnavailable),
            UserNotice::EnhancedPrompt { original: "cat".into(), enhanced: "a fluffy cat".into() },
        ]
    }

    #[test]
    fn every_notice_renders_in_both_languages_and_differs_between_them() {
        for notice in every_notice() {
            let en = render_notice(Language::En, &notice);
            let ru = render_notice(Language::Ru, &notice);
            assert!(!en.trim().is_empty() && !ru.trim().is_empty(), "{notice:?}");
            assert_ne!(en, ru, "{notice:?} is not translated");
        }
    }

    #[test]
    fn quota_refusal_says_when_it_resets_and_what_it_costs() {
        let notice = &every_notice()[5];
        let en = render_notice(Language::En, notice);
        assert!(en.contains("2026-11-26 00:00 UTC"), "{en}");
        assert!(en.contains("20"), "{en}");
        let ru = render_notice(Language::Ru, notice);
        assert!(ru.contains("2026-11-26 00:00 UTC"), "{ru}");
    }

    #[test]
    fn queued_shows_position_wait_and_price() {
        let en = render_notice(Language::En, &every_notice()[0]);
        assert!(en.contains("3") && en.contains("9") && en.contains("40 s") && en.contains("$0.0400"), "{en}");
    }
}
