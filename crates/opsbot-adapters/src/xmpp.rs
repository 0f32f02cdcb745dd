//! XMPP: a client account that chats one-to-one and in multi-user chat rooms (XEP-0045).
//!
//! Built on tokio-xmpp 6's XML stream, SASL step and xmpp-parsers' stanza types; the transport
//! (STARTTLS with opsbot's rustls config) and the session loop are ours — see [`connect`] for
//! why tokio-xmpp's `Client` does not fit (its own TLS roots, endless internal reconnects).
//!
//! - Connects with STARTTLS when offered (our rustls config: the system's roots plus `tls_ca`;
//!   the certificate must match the JID's domain); a server that offers no STARTTLS is refused
//!   unless `allow_plain = true`. SASL per tokio-xmpp (SCRAM-SHA-256/-1, PLAIN). Resource
//!   `opsbot`, so a reconnect replaces a lingering old session instead of doubling it in rooms.
//! - Sends initial presence, joins each room asking for no history (`<history
//!   maxstanzas='0'/>`; `_` is appended to the nick on a 409 conflict), then reports connected.
//! - Incoming: `chat` (or `normal`) messages from an account are direct, user id = the sender's
//!   bare JID; `groupchat` messages in a joined room: user id = the occupant's real bare JID
//!   when the room shows it (non-anonymous rooms), else the occupant JID `room@service/nick`
//!   (spoofable by nick reuse: configure rooms non-anonymous). A nick's real JID is only what the
//!   room said in the bot's current stay (`Room::occupants`). Delayed (XEP-0203) messages
//!   are history and skipped, so are the bot's own reflected messages and bodies over 64 KiB.
//!   Private messages through a room, messages from the bot's own account and messages wrapping
//!   others (carbons, forwards, archive results) are never commands and are skipped whole.
//!   Stanzas the XML parser cannot survive are dropped before it by [`guard`].
//! - Outgoing: plain text bodies (XHTML-IM, XEP-0071, is deprecated), split at 48 KiB; edits are
//!   XEP-0308 corrections naming the original message id. Clients without XEP-0308 show a
//!   correction as a new message, and XEP-0308 strictly covers only the *last* message (a job
//!   card often is not); most clients accept older ones, some ignore them.
//! - Rooms the bot is not in (refused, kicked, destroyed) are tried again every minute; posts to
//!   them are `Unavailable` meanwhile, or `Rejected` once the room refused the bot for good
//!   (banned, members-only, ...) until a join succeeds. Each send attempt has a new message id,
//!   so a post retried after a lost connection may appear twice. Presence subscription requests
//!   are not answered.

mod connect;
mod guard;

use crate::plain;
use futures_util::{SinkExt, StreamExt};
use opsbot_core::config::XmppConfig;
use opsbot_core::{Adapter, AdapterContext, Capabilities, Envelope, Place, Posted, Reply, SendError, UserId};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::{Id, Lang, Message, MessageType};
use tokio_xmpp::parsers::message_correct::Replace;
use tokio_xmpp::parsers::muc::Muc;
use tokio_xmpp::parsers::muc::muc::History;
use tokio_xmpp::parsers::muc::user::{MucUser, Status};
use tokio_xmpp::parsers::ns;
use tokio_xmpp::parsers::ping::Ping;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::{FallibleStreamElement, ReadError, Timeouts, XmppStreamElement};

/// Bodies larger than this (bytes) are split into several messages: servers cap stanza sizes
/// (Prosody at 256 KiB, some at 64 KiB).
const MAX_BODY: usize = 48 * 1024;
/// Incoming bodies larger than this are skipped with a warning: no command is that long.
const MAX_INCOMING_BODY: usize = 64 * 1024;
/// How long connecting (TCP, TLS, sign-in, binding) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long room joins may take before the adapter reports connected anyway.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Nick conflicts tried (appending `_` each time) before a room is given up.
const MAX_NICK_TRIES: u32 = 5;
/// How often rooms the bot is not in (refused, kicked, destroyed) are tried again.
const REJOIN_EVERY: Duration = Duration::from_secs(60);

/// One batch of messages for the session loop to write, and where to say how it went.
struct Outgoing {
    messages: Vec<Message>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The XMPP adapter.
pub struct XmppAdapter {
    name: String,
    jid: BareJid,
    nick: String,
    rooms: Vec<BareJid>,
    target: connect::Target,
    /// The running session's outbox, set while connected.
    link: Arc<Mutex<Option<mpsc::Sender<Outgoing>>>>,
    /// The configured rooms the bot is in now.
    joined: Arc<Mutex<HashSet<BareJid>>>,
    /// Configured rooms whose last join was refused for good (banned, members only, ...), and
    /// why: posts to them are `Rejected` until a rejoin succeeds.
    refused: Arc<Mutex<HashMap<BareJid, String>>>,
    /// How often rooms the bot is not in are tried again.
    rejoin_every: Duration,
    ids: IdGen,
}

/// Message ids: random per process, unique per message.
struct IdGen {
    seed: std::collections::hash_map::RandomState,
    next: AtomicU64,
}

impl IdGen {
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("opsbot-{:016x}", self.seed.hash_one(n))
    }
}

