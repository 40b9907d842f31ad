//! The user's prompt, validated once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A prompt that is non-empty, within the length limit and free of control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prompt(String);

/// Why a prompt was refused; each variant reads well to a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Nothing but whitespace.
    #[error("the prompt is empty: describe what you want to see")]
    Empty,
    /// Longer than the limit.
    #[error("the prompt is {actual} characters long; the limit is {limit}")]
    TooLong {
        /// Characters given.
        actual: usize,
        /// Characters allowed.
        limit: usize,
    },
}

impl Prompt {
    /// Longest prompt accepted, in characters (models take far less, but users paste).
    pub const MAX_CHARS: usize = 2_000;

    /// Trims, turns control characters (other than newlines) into spaces, and checks length.
    ///
    /// # Errors
    /// [`PromptError::Empty`] for blank text, [`PromptError::TooLong`] past [`Self::MAX_CHARS`].
    pub fn parse(raw: &str) -> Result<Self, PromptError> {
        let cleaned: String = raw.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
        let trimmed = cleaned.trim();
        if trimmed.is_empty() {
            return Err(PromptError::Empty);
        }
        let actual = trimmed.chars().count();
        if actual > Self::MAX_CHARS {
            return Err(PromptError::TooLong { actual, limit: Self::MAX_CHARS });
        }
        Ok(Prompt(trimmed.to_owned()))
    }

    /// The prompt text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length in characters (what per-character prices count).
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }

    /// Lower-case, single-spaced form: the cache key for prompt enhancement, so that
    /// "A  Cat" and "a cat" share one LLM call.
    pub fn normalized(&self) -> String {
        self.0.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>().join(" ")
    }
}

impl TryFrom<String> for Prompt {
    type Error = PromptError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Prompt::parse(&value)
    }
}

impl From<Prompt> for String {
    fn from(value: Prompt) -> Self {
        value.0
    }
}

impl fmt::Display for Prompt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_cleans_control_characters() {
        let p = Prompt::parse("  a\tcat\u{0007}\non a mat  ").unwrap();
        assert_eq!(p.as_str(), "a cat \non a mat");
    }

    #[test]
    fn refuses_blank_and_overlong() {
        assert_eq!(Prompt::parse(" \t\u{0000} "), Err(PromptError::Empty));
        let long = "x".repeat(Prompt::MAX_CHARS + 1);
        assert_eq!(
            Prompt::parse(&long),
            Err(PromptError::TooLong { actual: Prompt::MAX_CHARS + 1, limit: Prompt::MAX_CHARS })
        );
        assert!(Prompt::parse(&"é".repeat(Prompt::MAX_CHARS)).is_ok(), "limit counts characters, not bytes");
    }

    #[test]
    fn normalized_form_ignores_case_and_spacing() {
        let a = Prompt::parse("A  Cat\non  a MAT").unwrap();
        let b = Prompt::parse("a cat on a mat").unwrap();
        assert_eq!(a.normalized(), b.normalized());
    }
}
