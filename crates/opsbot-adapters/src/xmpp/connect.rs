//! Opening one authenticated, bound client stream from tokio-xmpp's building blocks: our own
//! transport step (TCP, then STARTTLS with opsbot's rustls config, or plain only when allowed),
//! tokio-xmpp's XML stream, its SASL step, and resource binding.
//!
//! tokio-xmpp's own `Client` is not used: its STARTTLS connector builds a rustls config of its
//! own (an empty root store unless its `rustls-native-certs`/`webpki-roots` features are on, and
//! never our `tls_ca`), and its client reconnects forever inside, retrying even a refused
//! password, while opsbot's runtime owns reconnection and needs `run` to fail with the reason.

use futures_util::{SinkExt, StreamExt};
use sasl::common::{ChannelBinding, Credentials};
use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, BufStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::jid::{BareJid, FullJid};
use tokio_xmpp::parsers::bind::{BindQuery, BindResponse};
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::{ns, sasl_cb, starttls};
use tokio_xmpp::xmlstream::{FallibleStreamElement, ReadError, StreamHeader, Timeouts, XmppStream, XmppStreamElement, initiate_stream};
use tokio_xmpp::{Stanza, rustls};

use super::guard::Guarded;

/// The byte stream under the XML stream: plain TCP, or TLS after STARTTLS.
pub(crate) enum Transport {
    /// No TLS (only with `allow_plain`, when the server offers no STARTTLS).
    Plain(TcpStream),
    /// TLS negotiated with STARTTLS.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The XML stream opsbot reads and writes stanzas on (reads pass the [`Guarded`] framer).
pub(crate) type Stream = XmppStream<BufStream<Guarded<Transport>>>;

/// Where and as whom to connect.
pub(crate) struct Target {
    /// The bot's account.
    pub jid: BareJid,
    /// Its password.
    pub password: String,
    /// `host:port` instead of the DNS SRV lookup of the JID's domain.
    pub server: Option<(String, u16)>,
    /// Whether a server without STARTTLS may be used in clear.
    pub allow_plain: bool,
    /// The TLS settings (system roots plus `tls_ca`), or why there are none.
    pub tls: Result<Arc<rustls::ClientConfig>, String>,
    /// The resource to ask for.
    pub resource: String,
}

/// A ready stream: authenticated and bound.
pub(crate) struct Session {
    /// The stream.
    pub stream: Stream,
    /// The full JID the server bound.
    pub jid: FullJid,
    /// Whether TLS protects it.
    pub encrypted: bool,
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

/// Connects, secures, authenticates and binds; every failure is a sentence for the log.
pub(crate) async fn open(t: &Target, timeouts: Timeouts) -> Result<Session, String> {
    let domain = t.jid.domain().as_str().to_string();
    let dns = match &t.server {
        Some((host, port)) => DnsConfig::no_srv(host, *port),
        None => DnsConfig::srv_default_client(&domain),
    };
    let where_ = match &t.server {
        Some((h, p)) => format!("{h}:{p}"),
        None => format!("{domain} (DNS SRV _xmpp-client._tcp)"),
    };
    let tcp = dns
        .resolve()
        .await
        .map_err(|e| format!("cannot connect to the XMPP server {where_}: {e}"))?;
    let _ = tcp.set_nodelay(true);

    let pending = initiate_stream(
        BufStream::new(Guarded::new(Transport::Plain(tcp))),
        ns::JABBER_CLIENT,
        header(&domain),
        timeouts,
    )
    .await
    .map_err(|e| format!("XMPP stream to {where_} failed to open: {e}"))?;
    let (features, mut stream) = pending
        .recv_features::<FallibleStreamElement>()
        .await
        .map_err(|e| format!("XMPP stream to {where_} failed before its features: {e}"))?;

    let (stream, features, binding, encrypted) = if features.can_starttls() {
        let tls = t
            .tls
            .clone()
            .map_err(|e| format!("the server offers STARTTLS but TLS cannot be set up: {e}"))?;
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(starttls::Request)))
            .await
            .map_err(|e| format!("STARTTLS with {where_} failed: {e}"))?;
        loop {
            match next_element(&mut stream).await {
                Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_))) => break,
                Ok(XmppStreamElement::Starttls(starttls::Nonza::Failure(_))) => {
                    return Err(format!("the server {where_} refused STARTTLS"));
                }
                Ok(XmppStreamElement::StreamError(e)) => return Err(format!("the server {where_} ended the stream: {e}")),
                Ok(_) => {}
                Err(e) => return Err(format!("STARTTLS with {where_} failed: {e}")),
            }
        }
        let Transport::Plain(tcp) = stream.into_inner().into_inner().into_inner() else {
            return Err("internal error: TLS started twice".into());
        };
        let name =
            rustls::pki_types::ServerName::try_from(domain.clone()).map_err(|e| format!("`{domain}` is not a TLS server name: {e}"))?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {where_} failed (the certificate must be valid for {domain}; see tls_ca): {e}"))?;
        let binding = match tls_stream.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => {
                let data = tls_stream
                    .get_ref()
                    .1
                    .export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None);
                data.map(ChannelBinding::TlsExporter).unwrap_or(ChannelBinding::None)
            }
            _ => ChannelBinding::None,
        };
        let pending = initiate_stream(
            BufStream::new(Guarded::new(Transport::Tls(Box::new(tls_stream)))),
            ns::JABBER_CLIENT,
            header(&domain),
            timeouts,
        )
        .await
        .map_err(|e| format!("XMPP stream to {where_} failed to reopen over TLS: {e}"))?;
        let (features, stream) = pending
            .recv_features::<FallibleStreamElement>()
            .await
            .map_err(|e| format!("XMPP stream to {where_} failed over TLS: {e}"))?;
        (stream, features, binding, true)
    } else if t.allow_plain {
        tracing::warn!("the XMPP server {where_} offers no STARTTLS: connecting in clear (allow_plain = true)");
        (stream, features, ChannelBinding::None, false)
    } else {
        return Err(format!(
            "the XMPP server {where_} offers no STARTTLS, so the password would travel in clear: refused. \
             Enable TLS on the server, or set allow_plain = true for a server on this machine or tests only"
        ));
    };

    // SASL: tokio-xmpp picks SCRAM-SHA-256, SCRAM-SHA-1, then PLAIN from what the server
    // offers; with channel binding data it asks for the -PLUS variants instead, so that data is
    // given only when the server says it binds to tls-exporter (else SCRAM without binding).
    let plus = features.sasl_mechanisms.iter().any(|m| m.ends_with("-PLUS"));
    let exporter = features
        .sasl_cb
        .as_ref()
        .is_some_and(|cb| cb.types.contains(&sasl_cb::Type::TlsExporter));
    let binding = if plus && exporter { binding } else { ChannelBinding::None };
    let local = t.jid.node().map(|n| n.as_str().to_string()).unwrap_or_default();
    let creds = Credentials::default()
        .with_username(local)
        .with_password(t.password.clone())
        .with_channel_binding(binding);
    let initiating = tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds)
        .await
        .map_err(|e| format!("XMPP sign-in as {} failed: {e}", t.jid))?;
    let pending = initiating
        .send_header(header(&domain))
        .await
        .map_err(|e| format!("XMPP stream to {where_} failed after sign-in: {e}"))?;
    let (_features, mut stream) = pending
        .recv_features::<FallibleStreamElement>()
        .await
        .map_err(|e| format!("XMPP stream to {where_} failed after sign-in: {e}"))?;

    // Resource binding.
    let bind_id = "opsbot-bind".to_string();
    let iq = Iq::from_set(bind_id.clone(), BindQuery::new(Some(t.resource.clone())));
    stream
        .send(&XmppStreamElement::Stanza(Stanza::Iq(iq)))
        .await
        .map_err(|e| format!("resource binding failed: {e}"))?;
    let jid = loop {
        match next_element(&mut stream).await {
            Ok(XmppStreamElement::Stanza(Stanza::Iq(Iq::Result { id, payload, .. }))) if id == bind_id => {
                let resp = payload
                    .ok_or("the server's answer to resource binding is empty")?
                    .try_into()
                    .map_err(|e: tokio_xmpp::FromElementError| format!("the server's answer to resource binding is malformed: {e}"))?;
                let resp: BindResponse = resp;
                break resp.jid;
            }
            Ok(XmppStreamElement::Stanza(Stanza::Iq(Iq::Error { id, error, .. }))) if id == bind_id => {
                return Err(format!("the server refused resource binding: {:?}", error.defined_condition));
            }
            Ok(XmppStreamElement::StreamError(e)) => return Err(format!("the server ended the stream: {e}")),
            Ok(_) => {}
            Err(e) => return Err(format!("resource binding failed: {e}")),
        }
    };
    Ok(Session { stream, jid, encrypted })
}

/// The next stream element during negotiation; soft timeouts are waited through, anything
/// that ends the stream is an error.
async fn next_element(stream: &mut Stream) -> Result<XmppStreamElement, String> {
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(el))) => return Ok(el),
            Some(Ok(FallibleStreamElement::Err(e))) => tracing::warn!("skipping a malformed element during XMPP negotiation: {e}"),
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(ReadError::ParseError(e))) => tracing::warn!("skipping an unreadable element during XMPP negotiation: {e}"),
            Some(Err(ReadError::HardError(e))) => return Err(e.to_string()),
            Some(Err(ReadError::StreamFooterReceived)) | None => return Err("the server closed the stream".into()),
        }
    }
}