impl XmppAdapter {
    /// An adapter for the account `cfg.jid`; fails on a JID, room or `tls_ca` it cannot use.
    pub fn new(name: &str, cfg: XmppConfig) -> Result<Self, String> {
        let jid = BareJid::new(&cfg.jid).map_err(|e| format!("`{}` is not a JID: {e}", cfg.jid))?;
        let Some(local) = jid.node() else {
            return Err(format!("`{}` is not an account JID (name@domain)", cfg.jid));
        };
        let nick = cfg
            .nick
            .clone()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| local.as_str().to_string());
        let rooms = cfg
            .rooms
            .iter()
            .map(|r| BareJid::new(r).map_err(|e| format!("`{r}` is not a room JID: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let server = match &cfg.server {
            Some(s) => {
                let (h, p) = s.rsplit_once(':').ok_or_else(|| format!("`{s}` is not host:port"))?;
                let port = p.parse::<u16>().map_err(|_| format!("`{s}` is not host:port"))?;
                Some((h.trim_start_matches('[').trim_end_matches(']').to_string(), port))
            }
            None => None,
        };
        let tls = crate::tls::client_config(cfg.tls_ca.as_deref());
        if cfg.tls_ca.is_some()
            && let Err(e) = &tls
        {
            return Err(e.clone());
        }
        Ok(Self {
            name: name.to_string(),
            jid: jid.clone(),
            nick,
            rooms,
            target: connect::Target {
                jid,
                password: cfg.password,
                server,
                allow_plain: cfg.allow_plain,
                tls,
                resource: "opsbot".into(),
            },
            link: Arc::new(Mutex::new(None)),
            joined: Arc::new(Mutex::new(HashSet::new())),
            refused: Arc::new(Mutex::new(HashMap::new())),
            rejoin_every: REJOIN_EVERY,
            ids: IdGen {
                seed: std::collections::hash_map::RandomState::new(),
                next: AtomicU64::new(1),
            },
        })
    }

    /// Tries rooms the bot is not in again every `every` instead of every minute (for tests).
    #[doc(hidden)]
    pub fn with_rejoin_every(mut self, every: Duration) -> Self {
        self.rejoin_every = every;
        self
    }

    fn sender(&self) -> Option<mpsc::Sender<Outgoing>> {
        self.link.lock().ok().and_then(|l| l.clone())
    }

    /// Messages carrying `text` to a place, split to fit; a correction of `replace` when given
    /// (then one message, cut if too long).
    fn messages(&self, place: &Place, text: &str, replace: Option<&str>) -> Result<Vec<Message>, SendError> {
        let to = BareJid::new(&place.channel).map_err(|e| SendError::Rejected(format!("`{}` is not a JID: {e}", place.channel)))?;
        let kind = if self.rooms.contains(&to) {
            if !self.joined.lock().is_ok_and(|j| j.contains(&to)) {
                if let Some(why) = self.refused.lock().ok().and_then(|r| r.get(&to).cloned()) {
                    tracing::warn!("not posting to the XMPP room {to}: {why}");
                    return Err(SendError::Rejected(format!("the bot cannot be in the room {to}: {why}")));
                }
                return Err(SendError::Unavailable(format!("not in the room {to} (yet)")));
            }
            MessageType::Groupchat
        } else {
            MessageType::Chat
        };
        let text = clean(text);
        let chunks = match replace {
            Some(_) => vec![cut(&text, MAX_BODY)],
            None => split(&text, MAX_BODY),
        };
        Ok(chunks
            .into_iter()
            .map(|chunk| {
                let mut m = Message::new_with_type(kind.clone(), Some(Jid::from(to.clone()))).with_body(Lang::new(), chunk);
                m.id = Some(Id(self.ids.next()));
                if let Some(orig) = replace {
                    m = m.with_payload(Replace { id: Id(orig.to_string()) });
                }
                m
            })
            .collect())
    }

    /// Hands messages to the session loop and waits until they are written.
    async fn deliver(&self, messages: Vec<Message>) -> Result<(), SendError> {
        let Some(tx) = self.sender() else {
            return Err(SendError::Unavailable("not connected to the XMPP server".into()));
        };
        let (done, rx) = oneshot::channel();
        tx.send(Outgoing { messages, done })
            .await
            .map_err(|_| SendError::Unavailable("the XMPP connection closed".into()))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SendError::Unavailable(format!("writing to the XMPP server failed: {e}"))),
            Err(_) => Err(SendError::Unavailable("the XMPP connection closed".into())),
        }
    }
}

/// Clears the adapter's outbox link and joined rooms when the session ends, however it ends.
struct LinkGuard<'a>(&'a XmppAdapter);

