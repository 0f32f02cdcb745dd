//! Hostile input: shell metacharacters, quotes, unicode, control characters and huge lines
//! reach the program as literal argv (or are refused by the param's type) and never run
//! anything else.

use crate::harness::*;

const NASTY: &[&str] = &[
    "; rm -rf /",
    "$(touch PWNED)",
    "`touch PWNED`",
    "&& touch PWNED",
    "| touch PWNED",
    "> PWNED",
    "' \" \\ '",
    "部署 ✓ 🚀",
    "a=b",
    "--all",
    "-rf",
    "*",
    "~",
    "$HOME",
    "%s%s%n",
    "{{ 7*7 }}",
];

#[test]
fn metacharacters_reach_the_program_literally_through_the_shell() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    let mut s = sb.shell(&cfg, "mallory");
    let mut id = 0;
    for v in NASTY {
        for job in ["echo", "envdump"] {
            id += 1;
            let line = format!("run {job} v={}", opsbot_engine::grammar::quote_arg(v));
            s.ask(&line, &format!("#{id} queued"));
            let out = s.expect(&format!("#{id} {job} succeeded(.*\n)*?.*│ <.*>\n"));
            assert!(out.contains(&format!("│ <{v}>")), "{job} {v:?}:\n{out}");
        }
    }
    // `--` makes the rest positional, even `k=v` and `--x`.
    id += 1;
    s.ask("echo -- --v=1", &format!("#{id} queued"));
    s.expect("│ <--v=1>");
    assert!(!sb.path("PWNED").exists(), "a metacharacter ran something");
    assert!(!std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("PWNED").exists());
    assert!(!std::path::Path::new("PWNED").exists());
}

#[test]
fn metacharacters_reach_the_program_literally_through_the_cli() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    for v in NASTY {
        let out = sb
            .cmd(&cfg)
            .current_dir(sb.dir.path())
            .args(["run", "echo"])
            .arg(format!("v={v}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{v:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), format!("<{v}>"), "{v:?}");
    }
    assert!(!sb.path("PWNED").exists());
}

#[test]
fn control_characters_quotes_and_huge_lines_are_refused_clearly() {
    let sb = Sandbox::new();
    let cfg = test_config(&sb, "");
    // A newline inside a value is refused by every param type.
    let out = sb.cmd(&cfg).args(["run", "echo", "v=a\nreboot"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control character"), "{err}");
    let out = sb.cmd(&cfg).args(["run", "count", "n=3; reboot"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a whole number"));

    let mut s = sb.shell(&cfg, "mallory");
    s.ask("echo v=\"unclosed", "I could not read that: a double quote is not closed");
    s.ask(
        &format!("echo v={}", "x".repeat(5000)),
        "the value is 5000 bytes long; at most 4096",
    );
    s.send(&format!("echo v={}", "y".repeat(1024 * 1024)));
    s.expect("That message is 1048576 bytes; I read at most 16384 bytes \\(16 KiB\\). Nothing was run.");
    s.send(&"z".repeat(3 * 1024 * 1024));
    s.expect("That message is 1048576 bytes; I read at most 16384 bytes");
    s.ask("echo v=\u{0}nul", "control character");
    s.ask("history", "nothing yet");
}
