//! How processes end, how their streams are split into lines, and resource usage.

use crate::support::{job, params, run, system, texts};
use opsbot_core::Stream;

#[tokio::test]
async fn exit_code_zero() {
    let (outcome, lines) = run(job(&["/bin/sh", "-c", "echo hi"]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.signal, None);
    assert!(!outcome.timed_out && !outcome.cancelled && !outcome.output_truncated);
    assert_eq!(outcome.start_error, None);
    assert_eq!(texts(&lines, Stream::Stdout), ["hi"]);
    assert!(system(&lines).is_empty());
}

#[tokio::test]
async fn exit_code_three() {
    let (outcome, _) = run(job(&["/bin/sh", "-c", "exit 3"]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.signal, None);
}

#[tokio::test]
async fn death_by_signal() {
    let (outcome, _) = run(job(&["/bin/sh", "-c", "echo before; kill -KILL $$; echo after"]), params(&[])).await;
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert!(!outcome.timed_out && !outcome.cancelled);
}

#[tokio::test]
async fn stdout_and_stderr_are_separate_and_ordered() {
    let script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done";
    let (outcome, lines) = run(job(&["/bin/sh", "-c", script]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(texts(&lines, Stream::Stdout), ["out1", "out2", "out3", "out4", "out5"]);
    assert_eq!(texts(&lines, Stream::Stderr), ["err1", "err2", "err3", "err4", "err5"]);
}

#[tokio::test]
async fn crlf_is_stripped_and_blank_and_last_lines_kept() {
    let (_, lines) = run(job(&["printf", "a\\r\\nb\\r\\n\\nx\\ry\\r\\nlast"]), params(&[])).await;
    assert_eq!(texts(&lines, Stream::Stdout), ["a", "b", "", "x\ry", "last"]);
}

#[tokio::test]
async fn invalid_utf8_is_converted_lossily() {
    let (outcome, lines) = run(job(&["printf", "ok\\377\\376end\\n\\303\\251t\\303\\251\\n"]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(texts(&lines, Stream::Stdout), ["ok\u{FFFD}\u{FFFD}end", "été"]);
}

#[tokio::test]
async fn resource_usage_is_reported() {
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done";
    let (outcome, _) = run(job(&["/bin/sh", "-c", script]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.cpu_ms.unwrap() > 0, "{outcome:?}");
    assert!(outcome.max_rss_kb.unwrap() > 0, "{outcome:?}");
    assert!(outcome.duration_ms > 0, "{outcome:?}");
}