impl Drop for LinkGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut l) = self.0.link.lock() {
            *l = None;
        }
        if let Ok(mut j) = self.0.joined.lock() {
            j.clear();
        }
        if let Ok(mut r) = self.0.refused.lock() {
            r.clear();
        }
    }
}

/// A configured room and what the session knows of it.
struct Room {
    jid: BareJid,
    /// The nick asked for or, once joined, the one the room gave.
    nick: String,
    state: JoinState,
    /// Nick conflicts met in this join attempt.
    tries: u32,
    /// Join attempts failed in a row (only the first is a warning).
    failures: u32,
    /// Occupant nick → real bare JID, where the room shows it. Only ever what the room said
    /// in the current stay: an entry goes with the occupant's leaving or a presence without a
    /// JID, the whole map when the bot leaves, is removed, or (re)joins.
    occupants: HashMap<String, BareJid>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum JoinState {
    Pending,
    Joined,
    Failed,
}

impl Room {
    fn join_presence(&self) -> Result<Presence, String> {
        let to = self
            .jid
            .with_resource_str(&self.nick)
            .map_err(|e| format!("`{}` is not usable as a nick: {e}", self.nick))?;
        Ok(Presence::available()
            .with_to(to)
            .with_payload(Muc::new().with_history(History::new().with_maxstanzas(0))))
    }
}

/// One session's state.
struct Session<'a> {
    adapter: &'a XmppAdapter,
    rooms: HashMap<BareJid, Room>,
    pings: u64,
}

