//! Plumbing of the Mattermost fake that has nothing Mattermost-specific: Mattermost-style ids,
//! a listener whose connections can all be cut at once (a crash), and a `multipart/form-data`
//! reader for `POST /api/v4/files`.
//!
//! The multipart reader is small and home-made on purpose: the workspace has no multipart
//! crate (axum's `multipart` feature would pull `multer`, which the offline registry mirror does
//! not carry), and the fake only needs the parts' names, file names, types and bytes.

use sha2::{Digest, Sha256};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The alphabet of Mattermost's `model.NewId()` (base32 with its own letter order): ids are 26
/// of these characters.
const ID_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// A fresh 26-character id in Mattermost's format.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = Sha256::digest(format!("{t}:{n}:{}", std::process::id()));
    let mut out = String::with_capacity(26);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for b in digest.iter() {
        acc = (acc << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 && out.len() < 26 {
            bits -= 5;
            out.push(ID_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
        acc &= (1 << bits) - 1;
        if out.len() == 26 {
            break;
        }
    }
    out
}

/// Milliseconds since the epoch (Mattermost's timestamps).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The switch that cuts every connection of one server run.
#[derive(Clone)]
pub struct Kill {
    flag: Arc<AtomicBool>,
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Kill {
    /// A switch not thrown yet.
    pub fn new() -> Self {
        let (tx, _rx) = tokio::sync::watch::channel(false);
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            tx: Arc::new(tx),
        }
    }

    /// Cuts every connection accepted under this switch (reads and writes fail from now on).
    pub fn fire(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.tx.send_replace(true);
    }
}

/// A TCP listener for `axum::serve` whose connections all die when its [`Kill`] fires.
pub struct KillListener {
    /// The socket.
    pub listener: tokio::net::TcpListener,
    /// The switch.
    pub kill: Kill,
}

impl axum::serve::Listener for KillListener {
    type Io = KillIo;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let mut rx = self.kill.tx.subscribe();
                    let dead: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
                        let _ = rx.wait_for(|k| *k).await;
                    });
                    return (
                        KillIo {
                            stream,
                            flag: self.kill.flag.clone(),
                            dead,
                        },
                        addr,
                    );
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One accepted connection that fails once its server is killed.
pub struct KillIo {
    stream: tokio::net::TcpStream,
    flag: Arc<AtomicBool>,
    dead: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl KillIo {
    fn killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.flag.load(Ordering::SeqCst) || self.dead.as_mut().poll(cx).is_ready()
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "fake Mattermost crashed")
}

impl AsyncRead for KillIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed(cx) {
            return Poll::Ready(Err(reset()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One part of a `multipart/form-data` body.
#[derive(Clone, Debug)]
pub struct Part {
    /// The form field's name.
    pub name: String,
    /// The file name, for a file part.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if given.
    pub content_type: Option<String>,
    /// The bytes.
    pub data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// A `Content-Disposition` parameter (`name="x"`), quoted or not.
fn disposition_param(line: &str, key: &str) -> Option<String> {
    for piece in line.split(';').skip(1) {
        let piece = piece.trim();
        let (k, v) = piece.split_once('=')?;
        if k.trim().eq_ignore_ascii_case(key) {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            return Some(v.replace("\\\"", "\""));
        }
    }
    None
}

/// Reads a `multipart/form-data` body (RFC 7578) given its `Content-Type` header.
pub fn multipart(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let boundary = content_type
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("boundary")
                .then(|| v.trim().trim_matches('"').to_string())
        })
        .ok_or("multipart body without a boundary")?;
    let delim = format!("--{boundary}").into_bytes();
    let mut pos = find(body, &delim, 0).ok_or("no multipart boundary in the body")?;
    let mut parts = Vec::new();
    loop {
        let after = pos + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Ok(parts);
        }
        let head_start = after + 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("multipart part without headers")?;
        let head = String::from_utf8_lossy(&body[head_start..head_end]).to_string();
        let data_start = head_end + 4;
        let mut next_delim = b"\r\n".to_vec();
        next_delim.extend_from_slice(&delim);
        let data_end = find(body, &next_delim, data_start).ok_or("multipart part not terminated")?;
        let mut name = None;
        let mut filename = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                name = disposition_param(v, "name");
                filename = disposition_param(v, "filename");
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            }
        }
        parts.push(Part {
            name: name.ok_or("multipart part without a name")?,
            filename,
            content_type: ctype,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_mattermost_ids() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 26);
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ID_ALPHABET.contains(&c)));
    }

    #[test]
    fn multipart_reads_fields_and_files() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"channel_id\"\r\n\r\nabc\r\n--XyZ\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\r\n--XyZ--\r\n";
        let parts = multipart("multipart/form-data; boundary=XyZ", body).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "channel_id");
        assert_eq!(parts[0].data, b"abc");
        assert_eq!(parts[1].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n");
        assert!(multipart("multipart/form-data", body).is_err());
        assert!(multipart("multipart/form-data; boundary=XyZ", b"--XyZ\r\nbroken").is_err());
    }
}
