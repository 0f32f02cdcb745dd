//! A byte-level guard in front of tokio-xmpp's XML parser that drops whole stanzas the parser
//! would choke on, so one hostile message cannot cost the connection.
//!
//! Why hand-rolled: tokio-xmpp's parser (rxml with its default limits, not configurable through
//! tokio-xmpp's API) treats an element name, attribute name or attribute value over 8 KiB as a
//! fatal stream error, and builds every stanza in memory whatever its size or depth. Servers
//! relay such stanzas from anyone who can message the bot (measured with Prosody 0.12: a chat
//! message with a 20 000-byte `id` attribute dropped the bot's connection). This guard frames
//! the server's byte stream into top-level elements (depth 1 inside `<stream:stream>`), and
//! forwards each one only when it has no name or attribute value over [`MAX_TOKEN`] bytes, is
//! at most [`MAX_STANZA`] bytes, nests at most [`MAX_DEPTH`] deep and holds no comment or
//! processing instruction (forbidden in XMPP, fatal to the parser); other stanzas are dropped
//! with a warning. Bytes are never altered, only whole stanzas dropped, so what passes is the
//! server's XML as sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest element name, attribute name or raw attribute value passed on (the parser's limit is
/// 8192 bytes after entity decoding; raw bytes are never fewer).
pub(crate) const MAX_TOKEN: usize = 8000;
/// Largest stanza passed on (Prosody accepts up to 256 KiB from a client, 512 KiB from servers).
pub(crate) const MAX_STANZA: usize = 1024 * 1024;
/// Deepest nesting inside a stanza passed on.
pub(crate) const MAX_DEPTH: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Character data.
    Text,
    /// Just after `<`.
    Open,
    /// In a start tag's name.
    Name,
    /// In a start tag, between attributes.
    InTag,
    /// In an attribute name.
    AttrName,
    /// After an attribute name, before the quote.
    BeforeValue,
    /// In an attribute value quoted with this byte.
    Value(u8),
    /// After `/` in a start tag (expecting `>`).
    SelfClose,
    /// In an end tag.
    EndTag,
    /// Just after `<!`.
    Bang,
    /// `<!…` or `<?…` constructs, until this terminator.
    Skip(&'static [u8]),
}

/// The stream framer: feeds on the server's bytes, yields the bytes the parser may see.
pub(crate) struct Scanner {
    st: St,
    /// Element depth: 0 before the stream header, 1 inside the stream, 2+ inside a stanza.
    depth: u32,
    /// The top-level construct being read (a tag at depth ≤ 1 or a whole stanza).
    held: Vec<u8>,
    /// Whether `held` is being collected (a construct started at depth 1 or 0).
    holding: bool,
    /// Length of the current name or attribute value.
    tok: usize,
    /// The current start tag's name (up to 32 bytes: enough to know a stream header).
    name: Vec<u8>,
    /// Why the stanza being held will be dropped, if it will.
    bad: Option<&'static str>,
    /// Size of the stanza being held, counted even when no longer kept.
    size: usize,
    /// Recent bytes, to find the terminator of a skipped construct.
    tail: Vec<u8>,
    /// Stanzas dropped so far.
    pub dropped: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    /// A scanner at the start of a stream.
    pub(crate) fn new() -> Self {
        Self {
            st: St::Text,
            depth: 0,
            held: Vec::new(),
            holding: false,
            tok: 0,
            name: Vec::new(),
            bad: None,
            size: 0,
            tail: Vec::new(),
            dropped: 0,
        }
    }

    fn flag(&mut self, why: &'static str) {
        if self.bad.is_none() {
            self.bad = Some(why);
        }
    }