impl Session<'_> {
    fn all_rooms_settled(&self) -> bool {
        self.rooms.values().all(|r| r.state != JoinState::Pending)
    }

    /// Records a room's state, and so whether posts to it can go now.
    fn set_state(adapter: &XmppAdapter, room: &mut Room, state: JoinState) {
        room.state = state;
        if state == JoinState::Failed {
            room.failures += 1;
        } else if state == JoinState::Joined {
            room.failures = 0;
        }
        if let Ok(mut j) = adapter.joined.lock() {
            if state == JoinState::Joined {
                j.insert(room.jid.clone());
            } else {
                j.remove(&room.jid);
            }
        }
        if state == JoinState::Joined
            && let Ok(mut r) = adapter.refused.lock()
        {
            r.remove(&room.jid);
        }
    }

    /// Records that the room refused the bot for good (until someone there changes it): posts
    /// to it are rejected from now on; joins are still tried again now and then.
    fn set_refused(adapter: &XmppAdapter, room: &Room, why: String) {
        if let Ok(mut r) = adapter.refused.lock()
            && r.insert(room.jid.clone(), why.clone()).is_none()
        {
            tracing::warn!(
                "the XMPP room {} refuses the bot ({why}); posts to it are rejected until a later join succeeds",
                room.jid
            );
        }
    }

    /// Join presences for the rooms the bot is not in (refused, removed, or no answer for a
    /// while), with the configured nick again.
    fn rejoin(&mut self, out: &mut Vec<Stanza>) {
        for room in self.rooms.values_mut().filter(|r| r.state != JoinState::Joined) {
            room.nick = self.adapter.nick.clone();
            room.tries = 0;
            room.occupants.clear();
            if let Ok(p) = room.join_presence() {
                tracing::debug!("trying the XMPP room {} again", room.jid);
                room.state = JoinState::Pending;
                out.push(Stanza::Presence(p));
            }
        }
    }

    /// Handles one incoming stanza: an envelope for the inbox and/or stanzas to answer with.
    fn on_stanza(&mut self, stanza: Stanza, out: &mut Vec<Stanza>) -> Option<Envelope> {
        match stanza {
            Stanza::Message(m) => self.on_message(m),
            Stanza::Presence(p) => {
                self.on_presence(p, out);
                None
            }
            Stanza::Iq(iq) => {
                self.on_iq(iq, out);
                None
            }
        }
    }

    fn on_iq(&mut self, iq: Iq, out: &mut Vec<Stanza>) {
        match iq {
            Iq::Get { from, id, payload, .. } if payload.is("ping", ns::PING) => {
                out.push(Stanza::Iq(Iq::Result {
                    from: None,
                    to: from,
                    id,
                    payload: None,
                }));
            }
            Iq::Get { from, id, payload, .. } | Iq::Set { from, id, payload, .. } => {
                tracing::debug!(
                    "answering an unsupported XMPP request <{} xmlns='{}'>",
                    payload.name(),
                    payload.ns()
                );
                out.push(Stanza::Iq(Iq::Error {
                    from: None,
                    to: from,
                    id,
                    error: StanzaError::new(
                        ErrorType::Cancel,
                        DefinedCondition::ServiceUnavailable,
                        "en",
                        "not supported by opsbot",
                    ),
                    payload: None,
                }));
            }
            Iq::Result { .. } => {}
            Iq::Error { id, error, .. } => {
                if !id.starts_with("opsbot-ping") {
                    tracing::warn!("the XMPP server answered request {id} with an error: {:?}", error.defined_condition);
                }
            }
        }
    }

    fn on_presence(&mut self, p: Presence, out: &mut Vec<Stanza>) {
        let adapter = self.adapter;
        let Some(from) = p.from.clone() else { return };
        let Some(room) = self.rooms.get_mut(&from.to_bare()) else { return };
        let nick = from.resource().map(|r| r.as_str().to_string());
        let muc_user = p
            .payloads
            .iter()
            .find(|e| e.is("x", ns::MUC_USER))
            .and_then(|e| MucUser::try_from(e.clone()).ok());
        let is_self = muc_user.as_ref().is_some_and(|u| u.status.contains(&Status::SelfPresence));
        match p.type_ {
            PresenceType::Error => {
                if room.state != JoinState::Pending {
                    return;
                }
                let err = p
                    .payloads
                    .iter()
                    .find(|e| e.name() == "error")
                    .and_then(|e| StanzaError::try_from(e.clone()).ok());
                let cond = err.as_ref().map(|e| e.defined_condition.clone());
                if cond == Some(DefinedCondition::Conflict) && room.tries < MAX_NICK_TRIES {
                    room.tries += 1;
                    let taken = room.nick.clone();
                    room.nick.push('_');
                    tracing::info!("nick `{taken}` is taken in {}: trying `{}`", room.jid, room.nick);
                    match room.join_presence() {
                        Ok(p) => out.push(Stanza::Presence(p)),
                        Err(e) => {
                            tracing::warn!("cannot join {}: {e}", room.jid);
                            Self::set_state(adapter, room, JoinState::Failed);
                        }
                    }
                } else {
                    let text = err.as_ref().and_then(|e| e.texts.values().next().cloned()).unwrap_or_default();
                    if let Some(why) = cond.as_ref().and_then(permanent) {
                        Self::set_refused(adapter, room, why.to_string());
                    }
                    let cond = cond.map(|c| format!("{c:?}")).unwrap_or_else(|| "an error".into());
                    if room.failures == 0 {
                        tracing::warn!(
                            "cannot join the XMPP room {}: {cond} {text}; trying again every {:?}",
                            room.jid,
                            adapter.rejoin_every
                        );
                    }
                    Self::set_state(adapter, room, JoinState::Failed);
                }
            }
            PresenceType::Unavailable => {
                if let Some(n) = &nick {
                    room.occupants.remove(n);
                }
                if is_self {
                    let status = muc_user.map(|u| u.status).unwrap_or_default();
                    if status.contains(&Status::NewNick) {
                        tracing::info!("the bot's nick in {} is changing", room.jid);
                    } else {
                        // Out of the room, the bot no longer sees who leaves and who takes a
                        // nick: nothing it knew of the occupants holds any more.
                        room.occupants.clear();
                        tracing::warn!(
                            "the bot was removed from the XMPP room {} ({status:?}); trying again every {:?}",
                            room.jid,
                            adapter.rejoin_every
                        );
                        Self::set_state(adapter, room, JoinState::Failed);
                        if status.contains(&Status::Banned) {
                            Self::set_refused(adapter, room, "banned from the room".into());
                        }
                    }
                }
            }
            PresenceType::None => {
                let Some(n) = nick else { return };
                // Each presence says all there is about the occupant's real JID now: one
                // without it (no longer shown to the bot) must not leave an older one standing.
                match muc_user.as_ref().and_then(|u| u.items.iter().find_map(|i| i.jid.clone())) {
                    Some(real) => {
                        room.occupants.insert(n.clone(), real.to_bare());
                    }
                    None => {
                        room.occupants.remove(&n);
                    }
                }
                if is_self {
                    if room.state != JoinState::Joined {
                        tracing::info!("joined the XMPP room {} as `{n}`", room.jid);
                    }
                    if muc_user.as_ref().is_some_and(|u| u.status.contains(&Status::RoomHasBeenCreated)) {
                        // A new room on a server that locks new rooms until configured: accept
                        // the defaults ("instant room", XEP-0045 §10.1.2) so people can join.
                        let query = "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>";
                        if let Ok(payload) = query.parse::<Element>() {
                            out.push(Stanza::Iq(Iq::Set {
                                from: None,
                                to: Some(Jid::from(room.jid.clone())),
                                id: format!("opsbot-instant-{}", room.jid),
                                payload,
                            }));
                        }
                    }
                    room.nick = n;
                    Self::set_state(adapter, room, JoinState::Joined);
                }
            }
            _ => {}
        }
    }

    fn on_message(&mut self, m: Message) -> Option<Envelope> {
        let a = self.adapter;
        let from = m.from.clone()?;
        if m.type_ == MessageType::Error {
            let err = m
                .payloads
                .iter()
                .find(|e| e.name() == "error")
                .and_then(|e| StanzaError::try_from(e.clone()).ok());
            tracing::warn!(
                "the XMPP server could not deliver message {} to {from}: {:?}",
                m.id.as_ref().map(|i| i.0.as_str()).unwrap_or("?"),
                err.map(|e| e.defined_condition)
            );
            return None;
        }
        let (_, body) = m.get_best_body(vec![])?;
        if m.payloads.iter().any(is_delay) {
            tracing::debug!("skipping a delayed (history or offline) XMPP message from {from}");
            return None;
        }
        if body.len() > MAX_INCOMING_BODY {
            tracing::warn!(
                "skipping an XMPP message of {} bytes from {from} (over {MAX_INCOMING_BODY})",
                body.len()
            );
            return None;
        }
        if m.payloads
            .iter()
            .any(|e| e.is("x", ns::MUC_USER) || e.is("x", "jabber:x:conference"))
        {
            // Invitations, and private messages through a room (XEP-0045 §7.5 marks them so).
            tracing::debug!("ignoring a room invitation or private message from {from}");
            return None;
        }
        if m.payloads.iter().any(is_forwarded) {
            // Carbons (XEP-0280; the bot never enables them), archive results (XEP-0313) and
            // forwards (XEP-0297) carry someone else's message: never a command, and the
            // wrapped message is never unwrapped.
            tracing::debug!("ignoring a carbon, archived or forwarded message from {from}");
            return None;
        }
        let bare = from.to_bare();
        let (user, display, place, direct, nick) = match m.type_ {
            MessageType::Groupchat => {
                let room = self.rooms.get(&bare)?;
                let occupant = from.resource()?.as_str().to_string();
                if occupant == room.nick {
                    return None;
                }
                let user = room
                    .occupants
                    .get(&occupant)
                    .map(|j| j.to_string())
                    .unwrap_or_else(|| from.to_string());
                (user, occupant, bare.to_string(), false, room.nick.clone())
            }
            MessageType::Chat | MessageType::Normal => {
                if self.rooms.contains_key(&bare) {
                    // `room@service/nick` is an occupant, not the account `room@service`.
                    tracing::debug!("ignoring a private message through the room {bare}");
                    return None;
                }
                if bare == a.jid {
                    // The bot's own account (another resource): not someone else's command.
                    tracing::debug!("ignoring a message from the bot's own account ({from})");
                    return None;
                }
                let display = bare.node().map(|n| n.as_str().to_string()).unwrap_or_else(|| bare.to_string());
                (bare.to_string(), display, bare.to_string(), true, a.nick.clone())
            }
            MessageType::Headline | MessageType::Error => return None,
        };
        let (text, mentioned) = match strip_mention(body, &nick) {
            Some(rest) => (rest, true),
            None => (body.clone(), false),
        };
        Some(Envelope {
            user: UserId::new(&a.name, user),
            display_name: Some(display),
            place: Place::new(&a.name, place),
            direct,
            mentioned,
            text,
            button: None,
        })
    }
}

