//! Chat platforms: `[adapters.NAME]`, one table per connection, `type` saying which platform.
//!
//! The table's name is the adapter's name: it is the `platform` part of the accounts it sees
//! (`[people.ana] accounts = ["libera:ana!ana@host"]`) and of its places. Several adapters of
//! one type (two IRC networks) are several tables.

use super::{Cx, valid_name};
use crate::secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;
use toml::de::DeValue;

/// Names an adapter may not take: the doors opsbot has built in.
pub const RESERVED_ADAPTER_NAMES: &[&str] = &["web", "cli", "terminal", "api"];

/// One chat connection (`[adapters.NAME]`).
#[derive(Clone, Debug)]
pub struct AdapterConfig {
    /// The table's name: the platform part of its accounts and places.
    pub name: String,
    /// Messages per second the runtime sends at most (`send_rate`, default 1; IRC also paces
    /// the lines of one message with `line_rate`).
    pub send_rate: f64,
    /// Messages that may go at once before `send_rate` applies (`send_burst`, default 5).
    pub send_burst: u32,
    /// Which platform, with its settings.
    pub kind: AdapterKind,
}

/// The platform of an adapter and its settings.
#[derive(Clone, Debug)]
pub enum AdapterKind {
    /// `type = "irc"`
    Irc(IrcConfig),
    /// `type = "matrix"`
    Matrix(MatrixConfig),
    /// `type = "xmpp"`
    Xmpp(XmppConfig),
    /// `type = "slack"`
    Slack(SlackConfig),
    /// `type = "mattermost"`
    Mattermost(MattermostConfig),
}

impl AdapterKind {
    /// The `type` word.
    pub fn type_name(&self) -> &'static str {
        match self {
            AdapterKind::Irc(_) => "irc",
            AdapterKind::Matrix(_) => "matrix",
            AdapterKind::Xmpp(_) => "xmpp",
            AdapterKind::Slack(_) => "slack",
            AdapterKind::Mattermost(_) => "mattermost",
        }
    }
}

/// An IRC network (`type = "irc"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrcConfig {
    /// Server host name.
    pub server: String,
    /// Port; default 6697 with TLS, 6667 without.
    pub port: Option<u16>,
    /// TLS (default true). Plain connections only for a server on this machine or in tests.
    #[serde(default = "yes")]
    pub tls: bool,
    /// A PEM file of extra CA certificates to trust (a private network's CA); the system's
    /// roots are always trusted.
    pub tls_ca: Option<PathBuf>,
    /// The nick to ask for; on a collision `_` is appended (then digits).
    pub nick: String,
    /// The user name (ident), default the nick.
    pub username: Option<String>,
    /// The real name (gecos), default "opsbot".
    pub realname: Option<String>,
    /// Server password (`PASS`), by reference: `"${env:IRC_SERVER_PASSWORD}"`.
    pub server_password: Option<String>,
    /// SASL PLAIN account name (needs `sasl_password`).
    pub sasl_user: Option<String>,
    /// SASL PLAIN password, by reference.
    pub sasl_password: Option<String>,
    /// Sent to NickServ as `IDENTIFY` after connecting, by reference.
    pub nickserv_password: Option<String>,
    /// Channels to join: `"#ops"`, or `"#ops KEY"` for a keyed channel.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Lines per second sent at most (default 2): networks disconnect clients that flood.
    #[serde(default = "irc_line_rate")]
    pub line_rate: f64,
    /// Lines that may go at once before `line_rate` applies (default 4).
    #[serde(default = "irc_line_burst")]
    pub line_burst: u32,
    /// Lines one reply may take before the rest is cut with a note (default 12); an IRC job
    /// card is a few short lines whatever this says.
    #[serde(default = "irc_max_lines")]
    pub max_lines: u32,
}

fn yes() -> bool {
    true
}
fn irc_line_rate() -> f64 {
    2.0
}
fn irc_line_burst() -> u32 {
    4
}
fn irc_max_lines() -> u32 {
    12
}

/// How a Matrix adapter answers invitations to rooms.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitePolicy {
    /// Never join a room it was invited to (only `rooms` are joined). The default.
    #[default]
    Ignore,
    /// Join when invited by an account listed in `[people.*]`.
    People,
    /// Join any room it is invited to.
    Anyone,
}

