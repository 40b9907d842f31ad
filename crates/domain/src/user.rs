//! People who use the bot, their role and their preferences.

use crate::ids::UserId;
use crate::model::{ImageSize, ModelId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The two languages the bot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// English, the fallback.
    #[default]
    En,
    /// Russian.
    Ru,
}

impl Language {
    /// From a Telegram `language_code` such as `ru`, `ru-RU` or `en-GB`; anything else is English.
    pub fn from_code(code: Option<&str>) -> Self {
        match code.map(|c| c.to_ascii_lowercase()) {
            Some(c) if c == "ru" || c.starts_with("ru-") || c == "uk" || c == "be" => Language::Ru,
            _ => Language::En,
        }
    }

    /// The two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Ru => "ru",
        }
    }
}

impl FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "en" => Ok(Language::En),
            "ru" => Ok(Language::Ru),
            other => Err(format!("unknown language {other:?}: use en or ru")),
        }
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A regular user, bound by their plan.
    #[default]
    User,
    /// An operator: no quotas, admin commands.
    Admin,
}

/// How the user likes results.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UserSettings {
    /// Model used for plain text; `None` means the catalog's default.
    pub default_model: Option<ModelId>,
    /// Size used when none is chosen; `None` means the model's default.
    pub default_size: Option<ImageSize>,
    /// Send results as documents (full quality) rather than compressed photos.
    pub send_as_file: bool,
    /// Rewrite prompts with the LLM before generating.
    pub enhance_prompts: bool,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Telegram user id.
    pub id: UserId,
    /// Language of every message to them.
    pub language: Language,
    /// Name of their quota plan (see [`crate::quota`]).
    pub plan: String,
    /// User or admin.
    pub role: Role,
    /// Blocked users get a refusal and nothing else.
    pub blocked: bool,
    /// Preferences.
    pub settings: UserSettings,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::User => "user",
            Role::Admin => "admin",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_from_telegram_codes() {
        assert_eq!(Language::from_code(Some("ru")), Language::Ru);
        assert_eq!(Language::from_code(Some("ru-RU")), Language::Ru);
        assert_eq!(Language::from_code(Some("en-GB")), Language::En);
        assert_eq!(Language::from_code(Some("de")), Language::En);
        assert_eq!(Language::from_code(None), Language::En);
        assert_eq!("RU".parse::<Language>(), Ok(Language::Ru));
        assert!("fr".parse::<Language>().is_err());
    }
}
