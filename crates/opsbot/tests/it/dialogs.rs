//! Dialogs: a missing parameter is asked for, sensitive jobs are confirmed, both expire,
//! `cancel`/`no` abandon, and the state lives in the store (a new process can answer).

use crate::harness::*;

#[test]
fn missing_params_are_asked_until_valid() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    s.ask("deploy app=web", "Which `env` for `deploy`\\? One of dev, staging, prod");
    s.ask("qa", "That doesn't fit: `qa` is not one of dev, staging, prod(.*\n)*.*Which `env`");
    s.ask("预发", "#1 queued\n.*deploy app=web env=staging version=latest");
    s.expect("✔ #1 deploy succeeded");
    s.ask("!scale", "Which `app` for `scale`");
    s.ask("api", "Which `replicas` for `scale`\\? Integer 1..20");
    s.ask("cancel", "OK, dropped `scale`; nothing was run.");
    s.ask("status 2", "There is no execution #2");
}

#[test]
fn confirmation_yes_no_and_other_messages() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    s.ask("restart web", "Reply `yes`");
    s.ask("no", "OK, `restart` was not run.");
    s.ask("yes", "Nothing is waiting for your answer");
    s.ask("restart worker", "Reply `yes`");
    // Another command in between is handled; the confirmation stays open.
    s.ask("list", "7 jobs");
    s.ask("yes", "#1 queued\n.*restart service=worker");
    s.expect("✔ #1 restart succeeded");
}

#[test]
fn dialogs_expire() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "alice");
    s.ask("danger", "Reply `yes` within 1.0 s");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    s.ask("yes", "That confirmation for `danger` expired at .*; nothing was run");
    s.ask("echo", "Which `v` for `echo`");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    s.ask("hello", "That question for `echo` expired");
    s.ask("history", "nothing yet");
}

#[test]
fn dialog_state_survives_a_restart() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let out = script(&sb, &cfg, "alice", &["restart db"]);
    assert!(out.contains("Reply `yes`"), "{out}");
    // A new process, same person and place: the answer completes the dialog.
    let out = script(&sb, &cfg, "alice", &["yes"]);
    assert!(out.contains("#1 queued"), "{out}");
    assert!(out.contains("✔ #1 restart succeeded"), "{out}");
    // Someone else's "yes" does not answer alice's dialog.
    let out = script(&sb, &cfg, "alice", &["restart api"]);
    assert!(out.contains("Reply `yes`"), "{out}");
    let out = script(&sb, &cfg, "bob", &["yes"]);
    assert!(out.contains("Nothing is waiting for your answer"), "{out}");
}
