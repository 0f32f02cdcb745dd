//! Chat adapters, one module per platform behind a cargo feature. Each turns its platform's
//! events into [`opsbot_core::Envelope`]s and renders [`opsbot_core::Reply`]s natively; none
//! knows the engine or the store (the runtime in `opsbot_engine::chat` supervises them).

pub mod terminal;

#[cfg(feature = "irc")]
pub mod irc;
#[cfg(feature = "matrix")]
pub mod matrix;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "xmpp")]
pub mod xmpp;

use opsbot_core::Adapter;
use opsbot_core::config::AdapterConfig;
#[cfg(any(feature = "irc", feature = "matrix", feature = "xmpp"))]
use opsbot_core::config::AdapterKind;
use std::sync::Arc;

/// Builds the adapter a config table describes; `people` are the accounts (without the
/// adapter's name) that `[people.*]` lists on it (a Matrix adapter with `invites = "people"`
/// joins rooms they invite it to). An error says what this build lacks.
pub fn build(cfg: &AdapterConfig, people: &[String]) -> Result<Arc<dyn Adapter>, String> {
    let _ = people;
    match &cfg.kind {
        #[cfg(feature = "irc")]
        AdapterKind::Irc(c) => Ok(Arc::new(irc::IrcAdapter::new(&cfg.name, c.clone())?)),
        #[cfg(feature = "matrix")]
        AdapterKind::Matrix(c) => Ok(Arc::new(matrix::MatrixAdapter::new(&cfg.name, c.clone(), people.to_vec())?)),
        #[cfg(feature = "xmpp")]
        AdapterKind::Xmpp(c) => Ok(Arc::new(xmpp::XmppAdapter::new(&cfg.name, c.clone())?)),
        #[allow(unreachable_patterns)]
        other => Err(format!(
            "adapter `{}` is of type `{}`, which this build of opsbot leaves out; build with `--features {}`",
            cfg.name,
            other.type_name(),
            other.type_name()
        )),
    }
}

/// A reply as plain text lines (no colour), for platforms without rich text and for the plain
/// body that goes with rich text.
pub fn plain(reply: &opsbot_core::Reply) -> String {
    terminal::render(reply, false)
}
