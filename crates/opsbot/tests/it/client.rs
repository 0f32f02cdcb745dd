//! The CLI as a client: `opsbot --server URL run|status|logs` against a real `opsbot serve`,
//! and the local `opsbot status` / `opsbot logs` on the store.

use crate::harness::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs a command to its end; returns (exit code, stdout, stderr).
fn output(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.stdin(Stdio::null()).output().expect("run opsbot");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Jobs for following output while it is written.
const TICKER: &str = r#"
[jobs.ticker]
description = "a line every 0.3 s"
runner = { type = "exec", argv = ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick-$i; sleep 0.3; done; echo tock >&2"] }
"#;

/// A port on which nothing listens.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn remote_run_streams_the_output_and_exits_with_the_outcome() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "deploy", "app=web", "env=staging"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"deploying web latest to staging (execution 1)"), "{out}");
    assert_eq!(lines.last(), Some(&"web latest is live in staging"), "{out}");
    assert_eq!(lines.len(), 7, "{out}");
    assert!(
        err.contains(&format!("#1 queued on {url}: deploy app=web env=staging version=latest")),
        "{err}"
    );
    assert!(err.contains("#1 deploy succeeded") && err.contains("exit code     0"), "{err}");
    // The server ran it as the token's user, through the engine.
    let (_, body) = http(&addr, "GET", "/api/v1/executions/1", Some(&token), None);
    assert!(body.contains("\"requested_by\":\"web:ana\""), "{body}");

    // A failing job: its stderr marked as locally, exit 1.
    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "deploy", "api", "dev", "0.0.0"]));
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("[stderr] error: artifact api:0.0.0 not found"), "{out}");
    assert!(err.contains("#2 deploy failed (exit 1)"), "{err}");

    // --key=value and positional values after `--` work as locally.
    let (code, _, err) = output(
        sb.remote(&url, Some(&token))
            .args(["run", "deploy", "--app=web", "--env=staging", "--", "1.2.3"]),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("deploy app=web env=staging version=1.2.3"), "{err}");
}

#[test]
fn remote_run_refuses_like_local_run_with_exit_2() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "deploy", "app=web", "env=qa"]));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("`qa` is not one of dev, staging, prod"), "{err}");
    assert!(out.is_empty(), "{out}");

    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "deploy", "app=web"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`deploy` needs `env`") && err.contains("pass env=VALUE"), "{err}");

    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "deplyo", "web"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("There is no job `deplyo`. Did you mean `deploy`?"), "{err}");

    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "deploy", "app=web", "app=api"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`app` is given twice"), "{err}");

    // The user is the token's; --user cannot pretend otherwise.
    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "--user", "bob", "deploy", "web", "dev"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--user does not apply with --server"), "{err}");

    // Nothing of the above was queued.
    let (_, body) = http(&addr, "GET", "/api/v1/executions", Some(&token), None);
    assert!(body.contains("\"executions\":[]"), "{body}");
}

#[test]
fn remote_sensitive_job_needs_yes() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "restart", "service=api"]));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("`restart` is sensitive and was not run; pass --yes"), "{err}");

    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "restart", "service=api", "--yes"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("api on localhost is up"), "{out}");
    assert!(!err.contains("sensitive"), "{err}");
    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "-y", "restart", "web"]));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn remote_commands_need_a_valid_token() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    for args in [&["run", "deploy", "web", "dev"][..], &["status", "1"], &["logs", "1"]] {
        let (code, _, err) = output(sb.remote(&url, None).args(args));
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("OPSBOT_TOKEN is not set") && err.contains("opsbot token create --user NAME") && err.contains(&url),
            "{err}"
        );
    }

    let (code, _, err) = output(sb.remote(&url, Some("opsb_0000")).args(["run", "deploy", "web", "dev"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "the opsbot server at {url} refused the API token in OPSBOT_TOKEN (it is unknown or revoked)"
        )) && err.contains("opsbot token create --user NAME"),
        "{err}"
    );

    // A revoked token is refused the same way.
    let out = sb.cmd(&cfg).args(["token", "revoke", "1"]).output().unwrap();
    assert!(out.status.success());
    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["status", "1"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("refused the API token in OPSBOT_TOKEN"), "{err}");
}

