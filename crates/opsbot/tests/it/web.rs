//! `opsbot serve`'s HTTP server and `opsbot token`, through the real binary and real HTTP.

use crate::harness::*;
use std::io::Write;
use std::time::{Duration, Instant};

#[test]
fn serve_exposes_the_api_to_token_holders_only() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let out = sb
        .cmd(&cfg)
        .args(["token", "create", "--user", "ana", "--label", "ci"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("opsb_") && token.len() > 40, "{token}");
    let list = sb.cmd(&cfg).args(["token", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("web:ana") && list.contains("active") && !list.contains(&token),
        "{list}"
    );

    let (mut serve, addr) = sb.serve(&cfg);

    assert_eq!(http(&addr, "GET", "/healthz", None, None).0, 200);
    assert_eq!(http(&addr, "GET", "/api/v1/jobs", None, None).0, 401);
    let (status, body) = http(
        &addr,
        "POST",
        "/api/v1/executions",
        Some(&token),
        Some(r#"{"job":"deploy","params":{"app":"web","env":"qa"}}"#),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("`qa` is not one of dev, staging, prod"), "{body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/api/v1/executions",
        Some(&token),
        Some(r#"{"job":"deploy","params":{"app":"web","env":"staging"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"requested_by\":\"web:ana\""), "{body}");
    let start = Instant::now();
    loop {
        let (_, body) = http(&addr, "GET", "/api/v1/executions/1", Some(&token), None);
        if body.contains("\"state\":\"succeeded\"") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, log) = http(&addr, "GET", "/api/v1/executions/1/log", Some(&token), None);
    assert!(log.contains("web latest is live in staging"), "{log}");
    let (_, metrics) = http(&addr, "GET", "/metrics", None, None);
    assert!(metrics.contains("opsbot_executions{state=\"succeeded\"} 1"), "{metrics}");

    let out = sb.cmd(&cfg).args(["token", "revoke", "1"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(http(&addr, "GET", "/api/v1/jobs", Some(&token), None).0, 401);

    unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) };
    assert!(serve.child.wait().unwrap().success(), "{}", serve.stderr());
}

#[test]
fn token_create_refuses_odd_user_names() {
    let sb = Sandbox::new();
    let out = sb
        .cmd(&example_config())
        .args(["token", "create", "--user", "a b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a user name is 1–64 letters"));
}

#[test]
fn a_client_that_never_reads_does_not_keep_serve_up() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let token = sb.token(&cfg, "ana");
    let (mut serve, addr) = sb.serve(&cfg);
    let (status, body) = http(&addr, "POST", "/api/v1/executions", Some(&token), Some(r#"{"job":"flood"}"#));
    assert_eq!(status, 201, "{body}");
    // Open a log stream and a half-sent request, and read nothing.
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "GET /api/v1/executions/1/log/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    write!(half, "GET /healthz HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) };
    assert!(serve.child.wait().unwrap().success(), "{}", serve.stderr());
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "serve took {:?} to stop",
        start.elapsed()
    );
    drop((stream, half));
}
