//! Argv templates and the environment: param values reach the program literally.

use crate::support::{in_dir, job, params, run, system, texts};
use opsbot_core::{RunnerSpec, Stream};

/// Values a hostile requester might try; `{dir}` is replaced by a temp dir.
fn hostile_values(dir: &str) -> Vec<String> {
    vec![
        "; rm -rf /".into(),
        format!("$(touch {dir}/x)"),
        format!("`touch {dir}/y`"),
        "&& reboot".into(),
        "| cat /etc/passwd".into(),
        "|".into(),
        ">file".into(),
        format!("> {dir}/z"),
        "'single' \"double\" \\backslash".into(),
        "部署 ✓".into(),
        "  a value  with   spaces ".into(),
        "<b>&amp;</b>".into(),
        "{{ job }} {% if true %}x{% endif %}".into(),
        "*".into(),
        "-n".into(),
        "".into(),
    ]
}

#[tokio::test]
async fn hostile_params_reach_the_program_as_literal_argv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    for value in hostile_values(&d) {
        let j = in_dir(job(&["printf", "%s\\n", "{{ v }}"]), dir.path());
        let (outcome, lines) = run(j, params(&[("v", &value)])).await;
        assert_eq!(outcome.exit_code, Some(0), "{value:?}: {outcome:?} {}", system(&lines));
        assert_eq!(texts(&lines, Stream::Stdout), std::slice::from_ref(&value), "value {value:?}");
        assert!(texts(&lines, Stream::Stderr).is_empty(), "value {value:?}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing may be created by a param value: {left:?}");
}

#[tokio::test]
async fn hostile_params_reach_the_environment_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    for value in hostile_values(&d) {
        let j = in_dir(job(&["/usr/bin/env"]), dir.path());
        let (outcome, lines) = run(j, params(&[("v", &value)])).await;
        assert_eq!(outcome.exit_code, Some(0));
        let got: Vec<String> = texts(&lines, Stream::Stdout)
            .into_iter()
            .filter_map(|l| l.strip_prefix("OPSBOT_PARAM_V=").map(str::to_string))
            .collect();
        assert_eq!(got, std::slice::from_ref(&value), "value {value:?}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn builtins_render_and_absent_values_are_empty() {
    // `requester` is the stable account id given in the request (see support::request).
    let j = job(&[
        "printf",
        "%s|%s|[%s]|[%s]|%s\\n",
        "{{ execution_id }}",
        "{{ job }}",
        "{{ requester }}",
        "{{ absent }}",
        "{{ app }}-{{ n }}",
    ]);
    let (outcome, lines) = run(j, params(&[("app", "api"), ("n", "3")])).await;
    assert_eq!(outcome.exit_code, Some(0), "{}", system(&lines));
    assert_eq!(texts(&lines, Stream::Stdout), ["42|demo|[test:tester]|[]|api-3"]);
}

#[tokio::test]
async fn environment_is_inherited_extended_and_cwd_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = in_dir(
        job(&[
            "/bin/sh",
            "-c",
            "echo \"$OPSBOT_EXECUTION_ID $OPSBOT_JOB $OPSBOT_PARAM_APP $EXTRA\"; pwd; [ -n \"$PATH\" ] && echo path",
        ]),
        dir.path(),
    );
    let RunnerSpec::Exec { env, .. } = &mut j.runner;
    env.insert("EXTRA".into(), "from job env".into());
    let (outcome, lines) = run(j, params(&[("app", "web")])).await;
    assert_eq!(outcome.exit_code, Some(0), "{}", system(&lines));
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out[0], "42 demo web from job env");
    assert_eq!(std::fs::canonicalize(&out[1]).unwrap(), std::fs::canonicalize(dir.path()).unwrap());
    assert_eq!(out[2], "path");
}

#[tokio::test]
async fn stdin_is_dev_null() {
    let (outcome, lines) = run(job(&["cat"]), params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert!(lines.is_empty(), "{lines:?}");
}

#[tokio::test]
async fn opsbots_own_variables_do_not_leak_into_jobs() {
    // SAFETY: this test binary's tests do not read OPSBOT_PARAM_GHOST; set before the child starts.
    unsafe { std::env::set_var("OPSBOT_PARAM_GHOST", "leaked") };
    unsafe { std::env::set_var("OPSBOT_OTHER_SETTING", "kept") };
    let j = job(&[
        "sh",
        "-c",
        "printf '<%s|%s>\\n' \"${OPSBOT_PARAM_GHOST-unset}\" \"$OPSBOT_OTHER_SETTING\"",
    ]);
    let (outcome, lines) = run(j, params(&[])).await;
    assert_eq!(outcome.exit_code, Some(0), "{}", system(&lines));
    assert_eq!(texts(&lines, Stream::Stdout), ["<unset|kept>"]);
}
