//! `opsbot understand`: what a text would become, and the evaluation of the development set.

use crate::harness::*;
use std::process::Command;

fn understand(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("understand")
        .arg("--config")
        .arg(example_config())
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn explains_a_paraphrase_and_a_chinese_schedule() {
    let v = json(&understand(&["push worker 3.1.0 out to staging", "--json"]));
    assert_eq!(v["verdict"], "proceed");
    assert_eq!(v["layer"], "nlu");
    assert_eq!(v["command"], "run deploy app=worker env=staging version=3.1.0");
    assert_eq!(v["would_run"], true);

    // The example's zone is UTC: 后天下午3点 from Wednesday 10:00 is Friday 15:00.
    let v = json(&understand(&["后天下午3点 重启 db", "--json", "--now", "2026-03-04T10:00:00Z"]));
    assert_eq!(v["lang"], "zh");
    assert_eq!(v["command"], "run restart service=db");
    assert_eq!(v["at"], "2026-03-06T15:00:00+00:00");

    let v = json(&understand(&["wipe the staging cluster", "--json"]));
    assert_eq!(v["verdict"], "refuse");
    assert_eq!(v["would_run"], false);

    // The human form says the same, without running anything.
    let out = understand(&["deplyo web to stagign"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("verdict:    confirm") && text.contains("run deploy app=web env=staging"),
        "{text}"
    );
    assert!(text.contains("would run:  no"), "{text}");
}

#[test]
fn the_development_set_runs_nothing_it_must_not() {
    let set = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/nlu/dev.tsv");
    let out = understand(&["--eval", set.to_str().unwrap(), "--json", "--jobs", "100"]);
    let v = json(&out);
    assert!(v["cases"].as_u64().unwrap() >= 200, "{v}");
    assert_eq!(v["must_not_run_that_would_run"], 0, "{}", v["failures"]);
    // A floor against regressions, well below what it reaches (docs/benchmarks.md).
    assert!(v["accuracy"].as_f64().unwrap() >= 0.8, "{v}");
}

#[test]
fn bad_arguments_and_files_get_clear_answers() {
    let out = understand(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give the TEXT to explain"));
    let sb = Sandbox::new();
    let f = sb.dir.path().join("bad.tsv");
    std::fs::write(&f, "# now: 2026-03-04T10:00:00Z\ndeploy web\n").unwrap();
    let out = understand(&["--eval", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.tsv:2") && err.contains("column"), "{err}");
    let out = understand(&["x", "--now", "yesterday"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an RFC 3339 time"));
}
