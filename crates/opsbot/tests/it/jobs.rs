//! Every example job, run for real through the shell.

use crate::harness::*;

#[test]
fn deploy_by_alias_grammar_positional_and_synonyms() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    s.ask("deploy web to staging", "#1 queued\n.*deploy app=web env=staging version=latest");
    let done = s.expect("web latest is live in staging");
    assert!(done.contains("✔ #1 deploy succeeded"), "{done}");
    // The example config puts production deploys to a lead (four eyes): no run yet.
    s.ask(
        "run deploy app=api env=production version=1.4.2",
        "approval request 1 — pending(.*\n)*.*deploy app=api env=prod version=1.4.2(.*\n)*.*1 approval from `lead` \\(approval `prod-changes`\\)",
    );
    s.ask("approve 1", "You asked for request 1; someone else must approve it");
    s.ask("!deploy app=api env=staging version=1.4.2", "#2 queued");
    s.expect("api 1.4.2 is live in staging");
    s.ask("!deploy worker 开发 2.0.1", "#3 queued\n.*deploy app=worker env=dev version=2.0.1");
    s.expect("worker 2.0.1 is live in dev");
    s.ask(
        "push worker 3.1.0 to stage",
        "#4 queued\n.*deploy app=worker env=staging version=3.1.0",
    );
    s.expect("✔ #4 deploy succeeded");
    s.ask("opsbot: deploy api 0.0.0 to dev", "#5 queued");
    let failed = s.expect("✘ #5 deploy failed \\(exit 1\\)(.*\n)*?.*artifact api:0.0.0 not found");
    assert!(failed.contains("[stderr] error: artifact api:0.0.0 not found"), "{failed}");
    s.ask("deploy web to qa", "`env`: `qa` is not one of dev, staging, prod");
    s.ask("deploy web to prod version=latest!", "`version`: `latest!` is not allowed");
    s.ask("deploy app=web env=prod region=eu", "`deploy` has no parameter `region`");
    s.ask("deploy web staging 1.0.0 extra", "Too many values: `extra` left over");
    s.ask(
        "deploy web to staging please 🚀",
        "I understood `deploy web to staging` but not `please 🚀` after it. More values go as key=value",
    );
}

#[test]
fn restart_rollback_health_disk_logs_scale() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let mut s = sb.shell(&cfg, "alice");
    s.ask(
        "!restart api",
        "Reply `yes` within 2 min 00 s to run:\n.*restart service=api host=localhost",
    );
    s.ask("yes", "#1 queued");
    s.expect("✔ #1 restart succeeded(.*\n)*.*api on localhost is up");
    s.ask("restart db on db1.internal", "restart service=db host=db1.internal");
    s.ask("y", "#2 queued");
    s.expect("db on db1.internal is up");
    s.ask("restart api on bad_host!", "`host`: `bad_host!` is not allowed");

    s.ask(
        "roll back web in production",
        "approval request 1 — pending(.*\n)*.*rollback app=web env=prod",
    );
    s.ask("roll back web in staging", "#3 queued\n.*rollback app=web env=staging");
    s.expect("web in staging is back on 1.4.1");
    s.ask("is api healthy", "#4 queued");
    s.expect("✔ #4 health succeeded(.*\n)*.*api: healthy");
    s.ask("is worker alive", "#5 queued");
    s.expect("✘ #5 health failed \\(exit 1\\)(.*\n)*.*worker: degraded");
    s.ask("disk", "#6 queued\n.*disk host=localhost");
    s.expect("✔ #6 disk succeeded(.*\n)*.*Filesystem");
    s.ask("last 3 lines of db", "#7 queued\n.*logs service=db lines=3");
    let out = s.expect("✔ #7 logs succeeded(.*\n)*?.*db\\[4242\\](.*\n)*?.*db\\[4242\\](.*\n)*?.*db\\[4242\\].*\n");
    assert_eq!(out.matches("db[4242]").count(), 3, "{out}");
    s.ask("scale web to 3", "#8 queued");
    s.expect("web: 3/3 replicas ready");
    s.ask("scale web to 21", "`replicas`: 21 is out of range \\(expected integer 1..20\\)");
    s.ask("!logs api 0", "`lines`: 0 is out of range");
}