fn is_delay(e: &Element) -> bool {
    e.is("delay", ns::DELAY) || e.is("x", "jabber:x:delay")
}

/// A payload wrapping another message: a carbon copy, an archive result, a forward.
fn is_forwarded(e: &Element) -> bool {
    // Not carbons' `<private/>`: a hint on an ordinary message not to copy it.
    e.is("received", ns::CARBONS)
        || e.is("sent", ns::CARBONS)
        || e.is("forwarded", ns::FORWARD)
        || e.is("result", ns::MAM)
        || e.is("result", "urn:xmpp:mam:1")
}

/// Why a join refused with this error cannot succeed until someone in the room changes
/// something; `None` for errors worth trying again (nick taken, room busy, server trouble).
fn permanent(cond: &DefinedCondition) -> Option<&'static str> {
    match cond {
        DefinedCondition::Forbidden => Some("banned from the room (forbidden)"),
        DefinedCondition::RegistrationRequired => Some("the room is members-only and the bot is not a member"),
        DefinedCondition::NotAllowed => Some("the room does not exist and may not be created by the bot"),
        DefinedCondition::NotAuthorized => Some("the room needs a password (opsbot has none to give)"),
        _ => None,
    }
}

/// `nick: rest` or `nick, rest` (case-insensitive nick) → `rest`.
fn strip_mention(body: &str, nick: &str) -> Option<String> {
    let b = body.trim_start();
    let head = b.get(..nick.len())?;
    if nick.is_empty() || !head.eq_ignore_ascii_case(nick) {
        return None;
    }
    let rest = &b[nick.len()..];
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(','))?;
    Some(rest.trim_start().to_string())
}

