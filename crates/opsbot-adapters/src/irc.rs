//! IRC: one connection to one network, over plain TCP or TLS (tokio-rustls).
//!
//! The connection loop is written here by hand on tokio rather than with the `irc` crate:
//! that crate's TLS defaults to OpenSSL (a system library opsbot does not link), and its
//! client hides what a bot must control itself — SASL failures as clear errors, the nick
//! actually obtained after a collision, pacing of every line, and what happens to malformed
//! input. Lines are parsed with `irc-proto` (the `irc` crate's own parser, without the client).
//!
//! What it does: `PASS`, IRCv3 capability negotiation (`CAP LS 302`, requesting `sasl`,
//! `account-tag`, `extended-join`, `account-notify` and `message-tags` where offered), SASL
//! PLAIN, `NICK`/`USER` with `_`/digits appended on a collision, NickServ `IDENTIFY` (without
//! SASL, and only once `WHOIS NickServ` shows a network service), joining the configured
//! channels (rejoining after a kick), `PING`/`PONG`, and `QUIT` on shutdown.
//! Incoming `PRIVMSG`s become envelopes: `nick: text` / `nick, text` in a channel is a
//! mention (stripped), a private message is direct. A user is `account:NAME` when the server
//! tags messages with the sender's services account (`account-tag`), else `nick!user@host`.
//! A direct place is the sender's `nick!user@host`; a reply to it is sent only after
//! `USERHOST` shows the nick still held by that `user@host`. A reply to a channel waits
//! (briefly, then `Unavailable`) until the bot is in the channel.
//! Replies go out as plain lines (see [`render`]), paced by a token bucket (`line_rate`,
//! `line_burst`), each short enough that the line recipients get fits IRC's 512 bytes.

