//! `opsbot check`: every problem, each with file:line:col and a hint.

use crate::harness::*;

#[test]
fn example_config_is_valid() {
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(example_config())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok — 7 jobs"));
}

#[test]
fn broken_config_lists_every_problem_with_positions() {
    let sb = Sandbox::new();
    let cfg = sb.config(
        r#"[bot]
name = "opsbot"
prefixes = ["! "]

[sotre]
path = "x.db"

[jobs.deploy]
description = "deploy"
aliases = ["deploy {app} to {nowhere}"]
timeout = "5 parsecs"
runner = { type = "exec", argv = ["deploy.sh", "{{ ap }}"], env = { DEPLOY_TOKEN = "hunter2" } }

[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
default = "db"

[[jobs.deploy.params]]
name = "count"
type = "integer"

[jobs.help]
runner = { type = "exec", argv = ["true"] }

[jobs.ssh]
runner = { type = "ssh", host = "x" }
"#,
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = cfg.display().to_string();
    for want in [
        format!("{f}:3:13: error: a prefix must be non-empty and without spaces"),
        format!("{f}:5:2: error: unknown section `sotre`"),
        "hint: did you mean `[store]`?".to_string(),
        format!("{f}:10:12: error: alias `deploy {{app}} to {{nowhere}}`: `{{nowhere}}` is not a parameter"),
        format!("{f}:11:11: error: `5 parsecs` is not a duration"),
        format!("{f}:12:48: error: the template uses `ap`, which is not a parameter of `deploy`"),
        "hint: did you mean `app`?".to_string(),
        format!("{f}:12:84: error: `DEPLOY_TOKEN` looks like a secret written into the config"),
        format!("{f}:18:11: error: the default does not fit the parameter"),
        format!("{f}:22:8: error: unknown parameter type `integer`"),
        format!("{f}:24:7: error: `help` is a built-in command or an answer word and cannot be a job name"),
        format!("{f}:28:19: error: unknown runner type `ssh`"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    assert!(err.contains("problem(s)"), "{err}");
    // The shell refuses to start on it and says how to see the problems.
    let out = std::process::Command::new(BIN)
        .args(["shell", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opsbot check --config"));
}

#[test]
fn checks_that_catch_run_time_surprises_early() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("notexec.sh"), "#!/bin/sh\n").unwrap();
    let cfg = sb.config(
        r#"[jobs.a]
concurrency = 4294967296
aliases = ["help {v}", "status of {v}"]
runner = { type = "exec", argv = ["./missing.sh", "{{ v | nosuchfilter }}", "${env:HOME}"], env = { TOKENIZER = "fast", DB_PASSWORD = "x", API_KEY = "y" }, cwd = "nowhere" }
[[jobs.a.params]]
name = "v"

[jobs.b]
runner = { type = "exec", argv = ["./notexec.sh"] }
[[jobs.b.params]]
name = "requester"

[jobs.ok]
runner = { type = "exec", argv = ["true"] }
"#,
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        ":2:15: error: concurrency must be between 1 and 10000",
        ":3:12: error: alias `help {v}`: it starts with the built-in command `help`",
        "missing.sh` cannot be found",
        "error: argv template fails to render: filter nosuchfilter is unknown",
        "error: `${env:…}`/`${file:…}` references are not resolved in argv",
        "error: `DB_PASSWORD` looks like a secret",
        "error: `API_KEY` looks like a secret",
        "error: working directory `",
        ":11:8: error: `requester` is a built-in template variable",
        ":13:7: error: `ok` is a built-in command or an answer word",
        "notexec.sh` is not an executable file",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    assert!(!err.contains("`TOKENIZER` looks like a secret"), "{err}");
    assert!(!err.contains("alias `status of"), "an alias starting with `status` is fine: {err}");
}

#[test]
fn secrets_are_resolved_or_reported() {
    let sb = Sandbox::new();
    let cfg = sb.config(
        r#"[jobs.x]
runner = { type = "exec", argv = ["true"], env = { API_TOKEN = "${env:OPSBOT_TEST_NEVER_SET}", OTHER = "${file:missing.txt}" } }
"#,
    );
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .env_remove("OPSBOT_TEST_NEVER_SET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:64: error: environment variable `OPSBOT_TEST_NEVER_SET`"), "{err}");
    assert!(err.contains("cannot read"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["check", "--no-secrets", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --no-secrets still checks the reference syntax.
    let bad = sb.config("[jobs.x]\nrunner = { type = \"exec\", argv = [\"true\"], env = { A = \"${vault:x}\" } }\n");
    let out = std::process::Command::new(BIN)
        .args(["check", "--no-secrets", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("`${vault:x}` is not a reference opsbot knows"));
    let out = std::process::Command::new(BIN)
        .args(["check", "--config"])
        .arg(&cfg)
        .env("OPSBOT_TEST_NEVER_SET", "x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 problem(s)"));
}

#[test]
fn missing_config_file_says_what_to_do() {
    let out = std::process::Command::new(BIN)
        .args(["shell", "--config", "/nonexistent/opsbot.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config file at `/nonexistent/opsbot.toml`"));
}

#[test]
fn a_file_that_is_not_a_database_is_named_once_and_clearly() {
    let sb = Sandbox::new();
    std::fs::write(sb.db(), "not a database").unwrap();
    let out = sb
        .cmd(&example_config())
        .args(["shell"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot open the store at") && err.contains("file is not a database"),
        "{err}"
    );
    assert_eq!(err.matches("file is not a database").count(), 1, "{err}");
}

#[test]
fn adapters_are_listed_with_what_they_can_do_and_secrets_stay_references() {
    let sb = Sandbox::new();
    let cfg = sb.config(
        r##"
[jobs.hello]
runner = { type = "exec", argv = ["true"] }

[adapters.libera]
type = "irc"
server = "irc.libera.chat"
nick = "opsbot"
sasl_user = "opsbot"
sasl_password = "${env:LIBERA_PASSWORD}"
channels = ["#ops"]

[adapters.matrix]
type = "matrix"
homeserver = "https://matrix.example.org"
user_id = "@opsbot:example.org"
access_token = "${env:MATRIX_TOKEN}"
"##,
    );
    // Without the secrets set: `--no-secrets` checks everything else (CI without secrets).
    let out = sb.cmd(&cfg).args(["check", "--no-secrets"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("chat: adapter `libera` (irc), sends at most 1/s (burst 5); can direct"),
        "{stdout}"
    );
    assert!(
        stdout.contains("chat: adapter `matrix` (matrix)") && stdout.contains("edit, threads"),
        "{stdout}"
    );
    // With secret resolution a missing variable is named at its line.
    let out = sb
        .cmd(&cfg)
        .arg("check")
        .env_remove("LIBERA_PASSWORD")
        .env_remove("MATRIX_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(":10:") && err.contains("LIBERA_PASSWORD"), "{err}");
}

#[test]
fn check_prints_the_urls_slack_and_mattermost_call() {
    let sb = Sandbox::new();
    let cfg = sb.config(
        r##"
[web]
public_url = "https://ops.example.com"

[jobs.hello]
runner = { type = "exec", argv = ["true"] }

[adapters.corp]
type = "slack"
mode = "events"
bot_token = "${env:SLACK_BOT_TOKEN}"
signing_secret = "${env:SLACK_SIGNING_SECRET}"

[adapters.sock]
type = "slack"
bot_token = "${env:SLACK_BOT_TOKEN}"
app_token = "${env:SLACK_APP_TOKEN}"

[adapters.mm]
type = "mattermost"
url = "https://chat.example.com"
token = "${env:MM_TOKEN}"
"##,
    );
    let out = sb.cmd(&cfg).args(["check", "--no-secrets"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "chat: adapter `corp` (slack)",
        "buttons",
        "forms",
        "https://ops.example.com/hooks/corp/events (Event Subscriptions)",
        "https://ops.example.com/hooks/corp/commands (slash command)",
        "https://ops.example.com/hooks/corp/interactive (Interactivity)",
        "Mattermost's slash command calls https://ops.example.com/hooks/mm/command",
        "message buttons call https://ops.example.com/hooks/mm/actions",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    // Socket Mode needs no URL.
    assert!(!stdout.contains("/hooks/sock/"), "{stdout}");
}
