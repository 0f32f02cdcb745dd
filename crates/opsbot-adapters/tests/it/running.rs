//! An adapter's `run` in a task of its own, as the runtime would run it, for the tests.

use opsbot_core::{Adapter, AdapterContext, Envelope, WebhookRequest, WebhookResponse};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long the tests wait for anything the server or the adapter should do.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running adapter: its task, inbox and stop switch.
#[allow(dead_code)] // each platform's tests use a different part
pub struct Running<A: Adapter + 'static> {
    pub adapter: Arc<A>,
    pub ctx: AdapterContext,
    pub inbox: mpsc::Receiver<Envelope>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), String>>,
}

#[allow(dead_code)]
impl<A: Adapter + 'static> Running<A> {
    /// Starts `run` with a context of its own.
    pub fn spawn(adapter: Arc<A>) -> Self {
        let (ctx, inbox, stop) = AdapterContext::standalone();
        let (a, c) = (adapter.clone(), ctx.clone());
        let task = tokio::spawn(async move { a.run(&c).await });
        Self {
            adapter,
            ctx,
            inbox,
            stop,
            task,
        }
    }

    /// [`Running::spawn`], then waits until the adapter says it is connected.
    pub async fn spawn_connected(adapter: Arc<A>) -> Self {
        let r = Self::spawn(adapter);
        r.connected().await;
        r
    }

    /// Waits until the adapter says it is connected (fails if `run` ended first).
    pub async fn connected(&self) {
        let t = tokio::time::Instant::now();
        while !self.ctx.is_connected() {
            assert!(!self.task.is_finished(), "run() ended before connecting");
            assert!(t.elapsed() < WAIT, "not connected after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next incoming message.
    pub async fn next(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("an envelope in time")
            .expect("inbox open")
    }

    /// Stops it and returns what `run` returned.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run() returns on stop")
            .expect("run() did not panic")
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that hands every request under `/hooks/NAME` to
/// `adapter.webhook` (what opsbot's web server does); returns its base URL, `http://ADDR`.
#[allow(dead_code)]
pub async fn hooks_server<A: Adapter + 'static>(adapter: Arc<A>, name: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    serve_hooks(adapter, name, listener);
    url
}

/// [`hooks_server`] on a listener the test bound itself (a callback URL known in advance).
#[allow(dead_code)]
pub fn serve_hooks<A: Adapter + 'static>(adapter: Arc<A>, name: &str, listener: TcpListener) {
    let prefix = format!("/hooks/{name}");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (adapter, prefix) = (adapter.clone(), prefix.clone());
            tokio::spawn(async move {
                let Some((method, target, headers, body)) = read_request(&mut stream).await else {
                    return;
                };
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_string(), Some(q.to_string())),
                    None => (target, None),
                };
                let rest = path.strip_prefix(prefix.as_str()).unwrap_or("/").to_string();
                let req = WebhookRequest {
                    method,
                    path: rest,
                    query,
                    headers,
                    body,
                };
                write_response(&mut stream, &adapter.webhook(req).await).await;
            });
        }
    });
}

/// One HTTP/1.1 request: method, target, headers (lower-case names) and body.
#[allow(dead_code)]
pub async fn read_request(stream: &mut TcpStream) -> Option<(String, String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, path, headers, body))
}

/// Writes `resp` as an HTTP/1.1 response and closes.
#[allow(dead_code)]
pub async fn write_response(stream: &mut TcpStream, resp: &WebhookResponse) {
    let head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        resp.status,
        resp.content_type,
        resp.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&resp.body).await;
    let _ = stream.shutdown().await;
}