/// A Matrix account on a homeserver (`type = "matrix"`), over the Client-Server API.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixConfig {
    /// The homeserver's client URL, e.g. `https://matrix.example.org`.
    pub homeserver: String,
    /// The bot's user id, `@opsbot:example.org`.
    pub user_id: String,
    /// An access token, by reference (preferred).
    pub access_token: Option<String>,
    /// Or a password to log in with, by reference.
    pub password: Option<String>,
    /// Device id to log in as (keeps one device across restarts), default `OPSBOT`.
    pub device_id: Option<String>,
    /// Rooms to join at start: ids (`!abc:example.org`) or aliases (`#ops:example.org`).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// `ignore` (default), `people` or `anyone`.
    #[serde(default)]
    pub invites: InvitePolicy,
    /// Answer in a thread under the command (`m.thread`) instead of in the room (default false).
    #[serde(default)]
    pub threads: bool,
    /// How long one `/sync` long-poll waits (default "30s").
    pub sync_timeout: Option<String>,
    /// A PEM file of extra CA certificates to trust.
    pub tls_ca: Option<PathBuf>,
}

/// An XMPP account (`type = "xmpp"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppConfig {
    /// The bot's JID, `opsbot@example.org`.
    pub jid: String,
    /// Its password, by reference.
    pub password: String,
    /// `host:port` to connect to, when not found from the JID's domain.
    pub server: Option<String>,
    /// Multi-user chat rooms to join, `ops@conference.example.org`.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// The nickname in rooms (default the JID's local part).
    pub nick: Option<String>,
    /// Allow a connection without TLS when the server offers no STARTTLS (default false; for
    /// a server on this machine or tests only — the password then travels in clear).
    #[serde(default)]
    pub allow_plain: bool,
    /// A PEM file of extra CA certificates to trust.
    pub tls_ca: Option<PathBuf>,
}

/// How a Slack app receives events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlackMode {
    /// Socket Mode: opsbot opens a WebSocket to Slack (needs `app_token`; no public URL). The
    /// default.
    #[default]
    Socket,
    /// The HTTP Events API: Slack calls `/hooks/NAME/events`, `/hooks/NAME/commands` and
    /// `/hooks/NAME/interactive` on opsbot's web server (needs `signing_secret` and a public
    /// HTTPS address).
    Events,
}

/// A Slack app in one workspace (`type = "slack"`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// `socket` (default) or `events`.
    #[serde(default)]
    pub mode: SlackMode,
    /// The bot token (`xoxb-…`), by reference.
    pub bot_token: String,
    /// The app-level token (`xapp-…`, scope `connections:write`) for Socket Mode, by reference.
    pub app_token: Option<String>,
    /// The app's signing secret, by reference: required with `mode = "events"`.
    pub signing_secret: Option<String>,
    /// The Web API's base URL (default `https://slack.com/api`; GovSlack:
    /// `https://slack-gov.com/api`; tests point it at a local fake).
    #[serde(default = "slack_api_url")]
    pub api_url: String,
    /// Channel ids (`C0123…`) the bot answers in; empty (the default) means every channel it
    /// is a member of. Direct messages are always answered.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Answer a command said at the top of a channel in a thread under it (default false:
    /// in the channel). A command said in a thread is always answered in that thread.
    #[serde(default)]
    pub threads: bool,
    /// A PEM file of extra CA certificates to trust (a TLS-inspecting proxy's CA).
    pub tls_ca: Option<PathBuf>,
}

fn slack_api_url() -> String {
    "https://slack.com/api".into()
}

/// A Mattermost account (`type = "mattermost"`): a bot account's or a person's access token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostConfig {
    /// The server's URL, e.g. `https://chat.example.com`.
    pub url: String,
    /// The bot account's token or a personal access token, by reference.
    pub token: String,
    /// The token(s) Mattermost shows for opsbot's slash command(s), by reference; a slash
    /// command request whose token is not one of them is refused. Without it, slash commands
    /// are refused.
    pub command_token: Option<String>,
    /// The address Mattermost reaches opsbot's web server at, for message buttons
    /// (`CALLBACK_URL/hooks/NAME/actions`); default `[web] public_url`. Without either,
    /// messages carry no buttons.
    pub callback_url: Option<String>,
    /// Channel ids the bot answers in; empty (the default) means every channel it is a member
    /// of. Direct messages are always answered.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Answer a command said at the top of a channel in a thread under it (default false).
    #[serde(default)]
    pub threads: bool,
    /// A PEM file of extra CA certificates to trust.
    pub tls_ca: Option<PathBuf>,
}

/// What a secret setting shows in debug output: whether it is set, never its value.
fn hidden(v: &Option<String>) -> &'static str {
    if v.is_some() { "••••" } else { "none" }
}

