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