pub mod render;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use irc_proto::{CapSubCommand, Command, Message, Prefix, Response};
use opsbot_core::config::IrcConfig;
use opsbot_core::{Adapter, AdapterContext, Capabilities, Envelope, Place, Posted, Reply, SendError, UserId};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Longest line read from the server (IRCv3 tags included); longer ones are discarded.
pub const MAX_LINE: usize = 8 * 1024;
/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long registration (up to the welcome) may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing one line may take before the connection counts as broken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait before rejoining a channel the bot was kicked from.
const REJOIN_DELAY: Duration = Duration::from_secs(3);
/// Silence from the server after which the bot sends a PING of its own.
const IDLE_PING: Duration = Duration::from_secs(120);
/// Silence after which the connection counts as dead.
const IDLE_DEAD: Duration = Duration::from_secs(240);
/// Nicks tried after a collision before giving up.
const NICK_ATTEMPTS: u32 = 10;
/// How long a check with the server may take: `USERHOST` before a direct reply, `WHOIS
/// NickServ` before identifying, and the wait for a channel the bot is (re)joining.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Capabilities requested when the server offers them (`sasl` only when configured).
const WANTED_CAPS: &[&str] = &["account-tag", "extended-join", "account-notify", "message-tags"];

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The TCP connection, acknowledging what it reads at once (Linux `TCP_QUICKACK`, which lapses
/// and is set again after every read). Servers that write small lines without `TCP_NODELAY`
/// (ngIRCd among them) otherwise hold their second line until our delayed acknowledgement of
/// the first — 40 ms on Linux — so a burst of commands waited 40 ms twice (measured in
/// docs/benchmarks.md). One `setsockopt` per read.
struct QuickAck(TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if matches!(r, std::task::Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let _ = self.0.set_quickack(true);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = before;
        r
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Where the answer to one `USERHOST` goes: its `(nick, user@host)` pairs.
type UserhostWaiter = oneshot::Sender<Vec<(String, String)>>;

/// The connection's write side, shared by the session and [`IrcAdapter::post`]: a reply is
/// written by the task that sends it, crossing no task of its own on the way out.
struct Line {
    w: tokio::sync::Mutex<Writer<tokio::io::WriteHalf<Box<dyn Stream>>>>,
    /// Those waiting for answers to the `USERHOST`s sent, in order (the server answers in
    /// order); a waiter is queued before its line is written, under the writer's lock.
    userhost: Mutex<std::collections::VecDeque<UserhostWaiter>>,
    /// Why a write made by `post` failed; the session ends with it.
    broken: Mutex<Option<String>>,
    broke: tokio::sync::Notify,
}

impl Line {
    async fn send(&self, line: &str) -> Result<(), String> {
        self.w.lock().await.send(line).await
    }

    /// A write made by `post` failed: the session ends with `why`.
    fn fail(&self, why: String) -> SendError {
        *lock(&self.broken) = Some(why.clone());
        self.broke.notify_one();
        SendError::Unavailable(why)
    }
}

/// What one connection keeps between the lines it handles.
#[derive(Default)]
struct Conn {
    /// Channels to rejoin after a kick, and when.
    rejoins: Vec<(Instant, String)>,
    /// While `WHOIS NickServ` is being answered: until when, and whether NickServ has shown
    /// itself to be a network service.
    nickserv: Option<(Instant, bool)>,
}

/// What `post` shares with the running connection.
struct Shared {
    /// Set by `run` while connected.
    out: Mutex<Option<Arc<Line>>>,
    /// The nick the server gave us (the configured one, or with `_`/digits after a collision).
    nick: Mutex<String>,
    /// Paces the lines sent (`line_rate`, `line_burst`).
    limiter: DefaultDirectRateLimiter,
    /// The channels the bot is in now (folded with [`fold`]): joins confirmed by the server,
    /// less parts and kicks.
    joined: tokio::sync::watch::Sender<Vec<String>>,
}

/// An IRC network connection.
pub struct IrcAdapter {
    name: String,
    cfg: IrcConfig,
    username: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    shared: Arc<Shared>,
}

impl IrcAdapter {
    /// An adapter for the network `cfg` describes (secrets already resolved); fails when the
    /// TLS settings cannot be loaded.
    pub fn new(name: &str, cfg: IrcConfig) -> Result<Self, String> {
        let tls = if cfg.tls {
            Some(crate::tls::client_config(cfg.tls_ca.as_deref()).map_err(|e| format!("adapter `{name}`: {e}"))?)
        } else {
            None
        };
        let rate = if cfg.line_rate.is_finite() && cfg.line_rate > 0.0 {
            cfg.line_rate
        } else {
            2.0
        };
        let burst = NonZeroU32::new(cfg.line_burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(Duration::from_secs_f64(1.0 / rate))
            .ok_or_else(|| format!("adapter `{name}`: line_rate {rate} is out of range"))?
            .allow_burst(burst);
        let username = cfg.username.clone().unwrap_or_else(|| cfg.nick.clone());
        Ok(Self {
            name: name.to_string(),
            username,
            tls,
            shared: Arc::new(Shared {
                out: Mutex::new(None),
                nick: Mutex::new(cfg.nick.clone()),
                limiter: RateLimiter::direct(quota),
                joined: tokio::sync::watch::Sender::new(Vec::new()),
            }),
            cfg,
        })
    }

    /// The nick the bot has now (after a collision, not the configured one).
    pub fn current_nick(&self) -> String {
        lock(&self.shared.nick).clone()
    }

    fn port(&self) -> u16 {
        self.cfg.port.unwrap_or(if self.cfg.tls { 6697 } else { 6667 })
    }

    fn sender(&self) -> Result<Arc<Line>, SendError> {
        lock(&self.shared.out)
            .clone()
            .ok_or_else(|| SendError::Unavailable(format!("not connected to {}", self.cfg.server)))
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, String> {
        let addr = (self.cfg.server.as_str(), self.port());
        let where_ = format!("{}:{}", self.cfg.server, self.port());
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connecting to {where_} timed out"))?
            .map_err(|e| format!("cannot connect to {where_}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tcp = QuickAck(tcp);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let server_name = rustls::pki_types::ServerName::try_from(self.cfg.server.clone())
            .map_err(|e| format!("`{}` cannot be checked against a TLS certificate: {e}", self.cfg.server))?;
        let stream = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(tls.clone()).connect(server_name, tcp),
        )
        .await
        .map_err(|_| format!("TLS handshake with {where_} timed out"))?
        .map_err(|e| format!("TLS handshake with {where_} failed: {e}"))?;
        Ok(Box::new(stream))
    }

    /// One connection, from connecting to the end.
    async fn session(&self, ctx: &AdapterContext) -> Result<(), String> {
        let setup = async {
            let stream = self.connect().await?;
            let (r, w) = tokio::io::split(stream);
            let mut reader = LineReader::new(r);
            let mut w = Writer { w, buf: Vec::new() };
            let nick = tokio::time::timeout(REGISTER_TIMEOUT, self.register(&mut reader, &mut w))
                .await
                .map_err(|_| format!("{} did not complete registration within {REGISTER_TIMEOUT:?}", self.cfg.server))??;
            Ok::<_, String>((reader, w, nick))
        };
        // Stopping while connecting or registering needs no goodbye.
        let (mut reader, w, nick) = tokio::select! {
            r = setup => r?,
            _ = ctx.stopped() => return Ok(()),
        };
        let w = Arc::new(Line {
            w: tokio::sync::Mutex::new(w),
            userhost: Mutex::default(),
            broken: Mutex::default(),
            broke: tokio::sync::Notify::new(),
        });
        *lock(&self.shared.nick) = nick.clone();
        self.shared.joined.send_replace(Vec::new());
        info!(adapter = %self.name, server = %self.cfg.server, %nick, "registered on IRC");
        let mut conn = Conn::default();
        if self.cfg.nickserv_password.is_some() {
            if self.cfg.sasl_user.is_some() {
                info!(adapter = %self.name, "logged in with SASL; nickserv_password is not sent to NickServ");
            } else {
                // IDENTIFY only once the server has shown NickServ to be a network service:
                // whoever holds the nick `NickServ` on a network without services would get the password.
                w.send("WHOIS NickServ").await?;
                conn.nickserv = Some((Instant::now() + CHECK_TIMEOUT, false));
            }
        }
        for ch in &self.cfg.channels {
            w.send(&format!("JOIN {}", ch.trim())).await?;
        }
        *lock(&self.shared.out) = Some(w.clone());
        ctx.connected();

        let mut last_read = Instant::now();
        let mut pinged = false;
        let mut tick = tokio::time::interval(Duration::from_secs(15));
        loop {
            let next_rejoin = conn.rejoins.iter().map(|r| r.0).min();
            let nickserv_deadline = conn.nickserv.map(|n| n.0);
            tokio::select! {
                _ = ctx.stopped() => {
                    let mut w = w.w.lock().await;
                    let _ = w.send("QUIT :bye").await;
                    let _ = tokio::time::timeout(Duration::from_secs(2), w.w.shutdown()).await;
                    return Ok(());
                }
                line = reader.next_line() => {
                    let Some(line) = line.map_err(|e| format!("reading from {} failed: {e}", self.cfg.server))? else {
                        return Err(format!("{} closed the connection", self.cfg.server));
                    };
                    last_read = Instant::now();
                    pinged = false;
                    let Some(msg) = parse(&line) else { continue };
                    self.handle(ctx, &w, msg, &mut conn).await?;
                }
                _ = w.broke.notified() => {
                    return Err(lock(&w.broken).clone().unwrap_or_else(|| "writing to the IRC server failed".into()));
                }
                _ = tokio::time::sleep_until(nickserv_deadline.unwrap_or_else(Instant::now)), if nickserv_deadline.is_some() => {
                    conn.nickserv = None;
                    warn!(adapter = %self.name, "NickServ was not confirmed as a network service within {CHECK_TIMEOUT:?}; not identifying (use SASL)");
                }
                _ = tokio::time::sleep_until(next_rejoin.unwrap_or_else(Instant::now)), if next_rejoin.is_some() => {
                    let now = Instant::now();
                    let due: Vec<String> = conn.rejoins.iter().filter(|r| r.0 <= now).map(|r| r.1.clone()).collect();
                    conn.rejoins.retain(|r| r.0 > now);
                    for ch in due {
                        w.send(&format!("JOIN {}", self.channel_with_key(&ch))).await?;
                    }
                }
                _ = tick.tick() => {
                    let idle = last_read.elapsed();
                    if idle > IDLE_DEAD {
                        return Err(format!("{} sent nothing for {idle:?} (ping timeout)", self.cfg.server));
                    }
                    if idle > IDLE_PING && !pinged {
                        pinged = true;
                        w.send("PING :opsbot").await?;
                    }
                }
            }
        }
    }

    /// Registers (PASS, CAP, SASL, NICK, USER) up to the welcome; returns the nick obtained.
    async fn register<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        reader: &mut LineReader<R>,
        w: &mut Writer<W>,
    ) -> Result<String, String> {
        let cfg = &self.cfg;
        let sasl = cfg.sasl_user.as_deref().zip(cfg.sasl_password.as_deref());
        if let Some(pw) = &cfg.server_password {
            w.send(&format!("PASS :{}", render::sanitize(pw))).await?;
        }
        w.send("CAP LS 302").await?;
        let mut nick = cfg.nick.clone();
        w.send(&format!("NICK {nick}")).await?;
        let realname = render::sanitize(cfg.realname.as_deref().unwrap_or("opsbot"));
        w.send(&format!("USER {} 0 * :{}", self.username, realname)).await?;
        let mut offered: Vec<String> = Vec::new();
        let mut attempts = 0u32;
        let mut sasl_done = false;
        let mut cap_ended = false;
        loop {
            let Some(line) = reader
                .next_line()
                .await
                .map_err(|e| format!("reading from {} failed: {e}", cfg.server))?
            else {
                return Err(format!("{} closed the connection during registration", cfg.server));
            };
            let Some(msg) = parse(&line) else { continue };
            match msg.command {
                Command::PING(a, _) => w.send(&format!("PONG :{a}")).await?,
                Command::ERROR(m) => return Err(format!("{} refused the connection: {m}", cfg.server)),
                Command::CAP(_, CapSubCommand::LS, a, b) => {
                    // `CAP * LS * :caps` continues on the next line; `CAP * LS :caps` ends.
                    let (more, list) = match b {
                        Some(list) => (a.as_deref() == Some("*"), list),
                        None => (false, a.unwrap_or_default()),
                    };
                    offered.extend(
                        list.split_whitespace()
                            .map(|c| c.split('=').next().unwrap_or(c).to_ascii_lowercase()),
                    );
                    if more {
                        continue;
                    }
                    let mut want: Vec<&str> = Vec::new();
                    if sasl.is_some() {
                        if !offered.iter().any(|c| c == "sasl") {
                            return Err(format!(
                                "sasl_user is set but {} does not offer SASL (offered: {})",
                                cfg.server,
                                if offered.is_empty() {
                                    "nothing".to_string()
                                } else {
                                    offered.join(" ")
                                }
                            ));
                        }
                        want.push("sasl");
                    }
                    want.extend(WANTED_CAPS.iter().copied().filter(|c| offered.iter().any(|o| o == c)));
                    if want.is_empty() {
                        cap_ended = true;
                        w.send("CAP END").await?;
                    } else {
                        w.send(&format!("CAP REQ :{}", want.join(" "))).await?;
                    }
                }
                Command::CAP(_, CapSubCommand::ACK, a, b) => {
                    let list = b.or(a).unwrap_or_default();
                    let acked: Vec<String> = list
                        .split_whitespace()
                        .map(|c| c.trim_start_matches(['-', '~', '=']).to_ascii_lowercase())
                        .collect();
                    debug!(adapter = %self.name, caps = %acked.join(" "), "capabilities acknowledged");
                    if sasl.is_some() && acked.iter().any(|c| c == "sasl") {
                        w.send("AUTHENTICATE PLAIN").await?;
                    } else if !cap_ended {
                        cap_ended = true;
                        w.send("CAP END").await?;
                    }
                }
                Command::CAP(_, CapSubCommand::NAK, a, b) => {
                    let list = b.or(a).unwrap_or_default();
                    if sasl.is_some() {
                        return Err(format!("{} refused the capabilities `{list}`, so SASL cannot be used", cfg.server));
                    }
                    warn!(adapter = %self.name, caps = %list, "the server refused capabilities; going on without them");
                    if !cap_ended {
                        cap_ended = true;
                        w.send("CAP END").await?;
                    }
                }
                Command::AUTHENTICATE(d) if d == "+" => {
                    let Some((user, pass)) = sasl else { continue };
                    for chunk in sasl_plain_chunks(user, pass) {
                        w.send(&format!("AUTHENTICATE {chunk}")).await?;
                    }
                }
                Command::Response(code, args) => {
                    let text = args.last().cloned().unwrap_or_default();
                    match code {
                        Response::RPL_WELCOME => {
                            if let Some(n) = args.first().filter(|n| !n.is_empty() && *n != "*") {
                                nick = n.clone();
                            }
                            if sasl.is_some() && !sasl_done {
                                return Err(format!("{} ended registration before SASL completed", cfg.server));
                            }
                            return Ok(nick);
                        }
                        Response::ERR_NICKNAMEINUSE | Response::ERR_NICKCOLLISION => {
                            attempts += 1;
                            if attempts > NICK_ATTEMPTS {
                                return Err(format!(
                                    "the nick {} and {NICK_ATTEMPTS} variants are all taken on {}",
                                    cfg.nick, cfg.server
                                ));
                            }
                            nick = alternative_nick(&cfg.nick, attempts);
                            info!(adapter = %self.name, %nick, "nick in use; trying another");
                            w.send(&format!("NICK {nick}")).await?;
                        }
                        Response::ERR_ERRONEOUSNICKNAME => return Err(format!("{} refuses the nick {nick}: {text}", cfg.server)),
                        Response::ERR_PASSWDMISMATCH => return Err(format!("{} refused the server password: {text}", cfg.server)),
                        Response::ERR_YOUREBANNEDCREEP => return Err(format!("{} bans this connection: {text}", cfg.server)),
                        Response::RPL_LOGGEDIN => info!(adapter = %self.name, "SASL: {text}"),
                        Response::RPL_SASLSUCCESS | Response::ERR_SASLALREADY => {
                            sasl_done = true;
                            if !cap_ended {
                                cap_ended = true;
                                w.send("CAP END").await?;
                            }
                        }
                        Response::ERR_SASLFAIL | Response::ERR_SASLTOOLONG | Response::ERR_SASLABORT | Response::ERR_NICKLOCKED => {
                            let _ = w.send("QUIT :SASL failed").await;
                            return Err(format!(
                                "SASL PLAIN login as `{}` failed on {} ({}): {text}",
                                cfg.sasl_user.as_deref().unwrap_or(""),
                                cfg.server,
                                code as u16
                            ));
                        }
                        Response::ERR_UNKNOWNCOMMAND if sasl.is_some() && args.get(1).is_some_and(|c| c.eq_ignore_ascii_case("CAP")) => {
                            return Err(format!("sasl_user is set but {} knows no capabilities (no SASL)", cfg.server));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// `#chan KEY` for a configured channel with a key, else the channel.
    fn channel_with_key(&self, ch: &str) -> String {
        self.cfg
            .channels
            .iter()
            .find(|c| c.split(' ').next().is_some_and(|n| irc_eq(n, ch)))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|| ch.to_string())
    }

    /// One message after registration.
    async fn handle(&self, ctx: &AdapterContext, w: &Line, msg: Message, conn: &mut Conn) -> Result<(), String> {
        let nick = lock(&self.shared.nick).clone();
        let from_me = source_nick(msg.prefix.as_ref()).is_some_and(|n| irc_eq(n, &nick));
        match msg.command {
            Command::PING(a, _) => w.send(&format!("PONG :{a}")).await?,
            Command::ERROR(m) => return Err(format!("{} closed the link: {m}", self.cfg.server)),
            Command::PRIVMSG(target, text) => {
                if let Some(env) = self.envelope(&nick, msg.tags.as_deref(), msg.prefix.as_ref(), &target, &text)
                    && ctx.inbox.send(env).await.is_err()
                {
                    return Err("opsbot's inbox is closed".into());
                }
            }
            Command::NICK(new) if source_nick(msg.prefix.as_ref()).is_some_and(|n| irc_eq(n, &nick)) => {
                info!(adapter = %self.name, %new, "nick changed");
                *lock(&self.shared.nick) = new;
            }
            Command::JOIN(chans, _, _) if from_me => {
                self.shared.joined.send_modify(|j| {
                    for c in chans.split(',').filter(|c| !c.is_empty()) {
                        if !j.contains(&fold(c)) {
                            j.push(fold(c));
                        }
                    }
                });
            }
            Command::PART(chans, _) if from_me => {
                self.shared.joined.send_modify(|j| {
                    for c in chans.split(',') {
                        j.retain(|x| *x != fold(c));
                    }
                });
            }
            Command::KICK(chan, who, reason) if irc_eq(&who, &nick) => {
                warn!(adapter = %self.name, channel = %chan, reason = ?reason, "kicked; rejoining in {REJOIN_DELAY:?}");
                self.shared.joined.send_modify(|j| j.retain(|x| *x != fold(&chan)));
                conn.rejoins.push((Instant::now() + REJOIN_DELAY, chan));
            }
            Command::Raw(code, args) if matches!(code.as_str(), "310" | "320") => {
                // RPL_WHOISSERVICE / RPL_WHOISSPECIAL: `… NickServ :is a Network Service`
                if let Some(ns) = conn.nickserv.as_mut()
                    && args.get(1).is_some_and(|n| irc_eq(n, "NickServ"))
                    && args.last().is_some_and(|t| t.to_ascii_lowercase().contains("network service"))
                {
                    ns.1 = true;
                }
            }
            Command::Response(code, args) => match code {
                Response::RPL_USERHOST => {
                    let waiter = lock(&w.userhost).pop_front();
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(parse_userhost(args.last().map(String::as_str).unwrap_or("")));
                    }
                }
                Response::RPL_WHOISSERVER | Response::RPL_WHOISOPERATOR
                    if conn.nickserv.is_some() && args.get(1).is_some_and(|n| irc_eq(n, "NickServ")) =>
                {
                    // 312 `NickServ services.example.net :…`, or 313 `NickServ :is a Network Service`
                    let confirmed = match code {
                        Response::RPL_WHOISSERVER => args.get(2).is_some_and(|s| s.to_ascii_lowercase().contains("services")),
                        _ => args.last().is_some_and(|t| t.to_ascii_lowercase().contains("network service")),
                    };
                    if confirmed && let Some(ns) = conn.nickserv.as_mut() {
                        ns.1 = true;
                    }
                }
                Response::RPL_ENDOFWHOIS | Response::ERR_NOSUCHNICK
                    if conn.nickserv.is_some() && args.get(1).is_some_and(|n| irc_eq(n, "NickServ")) =>
                {
                    let confirmed = conn.nickserv.take().is_some_and(|n| n.1);
                    match &self.cfg.nickserv_password {
                        Some(pw) if confirmed => {
                            w.send(&format!("PRIVMSG NickServ :IDENTIFY {} {}", self.cfg.nick, render::sanitize(pw)))
                                .await?;
                        }
                        _ => warn!(
                            adapter = %self.name,
                            "NickServ is not a network service here (WHOIS shows no services server); not identifying (use SASL)"
                        ),
                    }
                }
                Response::ERR_CANNOTSENDTOCHAN
                | Response::ERR_NOSUCHNICK
                | Response::ERR_NOSUCHCHANNEL
                | Response::ERR_BANNEDFROMCHAN
                | Response::ERR_BADCHANNELKEY
                | Response::ERR_INVITEONLYCHAN
                | Response::ERR_CHANNELISFULL
                | Response::ERR_TOOMANYCHANNELS => {
                    warn!(adapter = %self.name, code = code as u16, "{}", args.get(1..).map(|a| a.join(" ")).unwrap_or_default());
                }
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }

    /// The envelope for a `PRIVMSG`, or `None` for what the bot ignores (its own messages,
    /// CTCP, messages to other targets).
    fn envelope(
        &self,
        nick: &str,
        tags: Option<&[irc_proto::message::Tag]>,
        prefix: Option<&Prefix>,
        target: &str,
        text: &str,
    ) -> Option<Envelope> {
        let Some(Prefix::Nickname(from, user, host)) = prefix else {
            return None;
        };
        if from.is_empty() || irc_eq(from, nick) {
            return None;
        }
        if text.starts_with('\x01') {
            debug!(adapter = %self.name, %from, "CTCP ignored");
            return None;
        }
        let text = strip_formatting(text);
        let channel = target.starts_with(['#', '&', '+', '!']);
        if !channel && !irc_eq(target, nick) {
            return None;
        }
        let (mentioned, text) = match strip_mention(&text, nick) {
            Some(rest) => (true, rest.to_string()),
            None => (false, text.trim().to_string()),
        };
        let account = tags
            .unwrap_or_default()
            .iter()
            .find(|t| t.0 == "account")
            .and_then(|t| t.1.as_deref())
            .filter(|a| !a.is_empty() && *a != "*");
        let id = match account {
            Some(a) => format!("account:{a}"),
            None => format!("{from}!{user}@{host}"),
        };
        Some(Envelope {
            user: UserId::new(&self.name, id),
            display_name: Some(from.clone()),
            // A direct place names the person, not just the nick: `post` checks that the nick
            // is still held by the same user@host before answering.
            place: Place::new(
                &self.name,
                if channel {
                    target.to_string()
                } else {
                    format!("{from}!{user}@{host}")
                },
            ),
            direct: !channel,
            mentioned,
            text,
            button: None,
        })
    }
}

#[async_trait::async_trait]
impl Adapter for IrcAdapter {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            direct: true,
            ..Capabilities::default()
        }
    }

    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        struct Clear<'a>(&'a Shared);
        impl Drop for Clear<'_> {
            fn drop(&mut self) {
                *lock(&self.0.out) = None;
                self.0.joined.send_replace(Vec::new());
            }
        }
        let _clear = Clear(&self.shared);
        self.shared.joined.send_replace(Vec::new());
        let r = self.session(ctx).await;
        if let Err(e) = &r {
            warn!(adapter = %self.name, "IRC connection ended: {e}");
        }
        r
    }

    async fn post(&self, place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        let target = match Target::parse(&place.channel) {
            Some(t) => t,
            None => {
                return Err(SendError::Rejected(format!(
                    "`{}` is not an IRC channel or a person's `nick!user@host`",
                    place.channel
                )));
            }
        };
        self.sender()?;
        let to = match target {
            Target::Channel(ch) => {
                self.wait_joined(ch).await?;
                ch
            }
            Target::Person { nick, userhost } => {
                self.check_holder(nick, userhost).await?;
                nick
            }
        };
        self.send_lines(&self.privmsgs(to, reply), None).await?;
        Ok(Posted { id: None })
    }

    /// Replies to a channel go out in one write (a burst of `PONG`s: one `sendto` instead of
    /// one per answer); to a person, one by one (each checks who holds the nick).
    async fn post_all(&self, place: &Place, replies: &[Reply]) -> Result<(), SendError> {
        let Some(Target::Channel(ch)) = Target::parse(&place.channel).filter(|_| replies.len() > 1) else {
            for r in replies {
                self.post(place, r).await?;
            }
            return Ok(());
        };
        self.sender()?;
        self.wait_joined(ch).await?;
        let lines: Vec<String> = replies.iter().flat_map(|r| self.privmsgs(ch, r)).collect();
        self.send_lines(&lines, None).await
    }
}

/// Where a reply goes.
enum Target<'a> {
    Channel(&'a str),
    /// A private conversation: the nick to send to and the `user@host` that must hold it.
    Person {
        nick: &'a str,
        userhost: &'a str,
    },
}

impl<'a> Target<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == ',';
        if s.is_empty() || s.len() > 300 || s.chars().any(bad) {
            return None;
        }
        if s.starts_with(['#', '&', '+', '!']) {
            return (!s.contains(':')).then_some(Target::Channel(s));
        }
        // A bare nick is refused: whoever holds it when the reply leaves would get it.
        let (nick, userhost) = s.split_once('!')?;
        let (user, host) = userhost.split_once('@')?;
        if nick.is_empty() || user.is_empty() || host.is_empty() || nick.contains([':', '@']) || user.contains(['!', ':']) {
            return None;
        }
        Some(Target::Person { nick, userhost })
    }
}

impl IrcAdapter {
    /// Writes lines to the connection, paced by `line_rate`/`line_burst`: each goes out once
    /// its token is there, and lines whose tokens are there already go out together, in one
    /// write. With `userhost`, the first line is a `USERHOST` and that is where its answer goes.
    /// A failed write ends the connection (the session reconnects).
    async fn send_lines(&self, lines: &[String], mut userhost: Option<UserhostWaiter>) -> Result<(), SendError> {
        let mut rest = lines;
        while !rest.is_empty() {
            self.shared.limiter.until_ready().await;
            let mut n = 1;
            while n < rest.len() && self.shared.limiter.check().is_ok() {
                n += 1;
            }
            let conn = self.sender()?;
            let mut w = conn.w.lock().await;
            if let Some(waiter) = userhost.take() {
                // Queued before the line is written: the answer may be read before this task
                // runs again.
                lock(&conn.userhost).push_back(waiter);
            }
            for l in &rest[..n] {
                w.queue(l);
            }
            w.flush().await.map_err(|e| conn.fail(e))?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The `PRIVMSG` lines that carry `reply` to `to`, split to fit.
    fn privmsgs(&self, to: &str, reply: &Reply) -> Vec<String> {
        let budget = render::text_budget(&self.current_nick(), &self.username, to);
        render::render(reply, self.cfg.max_lines as usize, budget)
            .into_iter()
            .map(|l| format!("PRIVMSG {to} :{l}"))
            .collect()
    }

    /// Waits (up to [`CHECK_TIMEOUT`]) until the bot is in `ch`: a reply written to a channel
    /// the bot was kicked from, or has not joined yet, would be lost while counting as sent.
    async fn wait_joined(&self, ch: &str) -> Result<(), SendError> {
        let want = fold(ch);
        let mut rx = self.shared.joined.subscribe();
        if rx.borrow().contains(&want) {
            return Ok(());
        }
        let configured = self.cfg.channels.iter().any(|c| c.split(' ').next().is_some_and(|n| irc_eq(n, ch)));
        if !configured {
            return Err(SendError::Rejected(format!(
                "the bot is not in {ch} and does not join it (not in `channels`)"
            )));
        }
        match tokio::time::timeout(CHECK_TIMEOUT, rx.wait_for(|j| j.contains(&want))).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(SendError::Unavailable(format!(
                "the bot is not in {ch} now (kicked, or not joined yet)"
            ))),
        }
    }

    /// Checks with `USERHOST` that `nick` is still held by `userhost`, so that a direct reply
    /// never goes to someone who took the nick after its owner left or changed it.
    async fn check_holder(&self, nick: &str, userhost: &str) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        self.send_lines(&[format!("USERHOST {nick}")], Some(tx)).await?;
        let answer = tokio::time::timeout(CHECK_TIMEOUT, rx)
            .await
            .map_err(|_| SendError::Unavailable(format!("{} did not answer USERHOST in time", self.cfg.server)))?
            .map_err(|_| SendError::Unavailable("the IRC connection closed".into()))?;
        match answer.iter().find(|(n, _)| irc_eq(n, nick)) {
            Some((_, uh)) if uh.eq_ignore_ascii_case(userhost) => Ok(()),
            _ => Err(SendError::Rejected(format!(
                "{nick}!{userhost} left or changed nick; a direct reply for them is dropped"
            ))),
        }
    }
}

/// The `(nick, user@host)` pairs of an `RPL_USERHOST` answer (`ana*=+~ana@host bob=-b@h`).
fn parse_userhost(list: &str) -> Vec<(String, String)> {
    list.split_whitespace()
        .filter_map(|e| {
            let (n, v) = e.split_once('=')?;
            Some((n.trim_end_matches('*').to_string(), v.trim_start_matches(['+', '-']).to_string()))
        })
        .collect()
}

/// A nick or channel name in the case [`irc_eq`] ignores.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The write side of the connection: whole lines, CR LF added, with a timeout. Cancel-safe:
/// what a dropped `send` did not write yet stays in `buf` and goes out first with the next
/// line, so a line is never cut short in the stream.
struct Writer<W> {
    w: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.queue(line);
        self.flush().await
    }

    /// Adds a line to what the next [`Writer::flush`] writes.
    fn queue(&mut self, line: &str) {
        // Lines are built from sanitised parts; this is the last guard against a line break.
        self.buf.extend(line.bytes().filter(|b| !matches!(b, b'\r' | b'\n' | 0)));
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Writes every line queued, in as few writes as the socket takes.
    async fn flush(&mut self) -> Result<(), String> {
        match tokio::time::timeout(WRITE_TIMEOUT, async {
            while !self.buf.is_empty() {
                let n = self.w.write(&self.buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                self.buf.drain(..n);
            }
            self.w.flush().await
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing to the IRC server failed: {e}")),
            Err(_) => Err("writing to the IRC server timed out".into()),
        }
    }
}

/// Reads lines of at most [`MAX_LINE`] bytes; longer ones are discarded whole (memory stays
/// bounded). Cancel-safe: nothing read is lost when a `select!` drops the future.
struct LineReader<R> {
    r: R,
    buf: Vec<u8>,
    discarding: bool,
    chunk: Box<[u8; 4096]>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(r: R) -> Self {
        Self {
            r,
            buf: Vec::with_capacity(1024),
            discarding: false,
            chunk: Box::new([0; 4096]),
        }
    }

    /// The next line without its CR LF, `None` at the end of the stream.
    async fn next_line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                while line.last() == Some(&b'\r') {
                    line.pop();
                }
                if std::mem::take(&mut self.discarding) {
                    continue;
                }
                if line.len() > MAX_LINE {
                    warn!(bytes = line.len(), "IRC: over-long line from the server discarded");
                    continue;
                }
                return Ok(Some(line));
            }
            if self.buf.len() > MAX_LINE {
                if !self.discarding {
                    warn!("IRC: over-long line from the server discarded");
                }
                self.discarding = true;
                self.buf.clear();
            }
            let n = self.r.read(&mut self.chunk[..]).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&self.chunk[..n]);
        }
    }
}

/// Parses one line (decoded lossily); malformed lines are logged and skipped.
fn parse(line: &[u8]) -> Option<Message> {
    let text = String::from_utf8_lossy(line);
    if matches!(text, std::borrow::Cow::Owned(_)) {
        debug!("IRC: a line that is not UTF-8 was decoded lossily");
    }
    let text: String = text.chars().filter(|&c| c != '\0' && c != '\r' && c != '\n').collect();
    if text.trim().is_empty() {
        return None;
    }
    // irc-proto slices by index; keep a parser bug on odd input from taking the bot down.
    match std::panic::catch_unwind(|| text.parse::<Message>()) {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            warn!("IRC: malformed line skipped: {e}");
            None
        }
        Err(_) => {
            warn!(line = %text.chars().take(200).collect::<String>(), "IRC: unparsable line skipped");
            None
        }
    }
}

fn source_nick(p: Option<&Prefix>) -> Option<&str> {
    match p {
        Some(Prefix::Nickname(n, _, _)) => Some(n),
        _ => None,
    }
}

/// The nick to try after `attempt` collisions: `nick_`, then `nick_2`, `nick_3`, …
fn alternative_nick(base: &str, attempt: u32) -> String {
    if attempt <= 1 {
        format!("{base}_")
    } else {
        format!("{base}_{attempt}")
    }
}

/// Case-insensitive nick/channel comparison (RFC 1459 case mapping: `[]\~` are the upper case
/// of `{}|^`).
pub fn irc_eq(a: &str, b: &str) -> bool {
    fn low(c: char) -> char {
        match c {
            '[' => '{',
            ']' => '}',
            '\\' => '|',
            '~' => '^',
            c => c.to_ascii_lowercase(),
        }
    }
    a.len() == b.len() && a.chars().zip(b.chars()).all(|(x, y)| low(x) == low(y))
}

/// `nick: text` or `nick, text` addressed to `nick` → `Some("text")`.
pub fn strip_mention<'a>(text: &'a str, nick: &str) -> Option<&'a str> {
    let t = text.trim_start();
    let head = t.get(..nick.len())?;
    if !irc_eq(head, nick) {
        return None;
    }
    let rest = &t[nick.len()..];
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix(','))?;
    Some(rest.trim())
}