impl std::fmt::Debug for IrcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrcConfig")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("nick", &self.nick)
            .field("username", &self.username)
            .field("realname", &self.realname)
            .field("server_password", &hidden(&self.server_password))
            .field("sasl_user", &self.sasl_user)
            .field("sasl_password", &hidden(&self.sasl_password))
            .field("nickserv_password", &hidden(&self.nickserv_password))
            .field(
                "channels",
                &self.channels.iter().map(|c| c.split(' ').next().unwrap_or("")).collect::<Vec<_>>(),
            )
            .field("line_rate", &self.line_rate)
            .field("line_burst", &self.line_burst)
            .field("max_lines", &self.max_lines)
            .finish()
    }
}

impl std::fmt::Debug for MatrixConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatrixConfig")
            .field("homeserver", &self.homeserver)
            .field("user_id", &self.user_id)
            .field("access_token", &hidden(&self.access_token))
            .field("password", &hidden(&self.password))
            .field("device_id", &self.device_id)
            .field("rooms", &self.rooms)
            .field("invites", &self.invites)
            .field("threads", &self.threads)
            .field("sync_timeout", &self.sync_timeout)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl std::fmt::Debug for XmppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XmppConfig")
            .field("jid", &self.jid)
            .field("password", &"••••")
            .field("server", &self.server)
            .field("rooms", &self.rooms)
            .field("nick", &self.nick)
            .field("allow_plain", &self.allow_plain)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl std::fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackConfig")
            .field("mode", &self.mode)
            .field("bot_token", &"••••")
            .field("app_token", &hidden(&self.app_token))
            .field("signing_secret", &hidden(&self.signing_secret))
            .field("api_url", &self.api_url)
            .field("channels", &self.channels)
            .field("threads", &self.threads)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl std::fmt::Debug for MattermostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MattermostConfig")
            .field("url", &self.url)
            .field("token", &"••••")
            .field("command_token", &hidden(&self.command_token))
            .field("callback_url", &self.callback_url)
            .field("channels", &self.channels)
            .field("threads", &self.threads)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    send_rate: Option<Spanned<f64>>,
    send_burst: Option<Spanned<u32>>,
    #[serde(default)]
    enabled: Option<bool>,
}

/// Keys every adapter table has besides its platform's own.
const COMMON_KEYS: &[&str] = &["type", "send_rate", "send_burst", "enabled"];

/// The adapter types this build knows.
pub const ADAPTER_TYPES: &[&str] = &["irc", "matrix", "xmpp", "slack", "mattermost"];

