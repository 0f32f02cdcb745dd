//! Runs that cannot start: nothing is started and the reason is reported.

use crate::support::{in_dir, job, params, run, system, texts};
use opsbot_core::{CancelToken, Stream};
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn missing_program_names_it_and_the_os_reason() {
    let (outcome, lines) = run(job(&["/nonexistent/opsbot-prog", "x"]), params(&[])).await;
    let err = outcome.start_error.clone().expect("start error");
    assert!(err.contains("`/nonexistent/opsbot-prog`"), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, None);
    assert_eq!(outcome.cpu_ms, None);
    assert_eq!(texts(&lines, Stream::System), [err]);
}

#[tokio::test]
async fn missing_program_on_path() {
    let (outcome, _) = run(job(&["opsbot-no-such-program-anywhere"]), params(&[])).await;
    let err = outcome.start_error.expect("start error");
    assert!(err.contains("`opsbot-no-such-program-anywhere`"), "{err}");
}

#[tokio::test]
async fn program_not_executable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script");
    std::fs::write(&path, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (outcome, _) = run(job(&[path.to_str().unwrap()]), params(&[])).await;
    let err = outcome.start_error.expect("start error");
    assert!(err.contains("Permission denied"), "{err}");
}

#[tokio::test]
async fn missing_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let (outcome, lines) = run(in_dir(job(&["/bin/echo", "hi"]), &gone), params(&[])).await;
    let err = outcome.start_error.expect("start error");
    assert!(
        err.contains("`/bin/echo`") && err.contains("gone") && err.contains("No such file"),
        "{err}"
    );
    assert!(texts(&lines, Stream::Stdout).is_empty());
}

#[tokio::test]
async fn template_error_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let script = format!("touch {}", marker.display());
    let (outcome, lines) = run(job(&["/bin/sh", "-c", &script, "{{ v"]), params(&[("v", "x")])).await;
    let err = outcome.start_error.expect("start error");
    assert!(err.contains("argv[3]") && err.contains("{{ v"), "{err}");
    assert_eq!(system(&lines), err);
    assert!(!marker.exists());
}

#[tokio::test]
async fn empty_argv_and_empty_program() {
    let (outcome, _) = run(job(&[]), params(&[])).await;
    assert!(outcome.start_error.expect("start error").contains("argv is empty"));
    let (outcome, _) = run(job(&["{{ absent }}"]), params(&[])).await;
    assert!(outcome.start_error.expect("start error").contains("empty string"));
}

#[tokio::test]
async fn cancelled_before_start_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("started");
    let cancel = CancelToken::new();
    cancel.cancel();
    let script = format!("touch {}", marker.display());
    let (outcome, lines) = crate::support::run_with(job(&["/bin/sh", "-c", &script]), params(&[]), cancel).await;
    assert!(outcome.cancelled);
    assert_eq!(outcome.exit_code, None);
    assert!(system(&lines).contains("cancelled"));
    assert!(!marker.exists());
}
