//! Chat adapters, one module per platform behind a cargo feature. Each turns its platform's
//! events into [`opsbot_core::Envelope`]s and renders [`opsbot_core::Reply`]s natively; none
//! knows the engine or the store (the runtime in `opsbot_engine::chat` supervises them).

pub mod terminal;

#[cfg(feature = "irc")]
pub mod irc;
#[cfg(feature = "matrix")]
pub mod matrix;
#[cfg(feature = "mattermost")]
pub mod mattermost;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "xmpp")]
pub mod xmpp;

use opsbot_core::Adapter;
use opsbot_core::config::AdapterConfig;
#[cfg(any(feature = "irc", feature = "matrix", feature = "xmpp", feature = "slack", feature = "mattermost"))]
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
        #[cfg(feature = "slack")]
        AdapterKind::Slack(c) => Ok(Arc::new(slack::SlackAdapter::new(&cfg.name, c.clone())?)),
        #[cfg(feature = "mattermost")]
        AdapterKind::Mattermost(c) => Ok(Arc::new(mattermost::MattermostAdapter::new(&cfg.name, c.clone())?)),
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

/// Largest image opsbot uploads from a `data:` URL (Matrix, Slack, Mattermost).
#[cfg(any(feature = "matrix", feature = "slack", feature = "mattermost"))]
pub const MAX_IMAGE: usize = 10 * 1024 * 1024;

/// The bytes and media type of a `data:` URL, at most [`MAX_IMAGE`] bytes.
#[cfg(any(feature = "matrix", feature = "slack", feature = "mattermost"))]
pub(crate) fn decode_data_url(url: &str) -> Result<(Vec<u8>, String), String> {
    let rest = url
        .get(5..)
        .filter(|_| url[..5].eq_ignore_ascii_case("data:"))
        .ok_or("not a data: URL")?;
    let (meta, data) = rest.split_once(',').ok_or("a data: URL without a comma")?;
    let b64 = meta.ends_with(";base64");
    let mime = meta.trim_end_matches(";base64");
    let mime = if mime.is_empty() { "text/plain" } else { mime };
    if data.len() > MAX_IMAGE * 2 {
        return Err("image larger than 10 MiB".into());
    }
    let bytes = if b64 {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| format!("bad base64: {e}"))?
    } else {
        data.as_bytes().to_vec()
    };
    if bytes.len() > MAX_IMAGE {
        return Err("image larger than 10 MiB".into());
    }
    Ok((bytes, mime.to_string()))
}

/// Why a response body could not be read whole.
#[cfg(any(feature = "matrix", feature = "slack", feature = "mattermost"))]
pub(crate) enum BodyError {
    /// Larger than the limit given: the rest was not read.
    TooLarge(usize),
    /// The connection failed while reading (the URL left out of the message).
    Network(String),
}

/// Reads a response body, but never more than `max` bytes (a hostile or broken server cannot
/// make opsbot buffer without bound).
#[cfg(any(feature = "matrix", feature = "slack", feature = "mattermost"))]
pub(crate) async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if buf.len() + c.len() > max {
                    return Err(BodyError::TooLarge(max));
                }
                buf.extend_from_slice(&c);
            }
            Ok(None) => return Ok(buf),
            Err(e) => return Err(BodyError::Network(e.without_url().to_string())),
        }
    }
}