/// Text safe for an XML body: no control characters but newline and tab.
fn clean(text: &str) -> String {
    text.chars()
        .filter(|&c| c == '\n' || c == '\t' || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}'))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Splits text into pieces of at most `max` bytes, at line ends where possible.
fn split(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut at = max;
        while !rest.is_char_boundary(at) {
            at -= 1;
        }
        if let Some(nl) = rest[..at].rfind('\n').filter(|&nl| nl > 0) {
            at = nl;
        }
        out.push(rest[..at].to_string());
        rest = rest[at..].strip_prefix('\n').unwrap_or(&rest[at..]);
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// The text cut to at most `max` bytes, with a note when cut.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut at = max - 16;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}\n… (cut)", &text[..at])
}

#[async_trait::async_trait]
impl Adapter for XmppAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            edit: true,
            direct: true,
            ..Capabilities::default()
        }
    }

    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        let timeouts = Timeouts {
            read_timeout: Duration::from_secs(90),
            response_timeout: Duration::from_secs(60),
        };
        let session = tokio::select! {
            s = tokio::time::timeout(CONNECT_TIMEOUT, connect::open(&self.target, timeouts)) => {
                s.map_err(|_| format!("connecting to the XMPP server took over {CONNECT_TIMEOUT:?}"))??
            }
            _ = ctx.stopped() => return Ok(()),
        };
        let connect::Session {
            mut stream,
            jid,
            encrypted,
        } = session;
        tracing::info!("XMPP: signed in as {jid} ({})", if encrypted { "TLS" } else { "no TLS" });

        let mut state = Session {
            adapter: self,
            rooms: self
                .rooms
                .iter()
                .map(|r| {
                    (
                        r.clone(),
                        Room {
                            jid: r.clone(),
                            nick: self.nick.clone(),
                            state: JoinState::Pending,
                            tries: 0,
                            failures: 0,
                            occupants: HashMap::new(),
                        },
                    )
                })
                .collect(),
            pings: 0,
        };

        let mut first: Vec<Stanza> = vec![Stanza::Presence(Presence::available())];
        for room in state.rooms.values_mut() {
            match room.join_presence() {
                Ok(p) => first.push(Stanza::Presence(p)),
                Err(e) => {
                    tracing::warn!("cannot join {}: {e}", room.jid);
                    Session::set_state(self, room, JoinState::Failed);
                }
            }
        }
        for s in first {
            stream
                .send(&XmppStreamElement::Stanza(s))
                .await
                .map_err(|e| format!("XMPP write failed: {e}"))?;
        }

        let (tx, mut rx) = mpsc::channel::<Outgoing>(8);
        let _guard = LinkGuard(self);
        let mut rejoin = tokio::time::interval(self.rejoin_every);
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rejoin.tick().await;
        let mut connected = false;
        let join_deadline = tokio::time::sleep(JOIN_TIMEOUT);
        tokio::pin!(join_deadline);
        loop {
            if !connected && state.all_rooms_settled() {
                if let Ok(mut l) = self.link.lock() {
                    *l = Some(tx.clone());
                }
                connected = true;
                ctx.connected();
                tracing::info!("XMPP: connected");
            }
            let mut answers = Vec::new();
            tokio::select! {
                _ = ctx.stopped() => {
                    if let Ok(mut l) = self.link.lock() {
                        *l = None;
                    }
                    leave(&mut stream, &state).await;
                    return Ok(());
                }
                _ = &mut join_deadline, if !connected => {
                    for room in state.rooms.values_mut().filter(|r| r.state == JoinState::Pending) {
                        tracing::warn!("no answer from the XMPP room {} after {JOIN_TIMEOUT:?}; going on without it", room.jid);
                        Session::set_state(self, room, JoinState::Failed);
                    }
                }
                _ = rejoin.tick(), if connected => state.rejoin(&mut answers),
                item = stream.next() => match item {
                    Some(Ok(FallibleStreamElement::Ok(el))) => match el {
                        XmppStreamElement::Stanza(s) => {
                            if let Some(env) = state.on_stanza(s, &mut answers) {
                                let _ = ctx.inbox.send(env).await;
                            }
                        }
                        XmppStreamElement::StreamError(e) => return Err(format!("the XMPP server ended the stream: {e}")),
                        other => tracing::debug!("ignoring an XMPP stream element: {other:?}"),
                    },
                    Some(Ok(FallibleStreamElement::Err(e))) => tracing::warn!("skipping a malformed XMPP stanza: {e}"),
                    Some(Err(ReadError::ParseError(e))) => tracing::warn!("skipping an unreadable XMPP element: {e}"),
                    Some(Err(ReadError::SoftTimeout)) => {
                        state.pings += 1;
                        let to = Jid::from(BareJid::from_parts(None, self.jid.domain()));
                        answers.push(Stanza::Iq(Iq::from_get(format!("opsbot-ping-{}", state.pings), Ping).with_to(to)));
                    }
                    Some(Err(ReadError::HardError(e))) => return Err(format!("the XMPP connection broke: {e}")),
                    Some(Err(ReadError::StreamFooterReceived)) => return Err("the XMPP server closed the stream".into()),
                    None => return Err("the XMPP connection closed".into()),
                },
                Some(out) = rx.recv() => {
                    let mut result = Ok(());
                    for m in out.messages {
                        if let Err(e) = stream.feed(&XmppStreamElement::Stanza(Stanza::Message(m))).await {
                            result = Err(e.to_string());
                            break;
                        }
                    }
                    if result.is_ok()
                        && let Err(e) = flush(&mut stream).await
                    {
                        result = Err(e.to_string());
                    }
                    let failed = result.clone().err();
                    let _ = out.done.send(result);
                    if let Some(e) = failed {
                        return Err(format!("writing to the XMPP server failed: {e}"));
                    }
                }
            }
            for s in answers {
                stream
                    .send(&XmppStreamElement::Stanza(s))
                    .await
                    .map_err(|e| format!("writing to the XMPP server failed: {e}"))?;
            }
        }
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        let messages = self.messages(place, &plain(reply), None)?;
        let id = messages.first().and_then(|m| m.id.as_ref()).map(|i| i.0.clone());
        self.deliver(messages).await?;
        Ok(Posted { id })
    }

    async fn edit(&self, place: &Place, id: &str, reply: &Reply) -> Result<(), SendError> {
        let messages = self.messages(place, &plain(reply), Some(id))?;
        self.deliver(messages).await
    }
}

