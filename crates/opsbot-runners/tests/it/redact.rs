//! Secrets never reach the output: secret param values and secret-reference env values are
//! scrubbed from stdout and stderr, also when written in pieces, across a line cut, or as a
//! multi-line value.

use crate::support::{job, params, run, texts};
use opsbot_core::job::{ParamKind, ParamSpec};
use opsbot_core::{RunnerSpec, Stream};

fn secret_param(name: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind: ParamKind::String { pattern: None },
        required: true,
        default: None,
        help: None,
        secret: true,
    }
}

#[tokio::test]
async fn secret_params_and_secret_env_values_are_scrubbed_from_both_streams() {
    let mut j = job(&[
        "/bin/sh",
        "-c",
        // The token in three writes with pauses (three pipe reads), once on stderr, the API key
        // from the env, and a non-secret param left alone.
        "printf 'token=%s' \"$(echo \"$OPSBOT_PARAM_TOKEN\" | cut -c1-5)\"; sleep 0.05; \
         printf '%s' \"$(echo \"$OPSBOT_PARAM_TOKEN\" | cut -c6-9)\"; sleep 0.05; \
         echo \"$(echo \"$OPSBOT_PARAM_TOKEN\" | cut -c10-)!\"; \
         echo \"err $OPSBOT_PARAM_TOKEN\" >&2; echo \"key:$API_KEY app=$OPSBOT_PARAM_APP\"",
    ]);
    j.params = vec![
        secret_param("token"),
        ParamSpec {
            secret: false,
            ..secret_param("app")
        },
    ];
    let RunnerSpec::Exec { env, secret_env, .. } = &mut j.runner;
    env.insert("API_KEY".into(), "AKIAEXAMPLEKEY123".into());
    secret_env.insert("API_KEY".into());
    env.insert("PLAIN".into(), "AKIA".into());
    let (outcome, lines) = run(j, params(&[("token", "tok-1234567890abcdef"), ("app", "web")])).await;
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(texts(&lines, Stream::Stdout), ["token=••••!", "key:•••• app=web"]);
    assert_eq!(texts(&lines, Stream::Stderr), ["err ••••"]);
    for l in &lines {
        assert!(!l.text.contains("tok-1234") && !l.text.contains("AKIAEXAMPLE"), "{l:?}");
    }
}

#[tokio::test]
async fn a_secret_straddling_the_line_cap_is_scrubbed_from_the_kept_part() {
    let mut j = job(&[
        "/bin/sh",
        "-c",
        "head -c 16370 /dev/zero | tr '\\0' a; echo \"$OPSBOT_PARAM_TOKEN tail\"",
    ]);
    j.params = vec![secret_param("token")];
    let (_, lines) = run(j, params(&[("token", "SECRETSECRETSECRETSECRET")])).await;
    let out = texts(&lines, Stream::Stdout);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].contains("line cut at 16 KiB"), "{}", &out[0][out[0].len() - 60..]);
    assert!(!out[0].contains("SECRET"), "{}", &out[0][out[0].len() - 60..]);
    assert!(out[0].contains("aaaa••••"), "{}", &out[0][out[0].len() - 60..]);
}

#[tokio::test]
async fn each_line_of_a_multi_line_secret_is_scrubbed() {
    let mut j = job(&["/bin/sh", "-c", "printf '%s\\n' \"$PEM\"; echo done"]);
    let RunnerSpec::Exec { env, secret_env, .. } = &mut j.runner;
    env.insert(
        "PEM".into(),
        "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----".into(),
    );
    secret_env.insert("PEM".into());
    let (_, lines) = run(j, params(&[])).await;
    assert_eq!(texts(&lines, Stream::Stdout), ["••••", "••••", "••••", "done"]);
}
