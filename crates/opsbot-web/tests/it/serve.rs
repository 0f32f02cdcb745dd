//! The real server on a TCP port: HTTP/1.1 in, graceful shutdown out.

use crate::harness::TestApp;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("answer within 10 s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_over_tcp_and_returns_after_shutdown() {
    let t = TestApp::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(opsbot_web::serve(listener, t.state.clone(), async {
        let _ = stopped.await;
    }));

    let resp = http(addr, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nok"), "{resp}");

    let resp = http(
        addr,
        &format!(
            "GET /api/v1/jobs/hello HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            t.token
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("\"name\":\"hello\""), "{resp}");

    let body = r#"{"job":"hello","params":{"who":"tcp"}}"#;
    let resp = http(
        addr,
        &format!(
            "POST /api/v1/executions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            t.token,
            body.len()
        ),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 201 Created\r\n"), "{resp}");
    assert!(resp.to_lowercase().contains("\r\nlocation: /api/v1/executions/1\r\n"), "{resp}");

    // An event stream that would never end on its own (nothing runs this execution) …
    let mut sse = TcpStream::connect(addr).await.unwrap();
    sse.write_all(
        format!(
            "GET /api/v1/executions/1/log/stream HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\r\n",
            t.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 64];
    let n = sse.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200 OK"));

    // … does not keep the server from stopping.
    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task");
    assert!(result.is_ok(), "{result:?}");
    assert!(TcpStream::connect(addr).await.is_err(), "still listening after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_and_connections_are_capped() {
    let t = TestApp::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = opsbot_web::Limits {
        header_read_timeout: Duration::from_secs(2),
        max_connections: 2,
    };
    tokio::spawn(opsbot_web::serve_with_limits(
        listener,
        t.state.clone(),
        async {
            let _ = stopped.await;
        },
        limits,
    ));
    // A client that sends half a request line and stalls is disconnected.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // An idle keep-alive connection too, after its first answer.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // While both are open, a third connection is closed at once (the cap is 2).
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut out))
        .await
        .expect("closed");
    assert!(
        !String::from_utf8_lossy(&out).contains("200 OK"),
        "served over the cap: {}",
        String::from_utf8_lossy(&out)
    );
    for (name, s) in [("stalled", &mut slow), ("idle", &mut idle)] {
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "the {name} connection was not closed");
    }
    // With those gone, requests are served again.
    let resp = http(addr, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    let _ = stop.send(());
}
