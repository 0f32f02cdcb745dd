//! The `Adapter` trait: a chat platform seen from opsbot.

use crate::envelope::{Envelope, Place};
use crate::reply::Reply;
use tokio::sync::mpsc;

/// What a platform can do; the presenter degrades gracefully for what it cannot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Edit a message already sent (live job cards).
    pub edit: bool,
    /// Threads.
    pub threads: bool,
    /// Rich text beyond plain lines.
    pub rich_text: bool,
    /// Clickable buttons.
    pub buttons: bool,
    /// File uploads.
    pub files: bool,
    /// Reactions.
    pub reactions: bool,
    /// Direct messages.
    pub direct: bool,
}

/// A chat platform connection. Adapters speak `Envelope` in and `Reply` out, nothing more.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// The adapter's name, used as `platform` in ids and places.
    fn name(&self) -> &str;
    /// What it can render.
    fn capabilities(&self) -> Capabilities;
    /// Runs until shutdown, sending every incoming message to `inbox`.
    async fn run(&self, inbox: mpsc::Sender<Envelope>) -> Result<(), String>;
    /// Delivers a reply to a place.
    async fn send(&self, place: &Place, reply: &Reply) -> Result<(), String>;
}
