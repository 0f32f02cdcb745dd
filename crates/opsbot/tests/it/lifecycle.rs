//! Cancel, timeout, output cap, lost recovery, serve.

use crate::harness::*;
use std::time::Duration;

fn pgid_from(out: &str) -> i32 {
    let i = out.rfind("pgid=").expect("pgid printed");
    out[i + 5..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

/// The process group a `sleeper` run printed first (`pgid=N`), asking `logs ID` until it shows;
/// by then the worker has recorded it too.
fn running_pgid(s: &mut Session, id: i64) -> i32 {
    for _ in 0..100 {
        let out = s.ask(&format!("logs {id}"), "(No output\\.|pgid=\\d+)\n");
        if out.contains("pgid=") {
            return pgid_from(&out);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("#{id} never printed its pgid");
}

#[test]
fn cancel_stops_the_whole_process_group() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "alice");
    s.ask("sleeper", "#1 queued");
    s.expect("▶ #1 running");
    let pgid = running_pgid(&mut s, 1);
    assert!(group_alive(pgid));
    s.ask("cancel 1", "Stopping #1");
    s.expect("#1 sleeper cancelled");
    assert!(!group_alive(pgid), "process group {pgid} still has members after cancel");
    s.ask("status 1", "state         cancelled");
    s.ask("cancel 1", "#1 already ended \\(cancelled\\)");
}

#[test]
fn timeout_ends_the_run_as_timed_out() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "").to_string_lossy().to_string();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("timeout = \"30s\"", "timeout = \"1s\"");
    let cfg = sb.config(&text);
    let mut s = sb.shell(&cfg, "alice");
    s.ask("sleeper", "#1 queued");
    let out = s.expect("✘ #1 sleeper timed out(.*\n)*?.*timed out after");
    let pgid = pgid_from(&out);
    assert!(!group_alive(pgid), "process group {pgid} survived the timeout");
    s.ask("status 1", "note .*ran past its timeout");
}

#[test]
fn output_cap_keeps_the_start_and_says_so() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "alice");
    s.ask("flood", "#1 queued");
    let out = s.expect("✔ #1 flood succeeded(.*\n)*?.*not shown");
    assert!(out.contains("[opsbot] output truncated"), "{out}");
    assert!(out.contains("output was truncated"), "{out}");
    let all = s.ask("logs 1 --all", "output truncated.*\n");
    assert!(all.contains("line-0-"), "{all}");
    assert!(!all.contains("line-19999"), "{all}");
    let stored: usize = all.lines().filter(|l| l.contains("line-")).map(|l| l.len()).sum();
    assert!(stored < 20 * 1024, "kept {stored} bytes with a 16 KiB cap");
}

#[test]
fn failed_runs_report_exit_code_and_stderr() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let out = script(&sb, &cfg, "alice", &["fail"]);
    assert!(
        out.contains("✘ #1 fail failed (exit 1)") || out.contains("✘ #1 fail failed (exit 3)"),
        "{out}"
    );
    assert!(out.contains("exit code     3"), "{out}");
    assert!(out.contains("[stderr] oops"), "{out}");
}

#[test]
fn runs_left_by_a_killed_process_are_reported_lost() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "alice");
    s.ask("sleeper", "#1 queued");
    s.expect("▶ #1 running");
    let pgid = running_pgid(&mut s, 1);
    assert!(group_alive(pgid));
    // Kill opsbot itself, hard: nothing gets to record the end, and the job is orphaned.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGKILL) };
    let _ = s.child.wait();
    assert!(group_alive(pgid), "the job outlives a killed opsbot");
    let out = script(&sb, &cfg, "alice", &["status 1"]);
    assert!(out.contains("✘ #1 sleeper lost"), "{out}");
    assert!(out.contains("its worker"), "{out}");
    assert!(out.contains("state         lost"), "{out}");
    // Recovery stopped what was left of it.
    assert!(!group_alive(pgid), "the lost run's processes are still running");
}

#[test]
fn serve_runs_until_signalled_and_recovers_lost_runs() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut c = sb.cmd(&cfg);
    c.args(["serve", "--listen", "127.0.0.1:0"]).env("OPSBOT_LOG", "info");
    let mut s = Session::start(c);
    let start = std::time::Instant::now();
    while !s.stderr().contains("opsbot serving 7 jobs") {
        assert!(start.elapsed() < Duration::from_secs(20), "serve did not start: {}", s.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{}", s.stderr());
    assert!(s.stderr().contains("stopping"), "{}", s.stderr());
}

#[test]
fn job_concurrency_holds_further_runs_in_the_queue() {
    let sb = Sandbox::new();
    let cfg = test_config(
        &sb,
        r#"
[jobs.single]
description = "one at a time"
concurrency = 1
runner = { type = "exec", argv = ["sh", "-c", "sleep 1; echo finished"] }
"#,
    );
    let mut s = sb.shell(&cfg, "alice");
    s.ask("single", "#1 queued");
    s.expect("▶ #1 running");
    s.ask("single", "#2 queued");
    // While #1 runs, #2 waits for its turn.
    s.ask("status 2", "state         queued");
    s.ask("logs 2", "No output yet: it has not started.");
    s.expect("✔ #1 single succeeded");
    s.expect("▶ #2 running");
    s.expect("✔ #2 single succeeded");
    s.ask("status 2", "#2 succeeded\n.*\n  state         succeeded");
}

#[test]
fn a_shell_without_worker_hears_of_runs_carried_out_by_serve() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut serve = sb.cmd(&cfg);
    serve.args(["serve", "--no-web"]);
    let mut serve = Session::start(serve);
    let start = std::time::Instant::now();
    while !serve.stderr().contains("opsbot serving") {
        assert!(start.elapsed() < Duration::from_secs(20), "serve did not start: {}", serve.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = sb.cmd(&cfg);
    c.args(["shell", "--no-worker", "--user", "alice"]);
    let mut s = Session::start(c);
    s.ask("count n=4", "#1 queued");
    // serve's worker runs it; this process only sees the record change.
    let out = s.expect("✔ #1 count succeeded(.*\n)*?.*│ 4\n");
    assert!(out.contains("│ 1\n"), "{out}");
    let (_, _, ok) = s.finish();
    assert!(ok);
    unsafe { libc::kill(serve.child.id() as i32, libc::SIGTERM) };
    assert!(serve.child.wait().unwrap().success());
}

#[test]
fn sigterm_to_the_shell_stops_its_runs_and_records_them() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "alice");
    s.ask("sleeper", "#1 queued");
    s.expect("▶ #1 running");
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    s.expect("#1 sleeper cancelled");
    assert!(s.child.wait().unwrap().success());
    let out = script(&sb, &cfg, "alice", &["status 1"]);
    assert!(out.contains("state         cancelled"), "{out}");
}