/// Writes out what was fed to the stream.
async fn flush(stream: &mut connect::Stream) -> std::io::Result<()> {
    <connect::Stream as SinkExt<&XmppStreamElement>>::flush(stream).await
}

/// Leaves politely: unavailable presence to the rooms and the server, then the stream's end.
async fn leave(stream: &mut connect::Stream, state: &Session<'_>) {
    let mut goodbye = Vec::new();
    for room in state.rooms.values().filter(|r| r.state == JoinState::Joined) {
        if let Ok(to) = room.jid.with_resource_str(&room.nick) {
            goodbye.push(Presence::unavailable().with_to(to));
        }
    }
    goodbye.push(Presence::unavailable());
    let polite = async {
        for p in goodbye {
            stream.feed(&XmppStreamElement::Stanza(Stanza::Presence(p))).await?;
        }
        flush(stream).await?;
        stream.shutdown().await?;
        // Wait for the server's end of stream, briefly.
        while let Some(item) = stream.next().await {
            if matches!(item, Err(ReadError::StreamFooterReceived) | Err(ReadError::HardError(_))) {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), polite).await {
        Ok(Ok(())) => tracing::info!("XMPP: signed off"),
        Ok(Err(e)) => tracing::debug!("XMPP sign-off incomplete: {e}"),
        Err(_) => tracing::debug!("XMPP sign-off timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_stripped() {
        assert_eq!(strip_mention("opsbot: deploy web", "opsbot").as_deref(), Some("deploy web"));
        assert_eq!(strip_mention("OpsBot, status", "opsbot").as_deref(), Some("status"));
        assert_eq!(strip_mention("opsbotx: hi", "opsbot"), None);
        assert_eq!(strip_mention("hi opsbot: x", "opsbot"), None);
        assert_eq!(strip_mention("é", "opsbot"), None);
    }

    #[test]
    fn long_text_splits_at_lines() {
        let text = (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let parts = split(&text, 50);
        assert!(parts.iter().all(|p| p.len() <= 50));
        assert_eq!(parts.join("\n"), text);
        assert_eq!(split("", 10), vec![String::new()]);
        let long = "é".repeat(100);
        assert_eq!(split(&long, 51).concat(), long);
    }

    fn adapter() -> XmppAdapter {
        let cfg = XmppConfig {
            jid: "opsbot@test.local".into(),
            password: "x".into(),
            server: None,
            rooms: vec!["ops@conference.test.local".into()],
            nick: None,
            allow_plain: false,
            tls_ca: None,
        };
        XmppAdapter::new("xmpp", cfg).expect("adapter")
    }

    fn session(a: &XmppAdapter) -> Session<'_> {
        let jid = BareJid::new("ops@conference.test.local").unwrap();
        let room = Room {
            jid: jid.clone(),
            nick: "opsbot".into(),
            state: JoinState::Joined,
            tries: 0,
            failures: 0,
            occupants: HashMap::new(),
        };
        Session {
            adapter: a,
            rooms: HashMap::from([(jid, room)]),
            pings: 0,
        }
    }

    fn stanza(xml: &str) -> Stanza {
        let el: Element = xml.parse().expect("xml");
        match el.name() {
            "message" => Stanza::Message(Message::try_from(el).expect("message")),
            "presence" => Stanza::Presence(Presence::try_from(el).expect("presence")),
            _ => Stanza::Iq(Iq::try_from(el).expect("iq")),
        }
    }

    fn feed(s: &mut Session<'_>, xml: &str) -> Option<Envelope> {
        s.on_stanza(stanza(xml), &mut Vec::new())
    }

    fn occupant(nick: &str, jid: Option<&str>) -> String {
        let item = match jid {
            Some(j) => format!("<item affiliation='none' role='participant' jid='{j}'/>"),
            None => "<item affiliation='none' role='participant'/>".into(),
        };
        format!(
            "<presence xmlns='jabber:client' from='ops@conference.test.local/{nick}'><x xmlns='http://jabber.org/protocol/muc#user'>{item}</x></presence>"
        )
    }

    fn said(nick: &str, text: &str) -> String {
        format!("<message xmlns='jabber:client' type='groupchat' from='ops@conference.test.local/{nick}'><body>{text}</body></message>")
    }

    #[test]
    fn a_presence_without_a_real_jid_forgets_the_old_one() {
        let a = adapter();
        let mut s = session(&a);
        feed(&mut s, &occupant("ana", Some("ana@corp/phone")));
        assert_eq!(feed(&mut s, &said("ana", "x")).unwrap().user.id, "ana@corp");
        // The same nick, now without a JID the bot may see: no longer ana@corp.
        feed(&mut s, &occupant("ana", None));
        assert_eq!(feed(&mut s, &said("ana", "x")).unwrap().user.id, "ops@conference.test.local/ana");
    }

    #[test]
    fn the_bot_leaving_the_room_forgets_all_occupants() {
        let a = adapter();
        let mut s = session(&a);
        feed(&mut s, &occupant("ana", Some("ana@corp/phone")));
        feed(
            &mut s,
            "<presence xmlns='jabber:client' type='unavailable' from='ops@conference.test.local/opsbot'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='none'/><status code='307'/><status code='110'/></x></presence>",
        );
        assert!(s.rooms.values().all(|r| r.occupants.is_empty()));
        // Rejoining starts from nothing too.
        feed(&mut s, &occupant("bob", Some("bob@corp")));
        let mut out = Vec::new();
        s.rejoin(&mut out);
        assert_eq!(out.len(), 1);
        assert!(s.rooms.values().all(|r| r.occupants.is_empty()));
    }

    #[test]
    fn wrapped_and_own_messages_are_no_commands() {
        let a = adapter();
        let mut s = session(&a);
        for xml in [
            // A carbon of a message someone else sent (the bot never enables carbons).
            "<message xmlns='jabber:client' type='chat' from='mallory@evil/x'><body>cover</body><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='boss@corp/x' to='opsbot@test.local'><body>opsbot: deploy</body></message></forwarded></received></message>",
            "<message xmlns='jabber:client' type='chat' from='opsbot@test.local'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat' from='opsbot@test.local/other' to='boss@corp'><body>deploy</body></message></forwarded></sent></message>",
            "<message xmlns='jabber:client' type='chat' from='mallory@evil/x'><body>fwd</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='boss@corp/x'><body>deploy</body></message></forwarded></message>",
            "<message xmlns='jabber:client' from='mallory@evil/x'><body>mam</body><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='boss@corp/x'><body>deploy</body></message></forwarded></result></message>",
            // Another resource of the bot's own account.
            "<message xmlns='jabber:client' type='chat' from='opsbot@test.local/phone'><body>deploy</body></message>",
            // A private message through the room (with and without the muc#user mark).
            "<message xmlns='jabber:client' type='chat' from='ops@conference.test.local/ana'><body>deploy</body></message>",
            "<message xmlns='jabber:client' type='chat' from='ops@conference.test.local/ana'><body>deploy</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>",
        ] {
            let env = feed(&mut s, xml);
            assert!(env.is_none(), "{xml}: {env:?}");
        }
        // A carbons `<private/>` hint is no wrapper: the message counts.
        let env = feed(
            &mut s,
            "<message xmlns='jabber:client' type='chat' from='ana@corp/x'><body>status</body><private xmlns='urn:xmpp:carbons:2'/></message>",
        )
        .expect("an envelope");
        assert_eq!((env.user.id.as_str(), env.direct), ("ana@corp", true));
    }

    #[test]
    fn a_permanent_join_error_rejects_posts() {
        let a = adapter();
        let mut s = session(&a);
        let place = Place::new("xmpp", "ops@conference.test.local");
        s.rooms.values_mut().for_each(|r| r.state = JoinState::Pending);
        feed(
            &mut s,
            "<presence xmlns='jabber:client' type='error' from='ops@conference.test.local/opsbot'><error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        assert!(matches!(a.messages(&place, "x", None), Err(SendError::Unavailable(_))));
        s.rooms.values_mut().for_each(|r| r.state = JoinState::Pending);
        feed(
            &mut s,
            "<presence xmlns='jabber:client' type='error' from='ops@conference.test.local/opsbot'><error type='auth'><registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        match a.messages(&place, "x", None) {
            Err(SendError::Rejected(why)) => assert!(why.contains("members-only"), "{why}"),
            other => panic!("{other:?}"),
        }
        // A later successful join lifts it.
        s.rooms.values_mut().for_each(|r| r.state = JoinState::Pending);
        feed(
            &mut s,
            "<presence xmlns='jabber:client' from='ops@conference.test.local/opsbot'><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='member' role='participant'/><status code='110'/></x></presence>",
        );
        assert!(a.messages(&place, "x", None).is_ok());
    }

    #[test]
    fn control_characters_are_removed() {
        assert_eq!(clean("a\u{0}b\r\nc\u{1b}[1m\td"), "ab\nc[1m\td");
    }
}
