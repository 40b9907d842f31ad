//! Identifiers: small newtypes so a user id is never passed where a chat id belongs.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A person, by their Telegram user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A chat the bot writes into (a private chat's id equals the user's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChatId(pub i64);

/// A job in our queue, assigned by storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

/// A fal account, by the operator's name for it (e.g. `main`, `backup`).
///
/// Capacity belongs to the account; an account may have several keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccountId(String);

/// fal's id for a request accepted into its queue.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(String);

/// What makes a request unique at the front end (e.g. `tg:<update id>`), so a
/// redelivered update creates no second job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

macro_rules! string_id {
    ($name:ident, $what:literal) => {
        impl $name {
            #[doc = concat!("Wraps ", $what, ".")]
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(AccountId, "an account name");
string_id!(RequestId, "a fal request id");
string_id!(IdempotencyKey, "a front end's unique request key");

macro_rules! int_id {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

int_id!(UserId);
int_id!(ChatId);
int_id!(JobId);
