//! `opsbot run`: the CLI door with the same checks, waiting for the result.

use crate::harness::*;

#[test]
fn run_waits_prints_output_and_exits_with_the_outcome() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let out = sb.cmd(&cfg).args(["run", "deploy", "app=web", "env=staging"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("web latest is live in staging"), "{stdout}");
    assert!(stderr.contains("#1 deploy succeeded"), "{stderr}");

    let out = sb.cmd(&cfg).args(["run", "deploy", "api", "dev", "0.0.0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("#2 deploy failed (exit 1)"));

    let out = sb.cmd(&cfg).args(["run", "deploy", "app=web", "env=qa"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`qa` is not one of dev, staging, prod"));

    let out = sb
        .cmd(&cfg)
        .args(["run", "deploy", "app=web"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`env` is required; pass env=VALUE"));

    let out = sb.cmd(&cfg).args(["run", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("There is no job `nosuch`"));

    // Sensitive: refused from a script without --yes, run with it.
    let out = sb
        .cmd(&cfg)
        .args(["run", "restart", "service=api"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --yes"));
    let out = sb.cmd(&cfg).args(["run", "restart", "service=api", "--yes"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("api on localhost is up"));
    let out = sb.cmd(&cfg).args(["run", "-y", "restart", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Everything above went through the engine and is in the shared history.
    let h = script(&sb, &cfg, "alice", &["history"]);
    assert!(h.contains("Last 4 run(s)"), "{h}");
}

#[test]
fn run_accepts_dash_dash_key_value_and_hides_the_auto_confirmed_prompt() {
    let sb = Sandbox::new();
    let cfg = example_config();
    let out = sb.cmd(&cfg).args(["run", "deploy", "--app=web", "--env=staging"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = sb.cmd(&cfg).args(["run", "--yes", "restart", "api"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("#2 queued: run restart api"), "{err}");
    assert!(!err.contains("Reply `yes`"), "{err}");
}

#[test]
fn interrupting_run_stops_the_job_and_records_it() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut c = sb.cmd(&cfg);
    c.args(["run", "sleeper"]);
    let mut s = Session::start(c);
    let out = s.expect("pgid=\\d+\n");
    let pgid: i32 = out.rsplit("pgid=").next().unwrap().trim().parse().unwrap();
    assert!(group_alive(pgid));
    unsafe { libc::kill(s.child.id() as i32, libc::SIGINT) };
    let status = s.child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", s.stderr());
    assert!(!group_alive(pgid), "the job's processes outlived opsbot run");
    let h = script(&sb, &cfg, "x", &["status 1"]);
    assert!(h.contains("state         cancelled"), "{h}");
}

#[test]
fn bool_params_render_as_true_and_false_and_test_as_booleans() {
    let sb = Sandbox::new();
    let cfg = test_config(
        &sb,
        r#"
[jobs.flag]
runner = { type = "exec", argv = ["echo", "force={{ force }}", "{% if force %}on{% else %}off{% endif %}", "{{ n + 1 }}", "{{ force == true }}"] }
[[jobs.flag.params]]
name = "force"
type = "bool"
default = false
[[jobs.flag.params]]
name = "n"
type = "int"
default = 1
"#,
    );
    let out = sb.cmd(&cfg).args(["run", "flag"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "force=false off 2 false");
    let out = sb.cmd(&cfg).args(["run", "flag", "force=yes", "n=41"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "force=true on 42 true");
}
