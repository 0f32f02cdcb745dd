//! Output limits: the total cap, the per-line cut, and a receiver that goes away.

use crate::support::{job, params, request, run, system, texts};
use opsbot_core::{CancelToken, Runner, Stream};
use opsbot_runners::ExecRunner;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_cap_truncates_and_keeps_draining() {
    // ~5 MB: 50 000 lines of 100 characters.
    let line = "0123456789".repeat(10);
    let script = format!("yes {line} | head -n 50000; echo tail >&2; echo end");
    let mut j = job(&["/bin/sh", "-c", &script]);
    j.output_limit = 64 * 1024;
    let (outcome, lines) = run(j, params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0), "the run completes: {outcome:?}");
    assert!(outcome.output_truncated);
    let notes = texts(&lines, Stream::System);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("output truncated: the first "), "{}", notes[0]);
    assert!(notes[0].contains("(limit 64 KiB); the rest was discarded"), "{}", notes[0]);
    let sent: usize = lines.iter().filter(|l| l.stream != Stream::System).map(|l| l.text.len() + 1).sum();
    assert!(sent <= 64 * 1024, "sent {sent}");
    assert!(sent > 60 * 1024, "sent {sent}");
    let note_at = lines.iter().position(|l| l.stream == Stream::System).unwrap();
    assert_eq!(note_at, lines.len() - 1, "nothing is sent after the note");
    assert!(texts(&lines, Stream::Stdout).iter().all(|l| *l == line));
}

#[tokio::test]
async fn a_huge_single_line_is_cut_at_16_kib() {
    let script = "head -c 1000000 /dev/zero | tr '\\0' a; echo; echo after";
    let (outcome, lines) = run(job(&["/bin/sh", "-c", script]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert!(!outcome.output_truncated);
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out.len(), 2, "{:?}", out.iter().map(String::len).collect::<Vec<_>>());
    assert_eq!(out[0], format!("{} … [line cut at 16 KiB]", "a".repeat(16 * 1024)));
    assert_eq!(out[1], "after");
}

#[tokio::test]
async fn a_cut_does_not_split_a_character() {
    let script = "s=é; i=0; while [ $i -lt 14 ]; do s=$s$s; i=$((i+1)); done; printf 'a%s\\n' \"$s\"";
    let (_, lines) = run(job(&["/bin/sh", "-c", script]), params(&[])).await;
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out.len(), 1);
    assert!(out[0].ends_with(" … [line cut at 16 KiB]"));
    assert!(!out[0].contains('\u{FFFD}'), "no replacement character at the cut");
}

#[tokio::test]
async fn a_gone_receiver_does_not_stop_the_run() {
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let j = job(&["/bin/sh", "-c", "yes | head -n 100000; exit 4"]);
    let outcome = ExecRunner::new().run(request(j, params(&[]), tx, CancelToken::new())).await;
    assert_eq!(outcome.exit_code, Some(4));
}

#[tokio::test]
async fn system_notes_do_not_count_and_small_limits_work() {
    let mut j = job(&["printf", "aaaa\\nbbbb\\ncccc\\n"]);
    j.output_limit = 10;
    let (outcome, lines) = run(j, params(&[])).await;
    assert!(outcome.output_truncated);
    assert_eq!(texts(&lines, Stream::Stdout), ["aaaa", "bbbb"]);
    assert_eq!(
        system(&lines),
        "output truncated: the first 10 bytes were kept (limit 10 bytes); the rest was discarded"
    );
}