#[test]
fn remote_status_and_logs_show_the_execution() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["run", "count", "n=60"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["run", "fail"]));
    assert_eq!(code, Some(1), "{err}");
    // (stdout and stderr are separate pipes: their lines may be stored in either order)
    assert!(
        out.contains("about to fail\n") && out.contains("[stderr] oops\n") && out.lines().count() == 2,
        "{out}"
    );

    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["status", "1"]));
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "✔ #1 succeeded",
        "job           count n=60",
        "requested by  ana (web:ana)",
        "where         api/ana",
        "exit code     0",
        "│ 60",
        "last 5 of 60 lines",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("│ 55\n"), "{out}");
    let (code, out, _) = output(sb.remote(&url, Some(&token)).args(["status", "#2"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("✘ #2 failed (exit 3)") && out.contains("│ [stderr] oops"), "{out}");

    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["status", "99"]));
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("there is no execution #99 on the opsbot server at {url}")),
        "{err}"
    );

    // Logs: the last 50 lines, all of them with --all.
    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["logs", "1"]));
    assert_eq!(code, Some(0), "{err}");
    let want: Vec<String> = (11..=60).map(|i| i.to_string()).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), want);
    assert!(err.contains("last 50 of 60 lines; `opsbot logs 1 --all`"), "{err}");
    let (_, out, err) = output(sb.remote(&url, Some(&token)).args(["logs", "1", "--all"]));
    assert_eq!(out.lines().count(), 60);
    assert!(err.is_empty(), "{err}");
    let (code, out, _) = output(sb.remote(&url, Some(&token)).args(["logs", "2"]));
    assert_eq!(code, Some(0));
    assert!(
        out.contains("about to fail\n") && out.contains("[stderr] oops\n") && out.lines().count() == 2,
        "{out}"
    );
    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["logs", "99"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no execution #99"), "{err}");

    // --follow on an execution that is over: its output, its summary, its outcome.
    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["logs", "2", "--follow"]));
    assert_eq!((code, out.lines().count()), (Some(1), 2), "{err}");
    assert!(err.contains("#2 fail failed (exit 3)"), "{err}");
    let (code, out, err) = output(sb.remote(&url, Some(&token)).args(["logs", "1", "--follow", "--all"]));
    assert_eq!((code, out.lines().count()), (Some(0), 60), "{err}");
}

