//! What an adapter hands the engine: who said what, where.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A platform account, always by the platform's stable id (never a display name).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct UserId {
    /// Adapter name, e.g. `terminal`, `slack`, `matrix`.
    pub platform: String,
    /// The platform's stable user id, e.g. `U024BE7LH` or `@ana:example.org`.
    pub id: String,
}

impl UserId {
    /// Builds a user id from platform and stable id.
    pub fn new(platform: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            id: id.into(),
        }
    }

    /// Parses `platform:id` (the id may itself contain colons).
    pub fn parse(s: &str) -> Option<Self> {
        let (p, id) = s.split_once(':')?;
        (!p.is_empty() && !id.is_empty()).then(|| Self::new(p, id))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.id)
    }
}

/// A conversation: the adapter, the channel (or direct chat) and optionally a thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Place {
    /// Adapter name that owns the conversation.
    pub platform: String,
    /// Channel / room / direct-chat id on that platform.
    pub channel: String,
    /// Thread id, where the platform has threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl Place {
    /// A place without a thread.
    pub fn new(platform: impl Into<String>, channel: impl Into<String>) -> Self {
        Self {
            platform: platform.into(),
            channel: channel.into(),
            thread: None,
        }
    }

    /// A stable text key for storage (`platform/channel[/thread]`).
    pub fn key(&self) -> String {
        match &self.thread {
            Some(t) => format!("{}/{}/{}", self.platform, self.channel, t),
            None => format!("{}/{}", self.platform, self.channel),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One incoming message (or button press), normalised by an adapter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Who sent it.
    pub user: UserId,
    /// The sender's display name, for replies only — never for identity.
    pub display_name: Option<String>,
    /// Where it was said.
    pub place: Place,
    /// Whether this is a direct (one-to-one) conversation with the bot.
    pub direct: bool,
    /// Whether the platform itself flagged a mention of the bot (e.g. Slack `app_mention`).
    pub mentioned: bool,
    /// The text as typed (for a button: the command the button carries).
    pub text: String,
    /// Set when this envelope comes from pressing a button; holds the button's id.
    pub button: Option<String>,
}

impl Envelope {
    /// A direct text message, the common case for terminal and CLI.
    pub fn direct(user: UserId, place: Place, text: impl Into<String>) -> Self {
        Self {
            user,
            display_name: None,
            place,
            direct: true,
            mentioned: false,
            text: text.into(),
            button: None,
        }
    }
}