impl<'a> Cx<'a> {
    /// Reads `[adapters.*]`; disabled ones (`enabled = false`) are checked and left out.
    pub(super) fn adapters(&mut self, value: Option<&Spanned<DeValue<'a>>>) -> Vec<AdapterConfig> {
        let mut out = Vec::new();
        let Some(v) = value else { return out };
        let DeValue::Table(t) = v.get_ref() else {
            self.err(
                v.span(),
                "`adapters` must be tables: [adapters.NAME]",
                Some("e.g. [adapters.irc] with type = \"irc\"".into()),
            );
            return out;
        };
        for (name, body) in t.iter() {
            let n = name.get_ref().to_string();
            if !valid_name(&n, true) || n.len() > 32 {
                self.err(
                    name.span(),
                    format!("`{n}` is not a valid adapter name"),
                    Some("use lowercase letters, digits, `-` and `_`, starting with a letter (at most 32)".into()),
                );
                continue;
            }
            if RESERVED_ADAPTER_NAMES.contains(&n.as_str()) {
                self.err(
                    name.span(),
                    format!("`{n}` is opsbot's own door and cannot name an adapter"),
                    Some("pick another name, e.g. the network's: [adapters.libera]".into()),
                );
                continue;
            }
            let DeValue::Table(fields) = body.get_ref() else {
                self.err(body.span(), format!("`adapters.{n}` must be a table"), None);
                continue;
            };
            // Split the table: the common keys here, the rest for the platform's own struct.
            let mut common = toml::de::DeTable::new();
            let mut own = toml::de::DeTable::new();
            for (k, val) in fields.iter() {
                if COMMON_KEYS.contains(&k.get_ref().as_ref()) {
                    common.insert(k.clone(), val.clone());
                } else {
                    own.insert(k.clone(), val.clone());
                }
            }
            let common_v = Spanned::new(body.span(), DeValue::Table(common));
            let own_v = Spanned::new(body.span(), DeValue::Table(own));
            let Some(c) = self.typed::<RawCommon>(&common_v) else {
                continue;
            };
            let send_rate = match c.send_rate {
                Some(r) if r.get_ref().is_finite() && *r.get_ref() > 0.0 && *r.get_ref() <= 100_000.0 => *r.get_ref(),
                Some(r) => {
                    self.err(r.span(), "send_rate must be between 0 and 100000 messages per second", None);
                    1.0
                }
                None => 1.0,
            };
            let send_burst = match c.send_burst {
                Some(b) if (1..=100_000).contains(b.get_ref()) => *b.get_ref(),
                Some(b) => {
                    self.err(b.span(), "send_burst must be between 1 and 100000", None);
                    5
                }
                None => 5,
            };
            let kind = match c.kind.get_ref().as_str() {
                "irc" => self
                    .typed::<IrcConfig>(&own_v)
                    .and_then(|cfg| self.check_irc(&n, cfg, fields))
                    .map(AdapterKind::Irc),
                "matrix" => self
                    .typed::<MatrixConfig>(&own_v)
                    .and_then(|cfg| self.check_matrix(&n, cfg, fields))
                    .map(AdapterKind::Matrix),
                "xmpp" => self
                    .typed::<XmppConfig>(&own_v)
                    .and_then(|cfg| self.check_xmpp(&n, cfg, fields))
                    .map(AdapterKind::Xmpp),
                "slack" => self
                    .typed::<SlackConfig>(&own_v)
                    .and_then(|cfg| self.check_slack(&n, cfg, fields))
                    .map(AdapterKind::Slack),
                "mattermost" => self
                    .typed::<MattermostConfig>(&own_v)
                    .and_then(|cfg| self.check_mattermost(&n, cfg, fields))
                    .map(AdapterKind::Mattermost),
                other => {
                    let hint = crate::job::closest(other, ADAPTER_TYPES.iter().copied())
                        .map(|s| format!("did you mean \"{s}\"?"))
                        .unwrap_or_else(|| format!("known types: {}", ADAPTER_TYPES.join(", ")));
                    self.err(c.kind.span(), format!("unknown adapter type `{other}`"), Some(hint));
                    None
                }
            };
            if let Some(kind) = kind
                && c.enabled != Some(false)
            {
                out.push(AdapterConfig {
                    name: n,
                    send_rate,
                    send_burst,
                    kind,
                });
            }
        }
        out
    }

    fn typed<T: for<'de> Deserialize<'de>>(&mut self, v: &Spanned<DeValue<'a>>) -> Option<T> {
        match T::deserialize(toml::de::ValueDeserializer::from(v.clone())) {
            Ok(t) => Some(t),
            Err(e) => {
                self.toml_err(e, v.span());
                None
            }
        }
    }