#[test]
fn logs_follow_prints_a_running_job_to_its_end_remote_and_local() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, TICKER);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let mut c = sb.remote(&url, Some(&token));
    c.args(["run", "ticker"]);
    let mut run = Session::start(c);
    run.expect("tick-1\n");
    // Both followers start while it runs (five more lines to come, 0.3 s apart).
    let remote = sb
        .remote(&url, Some(&token))
        .args(["logs", "1", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let local = sb
        .cmd(&cfg)
        .args(["logs", "1", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = "tick-1\ntick-2\ntick-3\ntick-4\ntick-5\ntick-6\n[stderr] tock\n";
    for (name, child) in [("remote", remote), ("local", local)] {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert_eq!(stdout, want, "{name}");
        assert!(stderr.contains("#1 ticker succeeded"), "{name}: {stderr}");
    }
    let (out, err, ok) = run.finish();
    assert!(ok, "{err}");
    assert_eq!(out, want);
}

#[test]
fn interrupting_a_remote_run_cancels_the_job() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    let mut c = sb.remote(&url, Some(&token));
    c.args(["run", "sleeper"]);
    let mut s = Session::start(c);
    let out = s.expect("pgid=\\d+\n");
    let pgid: i32 = out.rsplit("pgid=").next().unwrap().trim().parse().unwrap();
    assert!(group_alive(pgid));
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "run did not end: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{}", s.stderr());
    assert!(s.stderr().contains("interrupted; stopping #1"), "{}", s.stderr());
    assert!(!group_alive(pgid), "the job's processes outlived the cancel");
    let (code, out, _) = output(sb.remote(&url, Some(&token)).args(["status", "1"]));
    assert_eq!(code, Some(0));
    assert!(out.contains("state         cancelled"), "{out}");
}

#[test]
fn unreachable_server_is_named_in_the_error() {
    let sb = Sandbox::new();
    let url = format!("http://127.0.0.1:{}", closed_port());
    for args in [&["run", "deploy", "web", "dev"][..], &["status", "1"], &["logs", "1", "--follow"]] {
        let (code, _, err) = output(sb.remote(&url, Some("opsb_x")).args(args));
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("cannot connect to the opsbot server at {url}")) && err.contains("Connection refused"),
            "{err}"
        );
    }
    let (code, _, err) = output(sb.remote("localhost:8080", Some("opsb_x")).args(["status", "1"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--server `localhost:8080` is not an http:// or https:// URL"), "{err}");
}

/// A TLS front for `target` with a certificate for localhost and 127.0.0.1 from a fresh CA;
/// returns its port and the CA certificate's PEM file. Serves until the test process ends.
fn tls_front(sb: &Sandbox, target: String) -> (u16, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "opsbot test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_file = sb.path("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((sock, _)) = listener.accept().await else { continue };
                let (acceptor, target) = (acceptor.clone(), target.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else { return };
                    let Ok(mut up) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
    });
    (port, ca_file)
}

#[test]
fn https_servers_are_verified_with_the_system_roots() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let token = sb.token(&cfg, "ana");
    let (_serve, addr) = sb.serve(&cfg);
    let (port, ca) = tls_front(&sb, addr.clone());

    // SSL_CERT_FILE is how the system's root store is pointed elsewhere (as for OpenSSL).
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{port}");
        let (code, out, err) = output(
            sb.remote(&url, Some(&token))
                .env("SSL_CERT_FILE", &ca)
                .args(["run", "deploy", "app=web", "env=dev"]),
        );
        assert_eq!(code, Some(0), "{url}: {err}");
        assert!(out.contains("web latest is live in dev"), "{out}");
    }
    let url = format!("https://localhost:{port}/");
    let (code, out, _) = output(sb.remote(&url, Some(&token)).env("SSL_CERT_FILE", &ca).args(["logs", "1"]));
    assert_eq!((code, out.lines().count()), (Some(0), 7));

    // A certificate from a CA the system does not trust: refused, the server named.
    let url = format!("https://localhost:{port}");
    let (code, _, err) = output(
        sb.remote(&url, Some(&token))
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .args(["status", "1"]),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("the TLS handshake with the opsbot server at {url} failed: invalid peer certificate"))
            // (a machine without any root certificate says so, naming the server too)
            || err.contains(&format!("cannot prepare HTTPS for {url}: No CA certificates")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    // https:// to a plain HTTP server.
    let url = format!("https://{addr}");
    let (code, _, err) = output(sb.remote(&url, Some(&token)).args(["status", "1"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("the TLS handshake with the opsbot server at {url} failed")) && err.contains("use http://"),
        "{err}"
    );
}

#[test]
fn local_status_and_logs_read_the_store() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let (code, _, err) = output(sb.cmd(&cfg).args(["run", "--user", "alice", "deploy", "app=web", "env=staging"]));
    assert_eq!(code, Some(0), "{err}");
    let (code, _, _) = output(sb.cmd(&cfg).args(["run", "deploy", "api", "dev", "0.0.0"]));
    assert_eq!(code, Some(1));

    let (code, out, err) = output(sb.cmd(&cfg).args(["status", "1"]));
    assert_eq!(code, Some(0), "{err}");
    for want in [
        "✔ #1 succeeded",
        "job           deploy app=web env=staging version=latest",
        "requested by  alice (cli:alice)",
        "│ web latest is live in staging",
        "last 5 of 7 lines",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (code, _, err) = output(sb.cmd(&cfg).args(["status", "9"]));
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no execution #9"), "{err}");

    let (code, out, err) = output(sb.cmd(&cfg).args(["logs", "1", "--all"]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 7, "{out}");
    assert!(out.starts_with("deploying web latest to staging (execution 1)\n"), "{out}");
    let (code, out, err) = output(sb.cmd(&cfg).args(["logs", "2", "--follow"]));
    assert_eq!(code, Some(1), "{err}");
    assert!(out.contains("[stderr] error: artifact api:0.0.0 not found"), "{out}");
    assert!(err.contains("#2 deploy failed (exit 1)"), "{err}");
    let (code, _, _) = output(sb.cmd(&cfg).args(["logs", "1", "-f"]));
    assert_eq!(code, Some(0));

    // Reading records needs no store to be made up.
    let (code, _, err) = output(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .arg("--db")
            .arg(sb.path("none.db"))
            .args(["status", "1"]),
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("there is no store at"), "{err}");
    assert!(!sb.path("none.db").exists());
}

#[test]
fn server_option_is_only_for_run_status_and_logs() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(TEST_PEOPLE);
    let (code, _, err) = output(sb.cmd(&cfg).args(["token", "list", "--server", "http://127.0.0.1:1"]));
    assert_eq!(code, Some(2));
    assert!(err.contains("--server works with `run`, `status` and `logs`"), "{err}");
    // From the environment it is left alone by the other commands.
    let (code, out, err) = output(sb.cmd(&cfg).env("OPSBOT_SERVER", "http://127.0.0.1:1").arg("check"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn help_explains_server_and_token() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--server <URL>") && help.contains("OPSBOT_TOKEN") && help.contains("OPSBOT_SERVER"),
        "{help}"
    );
    for cmd in ["run", "status", "logs"] {
        let out = Command::new(BIN).args([cmd, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--server") && help.contains("OPSBOT_TOKEN") && help.contains("opsbot token create"),
            "{cmd}: {help}"
        );
    }
}

/// A stand-in server that answers the run request only when told to, so the client can be
/// interrupted while it waits. Returns its address, the go signal and the request lines seen.
fn slow_server() -> (String, std::sync::mpsc::Sender<()>, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let exec = |state: &str| {
            format!(
                r#"{{"id":7,"job":"deploy","params":{{"app":"web"}},"requested_by":"web:t","state":"{state}","created_at":"2026-11-23T10:00:00Z","started_at":null,"finished_at":null,"exit_code":null,"duration_ms":null,"cpu_ms":null,"max_rss_kb":null,"detail":null}}"#
            )
        };
        for conn in listener.incoming().take(3) {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen2.lock().unwrap().push(first.trim().to_string());
            let (status, ctype, body) = if first.starts_with("POST /api/v1/executions ") {
                let _ = go_rx.recv_timeout(std::time::Duration::from_secs(20));
                ("201 Created", "application/json", exec("queued"))
            } else if first.starts_with("POST /api/v1/executions/7/cancel") {
                ("202 Accepted", "application/json", exec("cancelled"))
            } else {
                (
                    "200 OK",
                    "text/event-stream",
                    format!("event: end\ndata: {}\n\n", exec("cancelled")),
                )
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (addr, go_tx, seen)
}

#[test]
fn interrupted_before_the_server_answers_the_run_is_cancelled_once_it_does() {
    let sb = Sandbox::new();
    let (addr, go, seen) = slow_server();
    let mut c = sb.remote(&format!("http://{addr}"), Some("opsb_test"));
    c.args(["run", "deploy", "app=web"]);
    let mut s = Session::start(c);
    // Wait until the run request is with the server, then interrupt the client.
    let start = std::time::Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "no request came");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    std::thread::sleep(std::time::Duration::from_millis(300));
    go.send(()).unwrap();
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", s.stderr());
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|l| l.starts_with("POST /api/v1/executions/7/cancel")),
        "{seen:?}\n{}",
        s.stderr()
    );
    assert!(s.stderr().contains("waiting for the server's answer"), "{}", s.stderr());
}