    /// Scans `input`, appending what may pass to `out`.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    fn keep(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.holding {
            self.size += 1;
            if self.size > MAX_STANZA {
                self.flag("larger than 1 MiB");
            }
            if self.bad.is_none() {
                self.held.push(b);
            }
        } else {
            out.push(b);
        }
    }

    /// The held construct is complete: pass it on or drop it.
    fn release(&mut self, out: &mut Vec<u8>) {
        if !self.holding {
            return;
        }
        match self.bad.take() {
            None => out.append(&mut self.held),
            Some(why) => {
                self.dropped += 1;
                let head: String = String::from_utf8_lossy(&self.held[..self.held.len().min(80)]).into();
                tracing::warn!("skipping an XMPP stanza of {} bytes: {why} (starts {head:?})", self.size);
                self.held.clear();
            }
        }
        self.held.clear();
        self.holding = false;
        self.size = 0;
    }

    fn grow_token(&mut self) {
        self.tok += 1;
        if self.tok > MAX_TOKEN {
            self.flag("an XML name or attribute value over 8000 bytes");
        }
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.st {
            St::Text => {
                if b == b'<' {
                    if self.depth <= 1 && !self.holding {
                        self.holding = true;
                        self.bad = None;
                        self.size = 0;
                    }
                    self.st = St::Open;
                }
                self.keep(b, out);
            }
            St::Open => {
                self.tok = 0;
                self.name.clear();
                match b {
                    b'/' => self.st = St::EndTag,
                    b'?' => {
                        self.st = St::Skip(b"?>");
                        self.tail.clear();
                        // Between stanzas this is the XML declaration of a (restarted) stream.
                        if self.depth > 1 {
                            self.flag("a processing instruction");
                        }
                    }
                    b'!' => {
                        self.st = St::Bang;
                        self.flag("a comment, CDATA or DOCTYPE");
                    }
                    _ => {
                        self.st = St::Name;
                        self.name.push(b);
                        self.grow_token();
                    }
                }
                self.keep(b, out);
            }
            St::Name => match b {
                b'>' => self.start_tag_end(false, b, out),
                b'/' => {
                    self.st = St::SelfClose;
                    self.keep(b, out);
                }
                b' ' | b'\t' | b'\r' | b'\n' => {
                    self.st = St::InTag;
                    self.keep(b, out);
                }
                _ => {
                    if self.name.len() < 32 {
                        self.name.push(b);
                    }
                    self.grow_token();
                    self.keep(b, out);
                }
            },
            St::InTag => match b {
                b'>' => self.start_tag_end(false, b, out),
                b'/' => {
                    self.st = St::SelfClose;
                    self.keep(b, out);
                }
                b' ' | b'\t' | b'\r' | b'\n' => self.keep(b, out),
                _ => {
                    self.st = St::AttrName;
                    self.tok = 0;
                    self.grow_token();
                    self.keep(b, out);
                }
            },
            St::AttrName => {
                if b == b'=' {
                    self.st = St::BeforeValue;
                } else if !b.is_ascii_whitespace() {
                    self.grow_token();
                }
                self.keep(b, out);
            }
            St::BeforeValue => {
                if b == b'"' || b == b'\'' {
                    self.st = St::Value(b);
                    self.tok = 0;
                }
                self.keep(b, out);
            }
            St::Value(q) => {
                if b == q {
                    self.st = St::InTag;
                } else {
                    self.grow_token();
                }
                self.keep(b, out);
            }
            St::SelfClose => self.start_tag_end(true, b, out),
            St::Bang => {
                self.tail.clear();
                self.st = St::Skip(match b {
                    b'-' => b"-->",
                    b'[' => b"]]>",
                    _ => b">",
                });
                self.keep(b, out);
            }
            St::EndTag => {
                if b == b'>' {
                    self.keep(b, out);
                    self.st = St::Text;
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth <= 1 {
                        self.release(out);
                    }
                } else {
                    if !b.is_ascii_whitespace() {
                        self.grow_token();
                    }
                    self.keep(b, out);
                }
            }
            St::Skip(end) => {
                self.keep(b, out);
                self.tail.push(b);
                if self.tail.len() > end.len() {
                    self.tail.remove(0);
                }
                if self.tail == end {
                    self.st = St::Text;
                    if self.depth <= 1 {
                        self.release(out);
                    }
                }
            }
        }
    }

    /// The `>` of a start tag (`self_closing` when it was `/>`).
    fn start_tag_end(&mut self, self_closing: bool, b: u8, out: &mut Vec<u8>) {
        self.keep(b, out);
        self.st = St::Text;
        let local = self.name.rsplit(|&c| c == b':').next().unwrap_or(&self.name);
        if self.depth <= 1 && local == b"stream" && !self_closing {
            // A stream header (also after a stream restart): passes at once.
            self.depth = 1;
            self.bad = None;
            self.release(out);
            return;
        }
        if self_closing {
            if self.depth <= 1 {
                self.release(out);
            }
            return;
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH + 1 {
            self.flag("nested deeper than 64 elements");
        }
    }
}

