//! Timeouts and cancel requests stop the whole process group; stray grandchildren do not
//! hold a finished run open.

use crate::support::{job, params, request, run, system, texts};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg};
use nix::unistd::Pid;
use opsbot_core::{CancelToken, OutputLine, Runner, Stream};
use opsbot_runners::ExecRunner;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Waits until no process of the group is left (zombies count), up to 3 s.
async fn group_gone(pgid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        match killpg(Pid::from_raw(pgid), None) {
            Err(Errno::ESRCH) => return true,
            _ if Instant::now() > until => return false,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Next stdout line from a live run.
async fn next_stdout(rx: &mut mpsc::Receiver<OutputLine>) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("output in time")
            .expect("a line");
        if line.stream == Stream::Stdout {
            return line.text;
        }
    }
}

#[tokio::test]
async fn timeout_stops_a_long_sleep() {
    let mut j = job(&["sleep", "30"]);
    j.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (outcome, lines) = run(j, params(&[])).await;
    assert!(outcome.timed_out, "{outcome:?}");
    assert!(!outcome.cancelled);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_eq!(system(&lines), "timed out after 300 ms; stopped with SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_when_sigterm_is_ignored() {
    let mut j = job(&["/bin/sh", "-c", "trap '' TERM; echo ready; sleep 30"]);
    j.timeout = Duration::from_secs(1);
    j.kill_grace = Duration::from_millis(200);
    let (outcome, lines) = run(j, params(&[])).await;
    assert!(outcome.timed_out);
    assert_eq!(outcome.signal, Some(libc::SIGKILL), "{outcome:?}");
    let note = system(&lines);
    assert!(note.starts_with("timed out after 1 s; stopped with SIGKILL after 200 ms"), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_whole_group() {
    let j = job(&["/bin/sh", "-c", "echo $$; sleep 60 & echo $!; sleep 60"]);
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancelToken::new();
    let req = request(j, params(&[]), tx, cancel.clone());
    let handle = tokio::spawn(async move { ExecRunner::new().run(req).await });

    let pgid: i32 = next_stdout(&mut rx).await.parse().unwrap();
    let grandchild: i32 = next_stdout(&mut rx).await.parse().unwrap();
    assert!(killpg(Pid::from_raw(pgid), None).is_ok(), "the group runs");
    assert!(kill(Pid::from_raw(grandchild), None).is_ok(), "the grandchild runs");
    cancel.cancel();

    let outcome = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops in time")
        .unwrap();
    let mut rest = Vec::new();
    while let Some(l) = rx.recv().await {
        rest.push(l);
    }
    assert!(outcome.cancelled && !outcome.timed_out, "{outcome:?}");
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_eq!(system(&rest), "cancelled; stopped with SIGTERM");
    assert!(group_gone(pgid).await, "the process group is still there");
    assert_eq!(kill(Pid::from_raw(grandchild), None), Err(Errno::ESRCH));
}

#[tokio::test]
async fn cancel_escalates_to_sigkill() {
    let mut j = job(&["/bin/sh", "-c", "trap '' TERM; echo $$; sleep 60 & sleep 60"]);
    j.kill_grace = Duration::from_millis(200);
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancelToken::new();
    let req = request(j, params(&[]), tx, cancel.clone());
    let handle = tokio::spawn(async move { ExecRunner::new().run(req).await });
    let pgid: i32 = next_stdout(&mut rx).await.parse().unwrap();
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops in time")
        .unwrap();
    let mut rest = Vec::new();
    while let Some(l) = rx.recv().await {
        rest.push(l);
    }
    assert!(outcome.cancelled);
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert!(
        system(&rest).starts_with("cancelled; stopped with SIGKILL after 200 ms"),
        "{}",
        system(&rest)
    );
    assert!(group_gone(pgid).await, "the process group is still there");
}

#[tokio::test]
async fn a_grandchild_holding_stdout_does_not_hold_the_run() {
    let started = Instant::now();
    let (outcome, lines) = run(job(&["/bin/sh", "-c", "sleep 5 & echo done"]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(texts(&lines, Stream::Stdout), ["done"]);
    assert!(!outcome.timed_out && !outcome.cancelled);
    // A behaviour check, not a benchmark: the run must not wait for the 5 s sleep.
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let j = job(&["/bin/sh", "-c", "echo $$; sleep 60"]);
    let (tx, mut rx) = mpsc::channel(64);
    let req = request(j, params(&[]), tx, CancelToken::new());
    let handle = tokio::spawn(async move { ExecRunner::new().run(req).await });
    let pgid: i32 = next_stdout(&mut rx).await.parse().unwrap();
    handle.abort();
    let _ = handle.await;
    assert!(group_gone(pgid).await, "the process group is still there");
}