/// Text without IRC formatting codes (bold, colours, italics, …).
pub fn strip_formatting(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x03' => {
                // ^C[fg[,bg]] with one or two digits each
                for _ in 0..2 {
                    if it.peek().is_some_and(char::is_ascii_digit) {
                        it.next();
                    }
                }
                let mut look = it.clone();
                if look.next() == Some(',') && look.peek().is_some_and(char::is_ascii_digit) {
                    it.next();
                    for _ in 0..2 {
                        if it.peek().is_some_and(char::is_ascii_digit) {
                            it.next();
                        }
                    }
                }
            }
            '\x04' => {
                for _ in 0..6 {
                    if it.peek().is_some_and(char::is_ascii_hexdigit) {
                        it.next();
                    }
                }
            }
            '\x02' | '\x0f' | '\x11' | '\x16' | '\x1d' | '\x1e' | '\x1f' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `AUTHENTICATE` payloads for SASL PLAIN: base64 of `user\0user\0pass` in 400-byte pieces
/// (a `+` after a full last piece).
pub fn sasl_plain_chunks(user: &str, pass: &str) -> Vec<String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}\0{user}\0{pass}"));
    let mut out: Vec<String> = b64
        .as_bytes()
        .chunks(400)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    if b64.len() % 400 == 0 {
        out.push("+".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply is written from the sender's own task, which may be dropped mid-line (a stop, a
    /// timeout around `post`): the rest of that line goes out before the next one, whole.
    #[tokio::test]
    async fn a_line_cut_off_by_a_dropped_send_is_finished_before_the_next() {
        use tokio::io::AsyncReadExt;
        let (a, mut server) = tokio::io::duplex(8);
        let mut w = Writer { w: a, buf: Vec::new() };
        let first = format!("PRIVMSG #ops :{}", "x".repeat(40));
        // The pipe takes 8 bytes and is then full: the send is dropped while it waits.
        assert!(tokio::time::timeout(Duration::from_millis(50), w.send(&first)).await.is_err());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.map(|_| got)
        });
        w.send("PRIVMSG #ops :second").await.unwrap();
        drop(w);
        let got = String::from_utf8(reader.await.unwrap().unwrap()).unwrap();
        assert_eq!(got, format!("{first}\r\nPRIVMSG #ops :second\r\n"));
    }

    #[test]
    fn mentions() {
        assert_eq!(strip_mention("opsbot: deploy web", "opsbot"), Some("deploy web"));
        assert_eq!(strip_mention("OpsBot, deploy", "opsbot"), Some("deploy"));
        assert_eq!(strip_mention("opsbot_: help", "opsbot_"), Some("help"));
        assert_eq!(strip_mention("opsbot: help", "opsbot_"), None);
        assert_eq!(strip_mention("opsbotx: help", "opsbot"), None);
        assert_eq!(strip_mention("!deploy", "opsbot"), None);
        assert_eq!(strip_mention("中文", "opsbot"), None);
    }

    #[test]
    fn formatting_is_stripped() {
        assert_eq!(strip_formatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f"), "bold red italic");
        assert_eq!(strip_formatting("\x0312,text"), ",text");
    }

    #[test]
    fn sasl_plain() {
        assert_eq!(sasl_plain_chunks("ana", "pw"), vec!["YW5hAGFuYQBwdw==".to_string()]);
        let long = sasl_plain_chunks("u", &"p".repeat(600));
        assert!(long.iter().all(|c| c.len() <= 400) && long.len() == 3);
    }

    #[test]
    fn nicks() {
        assert!(irc_eq("Ops[bot]", "ops{BOT}"));
        assert_eq!(alternative_nick("opsbot", 1), "opsbot_");
        assert_eq!(alternative_nick("opsbot", 2), "opsbot_2");
    }

    #[test]
    fn userhost_answers_and_places() {
        assert_eq!(
            parse_userhost("ana*=+~ana@127.0.0.1 Bob=-b@2001:db8::1"),
            vec![("ana".into(), "~ana@127.0.0.1".into()), ("Bob".into(), "b@2001:db8::1".into())]
        );
        assert!(parse_userhost("").is_empty());
        assert!(matches!(Target::parse("#ops"), Some(Target::Channel("#ops"))));
        assert!(matches!(
            Target::parse("ana!~a@2001:db8::1"),
            Some(Target::Person {
                nick: "ana",
                userhost: "~a@2001:db8::1"
            })
        ));
        for bad in [
            "ana",
            "",
            "#a b",
            "#a:b",
            "ana!x",
            "ana!@h",
            "a:b!u@h",
            "ana!u@h,bob",
            "ana!u@h\r\nQUIT",
        ] {
            assert!(Target::parse(bad).is_none(), "{bad:?}");
        }
        assert_eq!(fold("Ops[Bot]"), fold("ops{bot}"));
    }

    #[test]
    fn garbage_does_not_parse_or_panic() {
        for l in [
            &b"\xff\xfe garbage"[..],
            b":",
            b"@",
            b"@a=b",
            b":x",
            b" :",
            b"PRIVMSG",
            b"\r",
            b"001",
        ] {
            let _ = parse(l);
        }
        let m = parse(b"@account=ana;time=x :ana!~a@h PRIVMSG #ops :hi").expect("parses");
        assert!(matches!(m.command, Command::PRIVMSG(..)));
    }
}