/// An I/O object whose reads pass through a [`Scanner`]; writes go straight through.
pub(crate) struct Guarded<T> {
    inner: T,
    scan: Scanner,
    ready: Vec<u8>,
    pos: usize,
}

impl<T> Guarded<T> {
    /// Guards reads from `inner`.
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            scan: Scanner::new(),
            ready: Vec::new(),
            pos: 0,
        }
    }

    /// The I/O object inside (what the scanner holds back is lost).
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.ready.len() {
                let n = (this.ready.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.ready[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.ready.len() {
                    this.ready.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.scan.feed(rb.filled(), &mut this.ready);
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str) -> (String, u64) {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        // Byte by byte and in one go must agree.
        for b in input.as_bytes() {
            s.feed(&[*b], &mut out);
        }
        let mut s2 = Scanner::new();
        let mut out2 = Vec::new();
        s2.feed(input.as_bytes(), &mut out2);
        assert_eq!(out, out2);
        (String::from_utf8(out).expect("utf-8"), s.dropped)
    }

    const HEAD: &str =
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='x' version='1.0'>";

    #[test]
    fn good_streams_pass_unchanged() {
        let s = format!(
            "{HEAD}<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features> \
             <message from='a@b/c' type=\"chat\"><body>x &amp; y &lt; z 🚀</body><x xmlns='q'><item a='&apos;&gt;'/></x></message>\
             <presence/>{HEAD}<iq type='result' id='1'/></stream:stream>"
        );
        assert_eq!(run(&s), (s.clone(), 0));
    }

    #[test]
    fn partial_stanzas_wait() {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        s.feed(HEAD.as_bytes(), &mut out);
        assert_eq!(out, HEAD.as_bytes());
        out.clear();
        s.feed(b"<message><body>hal", &mut out);
        assert!(out.is_empty());
        s.feed(b"f</body></message>", &mut out);
        assert_eq!(out, b"<message><body>half</body></message>");
    }

    #[test]
    fn hostile_stanzas_are_dropped_whole() {
        let long = "i".repeat(MAX_TOKEN + 1);
        let deep = "<a>".repeat(70) + &"</a>".repeat(70);
        let big = "y".repeat(MAX_STANZA);
        let good = "<message><body>ok</body></message>";
        for bad in [
            format!("<message id='{long}'><body>x</body></message>"),
            format!("<message><{long}/></message>"),
            format!("<message><x {long}='1'/></message>"),
            format!("<message>{deep}</message>"),
            format!("<message><body>{big}</body></message>"),
            "<message><!-- hi --><body>x</body></message>".to_string(),
            "<message><?pi x?><body>x</body></message>".to_string(),
            "<message><body><![CDATA[x > <a> ]]></body></message>".to_string(),
            "<message><!-- a > <b> --><body>x</body></message>".to_string(),
        ] {
            let (out, dropped) = run(&format!("{HEAD}{bad}{good}"));
            assert_eq!(out, format!("{HEAD}{good}"), "{}", &bad[..bad.len().min(60)]);
            assert_eq!(dropped, 1);
        }
        // Long text is fine (the parser splits it).
        let text = format!("<message><body>{}</body></message>", "t".repeat(3 * MAX_TOKEN));
        assert_eq!(run(&format!("{HEAD}{text}")).1, 0);
    }
}
