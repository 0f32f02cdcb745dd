//! Web users through the binary: `opsbot user hash-password`, the demo user's generated
//! password printed once at the first start and working, OPSBOT_PASSWORD_<NAME>, and
//! `opsbot user reset-password`.

use crate::harness::{Sandbox, http_with};
use regex::Regex;
use std::io::Write;
use std::process::Stdio;

/// Signs in through the form; returns the HTTP status of the POST.
fn sign_in(addr: &str, user: &str, password: &str) -> u16 {
    let (status, head, body) = http_with(addr, "GET", "/login", &[], None);
    assert_eq!(status, 200, "{body}");
    let cookie = Regex::new(r"(?i)set-cookie: opsbot_login=([0-9a-f]+)")
        .unwrap()
        .captures(&head)
        .unwrap()[1]
        .to_string();
    let csrf = Regex::new(r#"name="csrf" value="([0-9a-f]+)""#).unwrap().captures(&body).unwrap()[1].to_string();
    let form = format!("user={user}&password={password}&csrf={csrf}");
    let (status, _, _) = http_with(
        addr,
        "POST",
        "/login",
        &[("Cookie", &format!("opsbot_login={cookie}"))],
        Some(("application/x-www-form-urlencoded", &form)),
    );
    status
}

fn stop(mut s: crate::harness::Session) -> String {
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let _ = s.child.wait();
    s.stderr()
}

#[test]
fn hash_password_reads_stdin_and_its_hash_is_accepted_by_check() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy("");
    let mut c = sb.cmd(&cfg);
    let mut child = c
        .args(["user", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains("correct"), "{hash}");
    // The hash works in a config, and signs in.
    let cfg = sb.example_copy(&format!("[web.users.ana]\npassword_hash = \"{hash}\"\n"));
    let check = sb.cmd(&cfg).arg("check").output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let (serve, addr) = sb.serve_with(&cfg, &[("OPSBOT_PASSWORD_DEMO", "demo-password-1")]);
    assert_eq!(sign_in(&addr, "ana", "correct%20horse%20battery"), 303);
    assert_eq!(sign_in(&addr, "ana", "correct%20horse"), 401);
    stop(serve);
    // An empty password prints nothing and fails.
    let mut child = sb
        .cmd(&cfg)
        .args(["user", "hash-password"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}

#[test]
fn the_demo_password_is_generated_once_printed_once_and_can_be_reset() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy("");
    let (serve, addr) = sb.serve(&cfg);
    let first = serve.stderr();
    let pw = Regex::new(r"web user `demo` has the generated password  (\S+)  ")
        .unwrap()
        .captures(&first)
        .unwrap_or_else(|| panic!("no password printed: {first}"))[1]
        .to_string();
    assert_eq!(pw.len(), 20);
    assert!(first.contains(&format!("open http://{addr}/ in a browser")), "{first}");
    assert_eq!(sign_in(&addr, "demo", &pw), 303);
    assert_eq!(sign_in(&addr, "demo", "demo"), 401);
    stop(serve);

    // The second start does not print it again, and it still works.
    let (serve, addr) = sb.serve(&cfg);
    let second = serve.stderr();
    assert!(!second.contains(&pw), "{second}");
    assert!(second.contains("printed at the first start"), "{second}");
    assert_eq!(sign_in(&addr, "demo", &pw), 303);
    stop(serve);

    // The environment variable wins while it is set.
    let (serve, addr) = sb.serve_with(&cfg, &[("OPSBOT_PASSWORD_DEMO", "from-the-env")]);
    assert!(serve.stderr().contains("value of OPSBOT_PASSWORD_DEMO"), "{}", serve.stderr());
    assert_eq!(sign_in(&addr, "demo", "from-the-env"), 303);
    assert_eq!(sign_in(&addr, "demo", &pw), 401);
    stop(serve);

    // Reset: forgotten, and the next start prints a new one.
    let out = sb.cmd(&cfg).args(["user", "reset-password", "demo"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (serve, addr) = sb.serve(&cfg);
    let third = serve.stderr();
    let pw2 = Regex::new(r"generated password  (\S+)  ").unwrap().captures(&third).unwrap()[1].to_string();
    assert_ne!(pw, pw2);
    assert_eq!(sign_in(&addr, "demo", &pw), 401);
    assert_eq!(sign_in(&addr, "demo", &pw2), 303);
    stop(serve);
    let out = sb.cmd(&cfg).args(["user", "reset-password", "nobody"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no web user `nobody`"));
}
