//! People, roles and policies through the binary: `opsbot can` explains decisions, `opsbot check`
//! positions every access mistake, and `opsbot run` (local and `--server`) stops at an approval
//! rule or a missing right with the documented exit codes.

use crate::harness::*;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs a command to its end; returns (exit code, stdout, stderr).
fn output(c: &mut Command) -> (Option<i32>, String, String) {
    let out = c.stdin(Stdio::null()).output().expect("run opsbot");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 1-based line and column (in characters) of the first `needle` in `text`.
fn pos(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).unwrap_or_else(|| panic!("`{needle}` is not in the text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..at].chars().count() + 1)
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    pos(text, needle).0
}

/// `opsbot can ARGS…` on `config`, with the sandbox's (absent) database.
fn can(sb: &Sandbox, config: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    output(sb.cmd(config).arg("can").args(args))
}

/// A person with the example's `deployer` role (dev and staging only), and a lead.
const DEPLOYER_AND_LEAD: &str = r#"
[people.dee]
name = "Dee"
accounts = ["slack:U2DEE", "web:dee"]
roles = ["deployer"]

[people.lea]
name = "Lea"
accounts = ["web:lea"]
roles = ["lead"]
"#;

#[test]
fn access_can_explains_allowed_needs_approval_and_denied() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(DEPLOYER_AND_LEAD);

    // demo is an admin: allowed by the built-in role, but prod deploys need a lead's approval.
    let (code, out, err) = can(&sb, &cfg, &["demo", "run", "deploy", "app=web", "env=prod"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ALLOWED"), "{out}");
    assert!(out.contains("role `admin`"), "names the role: {out}");
    assert!(out.contains("needs 1 approval from `lead`"), "names the approval: {out}");
    assert!(out.contains("prod-changes"), "names the policy: {out}");
    assert!(!out.contains("DENIED"), "{out}");

    // The same for staging: allowed, and nothing stops it.
    let (code, out, err) = can(&sb, &cfg, &["demo", "run", "deploy", "app=web", "env=staging"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ALLOWED") && !out.contains("approval from"), "{out}");

    // An account nobody lists is a guest: denied, told it is unknown and how to link it.
    let (code, out, err) = can(&sb, &cfg, &["slack:U1", "run", "deploy", "app=web", "env=dev"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("DENIED"), "{out}");
    assert!(out.contains("slack:U1"), "names the account: {out}");
    assert!(out.contains("unknown account") || out.contains("don't know your account"), "{out}");
    assert!(out.contains("`link`"), "says how to link it: {out}");
    assert!(!out.contains("ALLOWED"), "{out}");

    // A deployer may deploy to staging, not to prod; the refusal names the constraint and
    // where the rule is written.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let rule_line = line_of(
        &text,
        r#"{ verbs = ["run", "view"], jobs = ["deploy", "rollback", "restart", "scale"]"#,
    );
    let (code, out, err) = can(&sb, &cfg, &["dee", "run", "deploy", "app=web", "env=staging"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("role `deployer`"), "{out}");
    let (code, out, err) = can(&sb, &cfg, &["dee", "run", "deploy", "app=web", "env=prod"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("DENIED"), "{out}");
    assert!(out.contains("env=prod"), "says what was asked: {out}");
    assert!(out.contains("env in [dev, staging]"), "names the constraint: {out}");
    assert!(
        out.contains(&format!("opsbot.toml:{rule_line}")),
        "names the rule's file:line ({rule_line}): {out}"
    );
    // The same person by one of their accounts.
    let (code, out, _) = can(&sb, &cfg, &["web:dee", "run", "deploy", "app=web", "env=prod"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("person `dee`"), "{out}");
    // A lead may approve prod deploys; a deployer may not.
    let (code, out, _) = can(&sb, &cfg, &["lea", "approve", "deploy", "app=web", "env=prod"]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out, _) = can(&sb, &cfg, &["dee", "approve", "deploy", "app=web", "env=dev"]);
    assert_eq!(code, Some(1), "{out}");
}

#[test]
fn access_can_refuses_questions_that_do_not_fit_the_config() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy("");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["demo", "launch", "deploy", "app=web", "env=dev"],
            &["`launch` is not a verb", "run, cancel, approve"],
        ),
        (&["demo", "run", "deplyo", "app=web"], &["no job `deplyo`"]),
        (&["demo", "run", "deploy", "app=web", "env=moon"], &["`moon`"]),
        (&["demo", "run", "deploy", "app=web", "region=eu"], &["no parameter `region`"]),
        (&["demo", "run", "deploy", "app=web", "env"], &["`env` is not key=value"]),
        (&["nobody", "run", "deploy", "app=web", "env=dev"], &["`nobody`", "PLATFORM:ID"]),
        (
            &["demo", "run", "deploy", "app=web", "env=dev", "--in", "nowhere"],
            &["`nowhere` is not a place"],
        ),
    ];
    for (args, wants) in cases {
        let (code, out, err) = can(&sb, &cfg, args);
        assert_eq!(code, Some(2), "{args:?}\n{out}\n{err}");
        for w in *wants {
            assert!(err.contains(w), "{args:?}: missing {w:?} in\n{err}");
        }
        assert!(
            !out.contains("ALLOWED") && !out.contains("DENIED"),
            "{args:?}: no decision for a bad question: {out}"
        );
    }
}

/// A config with one access mistake of each kind.
const BROKEN_ACCESS: &str = r#"[bot]
timezone = "Mars/Olympus_Mons"

[jobs.deploy]
runner = { type = "exec", argv = ["true"] }
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "prod"]
required = true

[jobs.health]
runner = { type = "exec", argv = ["true"] }

[people.pa]
accounts = ["web:shared", "web:pa"]
roles = ["deployr"]

[people.pb]
accounts = ["web:shared"]
roles = []

[roles.admin]
allow = [{ verbs = "*", jobs = "*" }]

[roles.nojob]
allow = [{ verbs = "run", jobs = "deplyo*" }]

[roles.noparam]
allow = [{ verbs = "run", jobs = ["health"], params = { region = "eu" } }]

[roles.badvalue]
allow = [{ verbs = "run", jobs = ["deploy"], params = { env = "moon" } }]

[[policy.freeze]]
name = "weekly"
cron = "61 17 * * fri"
duration = "63h"

[[policy.freeze]]
name = "halfopen"
from = "2026-12-20 00:00"

[[policy.hours]]
name = "office"
between = "9-18"

[[policy.deny_argv]]
name = "broken"
pattern = "(unclosed"
"#;

#[test]
fn access_check_positions_every_access_mistake_at_once() {
    let sb = Sandbox::new();
    let cfg = sb.config(BROKEN_ACCESS);
    let (code, out, err) = output(Command::new(BIN).args(["check", "--config"]).arg(&cfg));
    assert_eq!(code, Some(1), "{out}\n{err}");
    let f = cfg.display().to_string();
    let at = |needle: &str| {
        let (l, c) = pos(BROKEN_ACCESS, needle);
        format!("{f}:{l}:{c}: error: ")
    };
    // (where, what the message says) — each problem at the value it is about.
    let second_shared = {
        // The second `"web:shared"` (pb's), not pa's.
        let first = BROKEN_ACCESS.find("\"web:shared\"").unwrap();
        let second = first + 1 + BROKEN_ACCESS[first + 1..].find("\"web:shared\"").unwrap();
        let before = &BROKEN_ACCESS[..second];
        let line = before.matches('\n').count() + 1;
        let col = second - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        format!("{f}:{line}:{col}: error: ")
    };
    let wants: Vec<(String, &str)> = vec![
        (at("\"Mars/Olympus_Mons\""), "`Mars/Olympus_Mons` is not a time zone"),
        (at("\"deployr\""), "there is no role `deployr`"),
        (second_shared, "account `web:shared` is listed for both `pa` and `pb`"),
        (at("admin]"), "`admin` is a built-in role and cannot be redefined"),
        (at("\"deplyo*\""), "`deplyo*` matches no job"),
        (at("\"eu\""), "no job this rule names has a parameter `region`"),
        (at("\"moon\""), "`moon` is not a value `env` can take"),
        (at("\"61 17 * * fri\""), "`61 17 * * fri` is not a cron pattern"),
        (at("\"9-18\""), "is not a time of day"),
        (at("\"(unclosed\""), "not a valid regular expression"),
    ];
    let mut missing = Vec::new();
    for (place, msg) in &wants {
        let found = err.lines().any(|l| l.starts_with(place.as_str()) && l.contains(msg));
        if !found {
            missing.push(format!("{place}{msg}"));
        }
    }
    // The half-open freeze: at its `[[policy.freeze]]` header, naming it and what it needs.
    let halfopen = at("[[policy.freeze]]\nname = \"halfopen\"");
    if !err
        .lines()
        .any(|l| l.starts_with(&halfopen) && l.contains("freeze `halfopen` needs either `from` and `until`, or `cron` and `duration`"))
    {
        missing.push(format!("{halfopen}freeze `halfopen` needs either `from` and `until` …"));
    }
    assert!(
        missing.is_empty(),
        "missing or misplaced diagnostics:\n{}\n--- stderr ---\n{err}",
        missing.join("\n")
    );
    // Hints where they help.
    assert!(err.contains("did you mean `deployer`?") || err.contains("roles: "), "{err}");
    assert!(err.contains("hint: did you mean `deploy`?"), "{err}");
    // Every problem is counted once, at the end.
    let count = err
        .lines()
        .filter(|l| l.starts_with(&format!("{f}:")) && l.contains(": error: "))
        .count();
    assert_eq!(count, wants.len() + 1, "one diagnostic per mistake\n{err}");
    assert!(err.contains(&format!("{f}: {count} problem(s)")), "{err}");
    assert!(!out.contains("ok —"), "{out}");
}

#[test]
fn access_check_summarises_access_and_policies_when_ok() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(DEPLOYER_AND_LEAD);
    let (code, out, err) = output(Command::new(BIN).args(["check", "--config"]).arg(&cfg));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("ok — 7 jobs"), "{out}");
    assert!(
        out.contains(
            "access: 4 people, roles guest, admin, deployer, lead, viewer; unknown accounts are `guest`, the local command line `admin`"
        ),
        "{out}"
    );
    assert!(
        out.contains("policies: 1 approval, 0 freeze, 0 hours, 0 rate limit, 1 deny_argv rule(s); time zone UTC"),
        "{out}"
    );
    // A person without a role is pointed out.
    let cfg = sb.example_copy("[people.nora]\naccounts = [\"web:nora\"]\n");
    let (code, out, err) = output(Command::new(BIN).args(["check", "--config"]).arg(&cfg));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("note: person `nora` has no role"), "{out}");
}

#[test]
fn access_local_run_of_a_prod_deploy_waits_for_approval() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy("");
    let (code, out, err) = output(sb.cmd(&cfg).args(["run", "--user", "alice", "deploy", "app=web", "env=prod"]));
    assert_eq!(code, Some(3), "exit 3: waiting for approval\n{out}\n{err}");
    assert!(err.contains("approval request 1"), "shows the request: {err}");
    assert!(err.contains("waits for approval (request 1)"), "{err}");
    assert!(err.contains("approve 1"), "says how to approve: {err}");
    assert!(err.contains("prod-changes"), "names the policy: {err}");
    assert!(!err.contains("queued:"), "nothing was queued: {err}");
    // Nothing ran, nothing is queued.
    let (code, out, err) = output(sb.cmd(&cfg).args(["status", "1"]));
    assert_eq!(code, Some(1), "no execution #1\n{out}\n{err}");
    // A staging deploy by the same person runs at once.
    let (code, out, err) = output(sb.cmd(&cfg).args(["run", "--user", "alice", "deploy", "app=web", "env=staging"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    let (code, out, err) = output(sb.cmd(&cfg).args(["status", "1"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("staging"), "#1 is the staging run: {out}");
    // The request is in the audit trail.
    let (code, out, err) = output(sb.cmd(&cfg).args(["audit", "export"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("request 1: needs 1 approval from `lead`"), "{out}");
}

#[test]
fn access_remote_run_needs_the_right_and_waits_for_approval() {
    let sb = Sandbox::new();
    let cfg = sb.example_copy(&format!("{TEST_PEOPLE}\n{DEPLOYER_AND_LEAD}"));
    let lea = sb.token(&cfg, "lea");
    let demo = sb.token(&cfg, "demo");
    let ana = sb.token(&cfg, "ana");
    let stranger = sb.token(&cfg, "zed");
    let (_serve, addr) = sb.serve(&cfg);
    let url = format!("http://{addr}");

    // A lead (and an admin): the run waits for someone else's approval.
    for (who, token, request) in [("lea", &lea, 1), ("demo", &demo, 2)] {
        let (code, out, err) = output(sb.remote(&url, Some(token)).args(["run", "deploy", "app=web", "env=prod"]));
        assert_eq!(code, Some(3), "{who}: exit 3, waiting for approval\n{out}\n{err}");
        assert!(err.contains(&format!("waits for approval (request {request})")), "{who}: {err}");
        assert!(err.contains("`lead`"), "{who}: names the approvers: {err}");
        assert!(!out.contains("deploying"), "{who}: nothing ran: {out}");
    }
    // A deployer may not deploy to prod: refused with the rule's words.
    let (code, out, err) = output(sb.remote(&url, Some(&ana)).args(["run", "deploy", "app=web", "env=prod"]));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("Not allowed"), "{err}");
    assert!(err.contains("env in [dev, staging]"), "names the constraint: {err}");
    assert!(!err.contains("approval"), "{err}");
    // A web user no person lists is a guest.
    let (code, out, err) = output(sb.remote(&url, Some(&stranger)).args(["run", "deploy", "app=web", "env=dev"]));
    assert_eq!(code, Some(2), "{out}\n{err}");
    assert!(err.contains("Not allowed"), "{err}");
    assert!(err.contains("web:zed"), "names the account: {err}");
    // None of them ran anything.
    for id in ["1", "2", "3"] {
        let (code, out, err) = output(sb.remote(&url, Some(&demo)).args(["status", id]));
        assert_eq!(code, Some(1), "no execution #{id}\n{out}\n{err}");
    }
    // The deployer's own staging deploy runs.
    let (code, out, err) = output(sb.remote(&url, Some(&ana)).args(["run", "deploy", "app=web", "env=staging"]));
    assert_eq!(code, Some(0), "{out}\n{err}");
}