    /// The span of a key's value in an adapter table (for positioned errors), else the table's.
    fn span_of(fields: &toml::de::DeTable<'a>, key: &str) -> Option<std::ops::Range<usize>> {
        fields.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v.span())
    }

    /// Reports a mistake in a key of an adapter table, positioned at its value (or the table's
    /// start when the key is missing); always false, for `ok &= …`.
    fn wrong(&mut self, fields: &toml::de::DeTable<'a>, key: &str, message: impl Into<String>, hint: Option<String>) -> bool {
        self.err(Self::span_of(fields, key).unwrap_or(0..0), message, hint);
        false
    }

    /// A secret setting: must be a `${env:…}`/`${file:…}` reference; resolved when secrets are.
    fn secret_field(&mut self, adapter: &str, key: &str, value: &mut Option<String>, fields: &toml::de::DeTable<'a>) -> bool {
        let Some(v) = value.as_mut() else { return true };
        let span = Self::span_of(fields, key).unwrap_or(0..0);
        if !secret::has_named_reference(v) {
            self.err(
                span,
                format!("`{key}` of adapter `{adapter}` is a secret written into the config"),
                Some(format!(
                    "secrets only by reference: {key} = \"${{env:{}_{}}}\" or \"${{file:/run/secrets/{adapter}-{key}}}\"",
                    adapter.to_uppercase().replace('-', "_"),
                    key.to_uppercase()
                )),
            );
            return false;
        }
        if self.opts.resolve_secrets {
            match secret::resolve(v, &self.dir) {
                Ok(s) => *v = s.trim_end_matches(['\n', '\r']).to_string(),
                Err(msg) => {
                    self.err(
                        span,
                        msg,
                        Some("set it before starting opsbot, or run `opsbot check --no-secrets` where secrets are absent".into()),
                    );
                    return false;
                }
            }
        } else if let Err(msg) = secret::check_syntax(v) {
            self.err(span, msg, None);
            return false;
        }
        true
    }

    fn ca_file(&mut self, adapter: &str, ca: &mut Option<PathBuf>, fields: &toml::de::DeTable<'a>) -> bool {
        if let Some(p) = ca.as_mut() {
            *p = self.dir.join(&*p);
            if self.opts.resolve_secrets && !p.is_file() {
                return self.wrong(
                    fields,
                    "tls_ca",
                    format!("tls_ca of adapter `{adapter}`: {} is not a readable file", p.display()),
                    Some("give a PEM file of CA certificates, relative to the config file's folder".into()),
                );
            }
        }
        true
    }

    fn check_irc(&mut self, n: &str, mut c: IrcConfig, fields: &toml::de::DeTable<'a>) -> Option<IrcConfig> {
        let mut ok = true;
        let bad = |s: &str| s.is_empty() || s.chars().any(|ch| ch.is_whitespace() || ch.is_control());
        if bad(&c.server) {
            ok &= self.wrong(fields, "server", "`server` must be a host name", None);
        }
        let nick_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 30
                && !s.starts_with(|ch: char| ch.is_ascii_digit() || ch == '-')
                && s.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_[]\\`^{}|".contains(ch))
        };
        if !nick_ok(&c.nick) {
            ok &= self.wrong(
                fields,
                "nick",
                format!("`{}` is not a valid IRC nick", c.nick),
                Some("letters, digits and -_[]\\`^{}|, not starting with a digit or `-`, at most 30".into()),
            );
        }
        for (key, v) in [("username", &c.username), ("realname", &c.realname)] {
            if let Some(v) = v
                && (v.is_empty() || v.chars().any(|ch| ch.is_control() || (key == "username" && ch == ' ')))
            {
                ok &= self.wrong(fields, key, format!("`{key}` has characters IRC cannot carry"), None);
            }
        }
        for ch in &c.channels {
            let name = ch.split(' ').next().unwrap_or("");
            if !name.starts_with(['#', '&', '+', '!'])
                || name.len() < 2
                || ch.chars().any(|x| x.is_control() || x == ',')
                || ch.split(' ').count() > 2
            {
                ok &= self.wrong(
                    fields,
                    "channels",
                    format!("`{ch}` is not an IRC channel"),
                    Some("write \"#ops\", or \"#ops KEY\" for a channel with a key".into()),
                );
            }
        }
        if c.sasl_user.is_some() != c.sasl_password.is_some() {
            self.err(
                Self::span_of(fields, "sasl_user")
                    .or(Self::span_of(fields, "sasl_password"))
                    .unwrap_or(0..0),
                "SASL needs both `sasl_user` and `sasl_password`",
                None,
            );
            ok = false;
        }
        if !(c.line_rate.is_finite() && c.line_rate > 0.0 && c.line_rate <= 100_000.0) {
            ok &= self.wrong(fields, "line_rate", "line_rate must be between 0 and 100000 lines per second", None);
        }
        if !(1..=100_000).contains(&c.line_burst) {
            ok &= self.wrong(fields, "line_burst", "line_burst must be between 1 and 100000", None);
        }
        if !(2..=500).contains(&c.max_lines) {
            ok &= self.wrong(fields, "max_lines", "max_lines must be between 2 and 500", None);
        }
        ok &= self.secret_field(n, "server_password", &mut c.server_password, fields);
        ok &= self.secret_field(n, "sasl_password", &mut c.sasl_password, fields);
        ok &= self.secret_field(n, "nickserv_password", &mut c.nickserv_password, fields);
        ok &= self.ca_file(n, &mut c.tls_ca, fields);
        ok.then_some(c)
    }

    fn check_matrix(&mut self, n: &str, mut c: MatrixConfig, fields: &toml::de::DeTable<'a>) -> Option<MatrixConfig> {
        let mut ok = true;
        if !(c.homeserver.starts_with("https://") || c.homeserver.starts_with("http://")) || c.homeserver.chars().any(char::is_whitespace) {
            ok &= self.wrong(
                fields,
                "homeserver",
                format!("`{}` is not a homeserver URL", c.homeserver),
                Some("write the client URL, e.g. \"https://matrix.example.org\"".into()),
            );
        }
        c.homeserver = c.homeserver.trim_end_matches('/').to_string();
        let uid_ok = c.user_id.starts_with('@') && c.user_id.contains(':') && !c.user_id.chars().any(char::is_whitespace);
        if !uid_ok {
            ok &= self.wrong(
                fields,
                "user_id",
                format!("`{}` is not a Matrix user id", c.user_id),
                Some("write it in full: \"@opsbot:example.org\"".into()),
            );
        }
        if c.access_token.is_none() == c.password.is_none() {
            self.err(
                Self::span_of(fields, "access_token")
                    .or(Self::span_of(fields, "password"))
                    .unwrap_or(0..0),
                format!("adapter `{n}` needs exactly one of `access_token` and `password`"),
                Some("an access token is preferred: access_token = \"${env:MATRIX_TOKEN}\"".into()),
            );
            ok = false;
        }
        for r in &c.rooms {
            if !(r.starts_with('!') || r.starts_with('#')) || !r.contains(':') || r.chars().any(char::is_whitespace) {
                ok &= self.wrong(
                    fields,
                    "rooms",
                    format!("`{r}` is not a Matrix room id or alias"),
                    Some("write \"!roomid:example.org\" or \"#ops:example.org\"".into()),
                );
            }
        }
        if let Some(t) = &c.sync_timeout
            && humantime::parse_duration(t)
                .map(|d| d.is_zero() || d > Duration::from_secs(300))
                .unwrap_or(true)
        {
            ok &= self.wrong(fields, "sync_timeout", "sync_timeout must be a duration between 1s and 5m", None);
        }
        ok &= self.secret_field(n, "access_token", &mut c.access_token, fields);
        ok &= self.secret_field(n, "password", &mut c.password, fields);
        ok &= self.ca_file(n, &mut c.tls_ca, fields);
        ok.then_some(c)
    }

    fn check_xmpp(&mut self, n: &str, mut c: XmppConfig, fields: &toml::de::DeTable<'a>) -> Option<XmppConfig> {
        let mut ok = true;
        let jid_ok = |j: &str| {
            let (local, domain) = j.split_once('@').unwrap_or(("", j));
            !local.is_empty() && !domain.is_empty() && !domain.contains('/') && !j.chars().any(|ch| ch.is_whitespace() || ch.is_control())
        };
        if !jid_ok(&c.jid) {
            ok &= self.wrong(
                fields,
                "jid",
                format!("`{}` is not a bare JID", c.jid),
                Some("write \"opsbot@example.org\" (no resource)".into()),
            );
        }
        for r in &c.rooms {
            if !jid_ok(r) {
                ok &= self.wrong(
                    fields,
                    "rooms",
                    format!("`{r}` is not a room JID"),
                    Some("write \"ops@conference.example.org\"".into()),
                );
            }
        }
        if let Some(s) = &c.server
            && s.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            ok &= self.wrong(fields, "server", format!("`{s}` is not host:port"), None);
        }
        ok &= self.required_secret(n, "password", &mut c.password, fields);
        ok &= self.ca_file(n, &mut c.tls_ca, fields);
        ok.then_some(c)
    }

    /// An `http(s)://` URL without spaces; the trailing `/` dropped.
    fn url_field(&mut self, fields: &toml::de::DeTable<'a>, key: &str, url: &mut String, example: &str) -> bool {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return self.wrong(
                fields,
                key,
                format!("`{url}` is not an http(s) URL"),
                Some(format!("e.g. {key} = \"{example}\"")),
            );
        }
        *url = url.trim_end_matches('/').to_string();
        true
    }

    /// A required secret setting.
    fn required_secret(&mut self, adapter: &str, key: &str, value: &mut String, fields: &toml::de::DeTable<'a>) -> bool {
        let mut v = Some(std::mem::take(value));
        let ok = self.secret_field(adapter, key, &mut v, fields);
        *value = v.unwrap_or_default();
        ok
    }

    /// Channel ids: letters and digits only (platform ids, not names).
    fn channel_ids(&mut self, fields: &toml::de::DeTable<'a>, channels: &[String], example: &str) -> bool {
        let mut ok = true;
        for ch in channels {
            if ch.is_empty() || ch.len() > 64 || !ch.chars().all(|c| c.is_ascii_alphanumeric()) {
                ok &= self.wrong(
                    fields,
                    "channels",
                    format!("`{ch}` is not a channel id"),
                    Some(format!("write the channel's id (e.g. \"{example}\"), not its name")),
                );
            }
        }
        ok
    }

    fn check_slack(&mut self, n: &str, mut c: SlackConfig, fields: &toml::de::DeTable<'a>) -> Option<SlackConfig> {
        let mut ok = self.url_field(fields, "api_url", &mut c.api_url, "https://slack.com/api");
        match c.mode {
            SlackMode::Socket if c.app_token.is_none() => {
                ok &= self.wrong(
                    fields,
                    "mode",
                    format!("adapter `{n}` uses Socket Mode, which needs `app_token` (an `xapp-…` token with connections:write)"),
                    Some(format!(
                        "app_token = \"${{env:{}_APP_TOKEN}}\", or mode = \"events\" with a signing_secret",
                        n.to_uppercase().replace('-', "_")
                    )),
                );
            }
            SlackMode::Events if c.signing_secret.is_none() => {
                ok &= self.wrong(
                    fields,
                    "mode",
                    format!("adapter `{n}` uses the Events API, which needs `signing_secret` to check that requests come from Slack"),
                    Some(format!(
                        "signing_secret = \"${{env:{}_SIGNING_SECRET}}\" (Basic Information → App Credentials)",
                        n.to_uppercase().replace('-', "_")
                    )),
                );
            }
            _ => {}
        }
        ok &= self.channel_ids(fields, &c.channels, "C0123ABCD");
        ok &= self.required_secret(n, "bot_token", &mut c.bot_token, fields);
        ok &= self.secret_field(n, "app_token", &mut c.app_token, fields);
        ok &= self.secret_field(n, "signing_secret", &mut c.signing_secret, fields);
        ok &= self.ca_file(n, &mut c.tls_ca, fields);
        ok.then_some(c)
    }

    fn check_mattermost(&mut self, n: &str, mut c: MattermostConfig, fields: &toml::de::DeTable<'a>) -> Option<MattermostConfig> {
        let mut ok = self.url_field(fields, "url", &mut c.url, "https://chat.example.com");
        if let Some(cb) = c.callback_url.as_mut() {
            ok &= self.url_field(fields, "callback_url", cb, "https://opsbot.example.com");
        }
        ok &= self.channel_ids(fields, &c.channels, "4xp9fdt2pbbcpfk3jbw5y3w9yc");
        ok &= self.required_secret(n, "token", &mut c.token, fields);
        ok &= self.secret_field(n, "command_token", &mut c.command_token, fields);
        ok &= self.ca_file(n, &mut c.tls_ca, fields);
        ok.then_some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, LoadError, LoadOptions};
    use std::path::Path;

    fn load(text: &str) -> Result<Config, Vec<String>> {
        // SAFETY: tests set variables only they read, before any thread reads them.
        unsafe { std::env::set_var("OPSBOT_TEST_ADAPTER_SECRET", "s3cret\n") };
        let text = format!("{text}\n[jobs.hello]\nrunner = {{ type = \"exec\", argv = [\"true\"] }}\n");
        match Config::parse(&text, Path::new("/tmp/opsbot-adapters.toml"), LoadOptions::default()) {
            Ok(c) => Ok(c),
            Err(LoadError::Invalid(d)) => Err(d.iter().map(|d| format!("{}:{}: {}", d.line, d.col, d.message)).collect()),
            Err(e) => Err(vec![e.to_string()]),
        }
    }

    #[test]
    fn every_platform_reads_with_defaults_and_secrets_by_reference() {
        let c = load(
            r##"
[adapters.libera]
type = "irc"
server = "irc.libera.chat"
nick = "opsbot"
sasl_user = "opsbot"
sasl_password = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
channels = ["#ops", "#secret key"]

[adapters.matrix]
type = "matrix"
homeserver = "https://matrix.example.org/"
user_id = "@opsbot:example.org"
access_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
rooms = ["#ops:example.org", "!abc:example.org"]
invites = "people"
send_rate = 0.5

[adapters.jabber]
type = "xmpp"
jid = "opsbot@example.org"
password = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
rooms = ["ops@conference.example.org"]

[adapters.off]
type = "irc"
enabled = false
server = "x"
nick = "y"
"##,
        )
        .unwrap();
        assert_eq!(c.adapters.len(), 3, "the disabled one is left out");
        let AdapterKind::Irc(irc) = &c.adapters[0].kind else { panic!() };
        assert_eq!((irc.tls, irc.port, irc.line_rate, irc.max_lines), (true, None, 2.0, 12));
        assert_eq!(irc.sasl_password.as_deref(), Some("s3cret"), "resolved, newline trimmed");
        let AdapterKind::Matrix(m) = &c.adapters[1].kind else { panic!() };
        assert_eq!(m.homeserver, "https://matrix.example.org", "the trailing slash is dropped");
        assert_eq!(m.invites, InvitePolicy::People);
        assert_eq!(c.adapters[1].send_rate, 0.5);
        assert_eq!((c.adapters[0].send_rate, c.adapters[0].send_burst), (1.0, 5));
        assert!(matches!(c.adapters[2].kind, AdapterKind::Xmpp(_)));
        // Debug output (logs, panics) never shows a secret, nor a channel key.
        let dbg = format!("{:?}", c.adapters);
        assert!(!dbg.contains("s3cret") && !dbg.contains("key"), "{dbg}");
        assert!(dbg.contains("••••"), "{dbg}");
    }

    #[test]
    fn mistakes_are_named_with_their_position() {
        let errs = load(
            r##"
[adapters.web]
type = "irc"
server = "a"
nick = "b"

[adapters.slack]
type = "slak"

[adapters.irc]
type = "irc"
server = "irc.example.org"
nick = "9bot"
channels = ["ops"]
sasl_password = "hunter2"
colour = true

[adapters.mx]
type = "matrix"
homeserver = "matrix.example.org"
user_id = "opsbot"
rooms = ["ops"]

[adapters.x]
type = "xmpp"
jid = "opsbot"
password = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
server = "nohost"
send_rate = 0
"##,
        )
        .unwrap_err();
        let all = errs.join("\n");
        for want in [
            "2:11: `web` is opsbot's own door",
            "8:8: unknown adapter type `slak`",
            "unknown field `colour`",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        // The IRC table has an unknown field, so its other checks wait for the next run;
        // the Matrix and XMPP tables report each mistake.
        for want in [
            "`matrix.example.org` is not a homeserver URL",
            "`opsbot` is not a Matrix user id",
            "needs exactly one of `access_token` and `password`",
            "`ops` is not a Matrix room id or alias",
            "`opsbot` is not a bare JID",
            "`nohost` is not host:port",
            "send_rate must be between 0 and 100000",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        let errs = load(
            r##"
[adapters.irc]
type = "irc"
server = "irc.example.org"
nick = "9bot"
channels = ["ops"]
sasl_password = "hunter2"
"##,
        )
        .unwrap_err()
        .join("\n");
        for want in [
            "`9bot` is not a valid IRC nick",
            "`ops` is not an IRC channel",
            "SASL needs both",
            "`sasl_password` of adapter `irc` is a secret written into the config",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
        assert!(!errs.contains("hunter2"), "the secret is not repeated: {errs}");
    }

    #[test]
    fn slack_and_mattermost_read_with_defaults_and_their_mistakes_are_named() {
        let c = load(
            r##"
[web]
public_url = "https://ops.example.com/"

[adapters.slack]
type = "slack"
bot_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
app_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
channels = ["C0123ABCD"]

[adapters.hooks]
type = "slack"
mode = "events"
bot_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
signing_secret = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
api_url = "http://127.0.0.1:9/api/"

[adapters.mm]
type = "mattermost"
url = "https://chat.example.com/"
token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
command_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
threads = true
"##,
        )
        .unwrap();
        let AdapterKind::Slack(s) = &c.adapters[0].kind else { panic!() };
        assert_eq!(
            (s.mode, s.api_url.as_str(), s.threads),
            (SlackMode::Socket, "https://slack.com/api", false)
        );
        assert_eq!((s.bot_token.as_str(), s.app_token.as_deref()), ("s3cret", Some("s3cret")));
        let AdapterKind::Slack(h) = &c.adapters[1].kind else { panic!() };
        assert_eq!((h.mode, h.api_url.as_str()), (SlackMode::Events, "http://127.0.0.1:9/api"));
        let AdapterKind::Mattermost(m) = &c.adapters[2].kind else {
            panic!()
        };
        assert_eq!(m.url, "https://chat.example.com");
        assert_eq!(m.callback_url.as_deref(), Some("https://ops.example.com"), "from [web] public_url");
        let dbg = format!("{:?}", c.adapters);
        assert!(!dbg.contains("s3cret"), "{dbg}");

        let errs = load(
            r##"
[adapters.a]
type = "slack"
bot_token = "xoxb-1234"

[adapters.b]
type = "slack"
mode = "events"
bot_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
channels = ["#ops"]

[adapters.c]
type = "mattermost"
url = "chat.example.com"
token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
callback_url = "ftp://x"

[adapters.d]
type = "slack"
mode = "webhook"
bot_token = "${env:OPSBOT_TEST_ADAPTER_SECRET}"
"##,
        )
        .unwrap_err()
        .join("\n");
        for want in [
            "uses Socket Mode, which needs `app_token`",
            "`bot_token` of adapter `a` is a secret written into the config",
            "uses the Events API, which needs `signing_secret`",
            "`#ops` is not a channel id",
            "`chat.example.com` is not an http(s) URL",
            "`ftp://x` is not an http(s) URL",
            "unknown variant `webhook`",
        ] {
            assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
        }
        assert!(!errs.contains("xoxb-1234"), "the secret is not repeated: {errs}");
    }
}
