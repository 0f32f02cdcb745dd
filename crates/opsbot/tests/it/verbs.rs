//! Every built-in verb, through a scripted shell session on the example catalog.

use crate::harness::*;

#[test]
fn help_list_whoami_and_unknown_words() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    let out = s.ask("help", "whoami");
    assert!(out.contains("history [JOB] [--mine] [--limit N]"), "{out}");
    let out = s.ask("help deploy", "Limits.*");
    for needle in [
        "app      enum    one of api, web, worker",
        "default latest",
        "deploy {app} to {env}",
        "prod = production, prd, live, 生产, 线上",
        "`!deploy app env version`",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }
    s.ask("help deplyo", "There is no job `deplyo`. Did you mean `deploy`");
    let out = s.ask("list", "`help JOB` shows");
    for job in ["deploy", "restart", "rollback", "health", "disk", "logs", "scale"] {
        assert!(out.contains(job), "{out}");
    }
    let out = s.ask("whoami", "roles.*");
    assert!(out.contains("terminal:alice"), "{out}");
    // A typo is asked about with the exact command, never run; `no` drops it.
    s.ask("deplyo web", "Did you mean:\n.*run deploy app=web");
    s.ask("no", "nothing was run");
    s.ask("frobnicate", "I don't know `frobnicate`. `help` lists");
    s.ask("wipe the staging cluster", "No job of mine does `wipe`");
    s.ask("status", "`status` needs an execution id");
    s.ask("status 999", "There is no execution #999");
    s.ask("logs 999", "There is no execution #999");
    s.ask("cancel 999", "There is no execution #999");
    s.ask("history --bogus", "does not know `--bogus`");
    s.ask("yes", "Nothing is waiting for your answer");
    s.ask("run", "`run` needs a job");
}

#[test]
fn run_status_logs_history_cancel() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    s.ask("run logs service=api lines=120", "#1 queued");
    s.expect("✔ #1 logs succeeded");
    let report = s.expect("earlier line\\(s\\) not shown: `logs 1 --all`");
    assert!(report.contains("105 earlier line(s)"), "{report}");
    let st = s.ask("status 1", "max memory.*");
    for needle in [
        "state         succeeded",
        "requested by  alice (terminal:alice)",
        "exit code",
        "cpu time",
        "queued",
        "finished",
    ] {
        assert!(st.contains(needle), "missing {needle:?} in\n{st}");
    }
    let logs = s.ask("logs 1", "for everything");
    assert!(logs.contains("last 50 of 120 lines"), "{logs}");
    // Line 120 of the stand-in log is stamped 10:02:00.
    let all = s.ask("logs #1 --all", "10:02:00Z api\\[4242\\].*\n");
    assert_eq!(all.matches("api[4242]").count(), 120, "{all}");
    s.ask("cancel 1", "#1 already ended \\(succeeded\\)");

    s.ask("!scale web 3", "#2 queued");
    s.expect("✔ #2 scale succeeded");
    s.ask("health api", "#3 queued");
    s.expect("✔ #3 health succeeded");
    let h = s.ask("history", "#1 .*\n");
    assert!(h.contains("Last 3 run(s)"), "{h}");
    let h = s.ask("history scale", "#2.*\n");
    assert!(h.contains("Last 1 run(s) of scale"), "{h}");
    let h = s.ask("history --limit 1", "#3.*\n");
    assert!(h.contains("Last 1 run(s)") && !h.contains("#2 "), "{h}");
    drop(s);

    // Another person's history --mine is empty; the shared history is not.
    let out = script(&sb, &cfg, "bob", &["history --mine", "history"]);
    assert!(out.contains("Last 0 run(s) by you: nothing yet."), "{out}");
    assert!(out.contains("Last 3 run(s)"), "{out}");
}
