//! The engine through its public API, on an in-memory store: addressing, dialogs per person
//! and place, and an audit record for every decision.

mod access;
mod chat;
mod nlu;
mod review;

use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Envelope, Place, UserId};
use opsbot_engine::{Awaiting, Engine};
use opsbot_store::{SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;

const CONFIG: &str = r#"
[bot]
confirm_timeout = "1s"

# These tests are about dialogs and addressing: every account may do everything.
[access]
default_role = "admin"

[jobs.deploy]
aliases = ["deploy {app} to {env}"]
runner = { type = "exec", argv = ["true"] }
[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
required = true
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "prod"]
synonyms = { prod = ["production"] }
required = true
[[jobs.deploy.params]]
name = "token"
secret = true
default = "abc"

[jobs.restart]
sensitive = true
runner = { type = "exec", argv = ["true"] }

[jobs.login]
runner = { type = "exec", argv = ["true"] }
[[jobs.login.params]]
name = "token"
secret = true
pattern = "[a-f0-9]{8}"
required = true

[jobs.note]
runner = { type = "exec", argv = ["true"] }
[[jobs.note.params]]
name = "force"
type = "bool"
required = true
[[jobs.note.params]]
name = "text"
required = true
"#;

async fn engine() -> (Engine, Arc<dyn Store>) {
    let cfg = Config::parse(CONFIG, Path::new("/tmp/opsbot-test.toml"), LoadOptions::default()).expect("config");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.expect("store"));
    (
        Engine::new(Arc::new(cfg.catalog), cfg.bot, store.clone()).with_access(cfg.access),
        store,
    )
}

fn in_channel(user: &str, text: &str) -> Envelope {
    let mut e = Envelope::direct(UserId::new("chat", user), Place::new("chat", "#ops"), text);
    e.direct = false;
    e
}

fn text_of(o: &opsbot_engine::Outcome) -> String {
    o.replies.iter().map(|r| r.plain_text()).collect()
}

#[tokio::test]
async fn channel_messages_need_addressing_but_dialog_answers_do_not() {
    let (engine, _) = engine().await;
    // Chatter in a channel is not for the bot: no reply at all.
    assert!(engine.handle(&in_channel("U1", "deploy api to dev")).await.replies.is_empty());
    let o = engine.handle(&in_channel("U1", "!deploy api to dev")).await;
    assert!(o.queued.is_some(), "{}", text_of(&o));
    let o = engine.handle(&in_channel("U1", "opsbot: deploy app=web")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("env".into())));
    // Another person's message in the same channel does not answer U1's question.
    assert!(engine.handle(&in_channel("U2", "prod")).await.replies.is_empty());
    // U1's plain answer does, without a mention.
    let o = engine.handle(&in_channel("U1", "production")).await;
    assert!(o.queued.is_some(), "{}", text_of(&o));
    assert!(text_of(&o).contains("deploy app=web env=prod token=••••"), "{}", text_of(&o));
}

#[tokio::test]
async fn no_answers_a_bool_question_and_chatter_does_not_answer_free_text() {
    let (engine, _) = engine().await;
    let o = engine.handle(&in_channel("U1", "!note")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("force".into())), "{}", text_of(&o));
    // `no` is a valid bool: it answers rather than abandons.
    let o = engine.handle(&in_channel("U1", "no")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("text".into())), "{}", text_of(&o));
    // Un-addressed chatter does not fill a free-text parameter…
    assert!(engine.handle(&in_channel("U1", "brb, coffee")).await.replies.is_empty());
    // …an addressed answer does.
    let o = engine.handle(&in_channel("U1", "opsbot: rotated the keys")).await;
    assert!(o.queued.is_some(), "{}", text_of(&o));
    assert!(
        text_of(&o).contains("note force=false text=\"rotated the keys\""),
        "{}",
        text_of(&o)
    );
    // `cancel` always abandons.
    engine.handle(&in_channel("U1", "!note")).await;
    let o = engine.handle(&in_channel("U1", "cancel")).await;
    assert!(text_of(&o).contains("dropped `note`"), "{}", text_of(&o));
}

#[tokio::test]
async fn secret_values_are_never_repeated_back() {
    let (engine, store) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    let o = engine.handle(&d("login token=hunter2secret")).await;
    assert!(!text_of(&o).contains("hunter2"), "{}", text_of(&o));
    assert!(text_of(&o).contains("`token`: `••••` is not allowed"), "{}", text_of(&o));
    let recs = store.audit_records(10).await.unwrap();
    assert!(
        recs.iter().all(|r| !r.reason.clone().unwrap_or_default().contains("hunter2")),
        "{recs:?}"
    );
    // Asked for it, a wrong secret answer is not echoed either.
    engine.handle(&d("login")).await;
    let o = engine.handle(&d("hunter2secret")).await;
    assert!(!text_of(&o).contains("hunter2"), "{}", text_of(&o));
}

#[tokio::test]
async fn built_in_commands_work_while_a_question_is_open() {
    let (engine, _) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    let id = engine.handle(&d("deploy api to dev")).await.queued.unwrap();
    let o = engine.handle(&d("note")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("force".into())));
    // `status 1` and `cancel 1` are commands, not answers; the question stays open.
    let o = engine.handle(&d(&format!("status {id}"))).await;
    assert!(text_of(&o).contains(&format!("#{id} queued")), "{}", text_of(&o));
    let o = engine.handle(&d(&format!("cancel {id}"))).await;
    assert!(text_of(&o).contains("cancelled and will not run"), "{}", text_of(&o));
    let o = engine.handle(&d("true")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("text".into())), "{}", text_of(&o));
}

#[tokio::test]
async fn a_double_yes_runs_once() {
    let (engine, store) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    engine.handle(&d("restart")).await;
    let (yes1, yes2) = (d("yes"), d("yes"));
    let (a, b) = tokio::join!(engine.handle(&yes1), engine.handle(&yes2));
    let queued = [a.queued, b.queued].iter().filter(|q| q.is_some()).count();
    assert_eq!(queued, 1, "{} / {}", text_of(&a), text_of(&b));
    let runs = store
        .executions(&opsbot_store::ExecutionFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
}

#[tokio::test]
async fn an_expired_question_does_not_eat_the_next_command() {
    let (engine, _) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    engine.handle(&d("restart")).await; // confirm_timeout is 1 s
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let o = engine.handle(&d("list")).await;
    let t = text_of(&o);
    assert!(t.contains("That confirmation for `restart` expired"), "{t}");
    assert!(t.contains("deploy") && t.contains("jobs"), "the list is still answered: {t}");
    // In a channel, chatter after an expired question gets nothing at all.
    engine.handle(&in_channel("U1", "!restart")).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert!(engine.handle(&in_channel("U1", "lunch?")).await.replies.is_empty());
    // Nor does a long paste that is not addressed to the bot.
    assert!(
        engine
            .handle(&in_channel("U2", &"log line\n".repeat(4000)))
            .await
            .replies
            .is_empty()
    );
}

#[tokio::test]
async fn known_words_in_the_wrong_form_are_not_suggested_back() {
    let (engine, _) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    for text in ["list deploy", "whoami now", "yes please", "\"deploy\" web"] {
        let t = text_of(&engine.handle(&d(text)).await);
        assert!(t.contains("but not in this form"), "{text}: {t}");
        assert!(!t.contains("Did you mean"), "{text}: {t}");
    }
}

#[tokio::test]
async fn every_decision_is_audited_and_secrets_are_redacted() {
    let (engine, store) = engine().await;
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    engine.handle(&d("deploy api to dev")).await; // accepted
    engine.handle(&d("deploy api to qa")).await; // refused (bad value)
    engine.handle(&d("run nosuch")).await; // refused (no such job)
    engine.handle(&d("deploy app=api")).await; // asked
    engine.handle(&d("cancel")).await; // abandoned
    engine.handle(&d("restart")).await; // asked (confirmation)
    engine.handle(&d("yes")).await; // confirmed + accepted
    engine.handle(&d("restart")).await; // asked
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    engine.handle(&d("yes")).await; // expired
    engine.handle(&d("cancel 1")).await; // cancel of a queued run
    let recs = store.audit_records(100).await.unwrap();
    let got: Vec<(String, String)> = recs.iter().rev().map(|r| (r.action.clone(), r.decision.clone())).collect();
    let want: Vec<(&str, &str)> = vec![
        ("run", "accepted"),
        ("run", "refused"),
        ("run", "refused"),
        ("run", "asked"),
        ("run", "abandoned"),
        ("run", "asked"),
        ("run", "confirmed"),
        ("run", "accepted"),
        ("run", "asked"),
        ("run", "expired"),
        ("cancel", "cancelled"),
    ];
    let got_ref: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got_ref, want);
    let first = recs.last().unwrap();
    assert_eq!(first.actor, UserId::new("chat", "U1"));
    assert_eq!(first.params.as_ref().unwrap().get("token").map(String::as_str), Some("••••"));
    assert_eq!(first.execution_id, Some(1));
    assert!(
        recs.iter()
            .any(|r| r.reason.as_deref().is_some_and(|x| x.contains("`qa` is not one of dev, prod")))
    );
}

#[tokio::test]
async fn lost_executions_are_audited() {
    let (engine, store) = engine().await;
    let d = Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), "deploy api to dev");
    let id = engine.handle(&d).await.queued.unwrap();
    store.claim("gone-host:1", std::time::Duration::from_secs(60), None).await.unwrap();
    let lost = engine.recover_lost(&|w: &str| w == "gone-host:1").await.unwrap();
    assert_eq!(lost.iter().map(|e| e.id).collect::<Vec<_>>(), vec![id]);
    let n = engine.notice_for(id).await.unwrap().unwrap();
    assert!(n.reply.plain_text().contains("lost"), "{}", n.reply.plain_text());
    let recs = store.audit_records(1).await.unwrap();
    assert_eq!((recs[0].action.as_str(), recs[0].decision.as_str()), ("recover", "lost"));
}

#[tokio::test]
async fn secret_values_are_taken_only_in_private() {
    let (engine, store) = engine().await;
    // In a channel: a secret value typed there is refused (and called exposed), a secret that
    // would have to be asked for there is refused too; neither is echoed or queued.
    let o = engine.handle(&in_channel("U1", "!login token=deadbeef")).await;
    assert!(o.queued.is_none() && o.awaiting.is_none(), "{}", text_of(&o));
    assert!(text_of(&o).contains("`token` of `login` is secret"), "{}", text_of(&o));
    assert!(text_of(&o).contains("exposed"), "{}", text_of(&o));
    assert!(!text_of(&o).contains("deadbeef"), "{}", text_of(&o));
    let o = engine.handle(&in_channel("U1", "!login")).await;
    assert!(o.queued.is_none() && o.awaiting.is_none(), "{}", text_of(&o));
    assert!(text_of(&o).contains("needs the secret `token`"), "{}", text_of(&o));
    // A secret with a default from the config is fine in a channel when not overridden…
    let o = engine.handle(&in_channel("U1", "!deploy api to dev")).await;
    assert!(o.queued.is_some(), "{}", text_of(&o));
    // …but not when a value is typed for it.
    let o = engine.handle(&in_channel("U1", "!deploy app=api env=dev token=zzzz9999")).await;
    assert!(o.queued.is_none(), "{}", text_of(&o));
    // In a direct conversation the same requests go through.
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
    assert!(engine.handle(&d("login token=deadbeef")).await.queued.is_some());
    let o = engine.handle(&d("login")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("token".into())));
    // Every refusal is audited, with the value redacted.
    let refusals: Vec<_> = store
        .audit_records(50)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.decision == "refused")
        .collect();
    assert_eq!(refusals.len(), 3, "{refusals:#?}");
    for r in &refusals {
        assert!(r.reason.as_deref().unwrap().contains("secret"), "{r:?}");
        if let Some(p) = &r.params {
            assert!(p.values().all(|v| v != "deadbeef" && v != "zzzz9999"), "{r:?}");
        }
    }
}

/// The form a question carries (Slack shows it as a modal).
fn form_of(o: &opsbot_engine::Outcome) -> opsbot_core::Form {
    o.replies
        .iter()
        .flat_map(|r| r.blocks.iter())
        .find_map(|b| match b {
            opsbot_core::Block::Form(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no form in {}", text_of(o)))
}

#[tokio::test]
async fn a_question_carries_the_jobs_form_and_a_submission_replaces_the_question() {
    use opsbot_core::FormInput;
    let (engine, _) = engine().await;
    let o = engine.handle(&in_channel("U1", "!deploy app=web")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("env".into())));
    let form = form_of(&o);
    assert_eq!(form.command, "run deploy");
    // In a channel the secret parameter is left out; what is known is filled in.
    let names: Vec<_> = form.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["app", "env"], "{form:?}");
    assert_eq!(form.fields[0].value.as_deref(), Some("web"));
    assert_eq!(
        form.fields[1].input,
        FormInput::Choice {
            options: vec!["dev".into(), "prod".into()]
        }
    );
    assert!(form.fields.iter().all(|f| f.required));
    // Directly, the secret one is offered, never prefilled (not even with its default).
    let d = Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), "deploy app=api");
    let direct = form_of(&engine.handle(&d).await);
    let token = direct.fields.iter().find(|f| f.name == "token").expect("token field");
    assert_eq!((token.input.clone(), token.value.clone()), (FormInput::Text { secret: true }, None));

    // The submission is a command of its own: `run deploy app=web env=prod`, from the person,
    // marked as a button press. It is not taken as the answer to the open question (which
    // would read the whole line as `env`), it replaces it.
    let line = form
        .command_line(&[
            ("app".into(), "web".into()),
            ("env".into(), "prod".into()),
            ("evil".into(), "x".into()),
        ])
        .unwrap();
    assert_eq!(line, "run deploy app=web env=prod", "names not in the form are dropped");
    let mut submit = in_channel("U1", &line);
    submit.button = Some("form".into());
    let o = engine.handle(&submit).await;
    assert!(o.queued.is_some(), "{}", text_of(&o));
    assert!(text_of(&o).contains("deploy app=web env=prod"), "{}", text_of(&o));
    // The question is gone: a later `dev` from U1 is chatter, not an answer.
    assert!(engine.handle(&in_channel("U1", "dev")).await.replies.is_empty());
}

#[test]
fn form_values_are_quoted_so_the_grammar_reads_them_back_unchanged() {
    use opsbot_core::reply::quote;
    for v in [
        "plain",
        "two words",
        "it's",
        "say \"hi\"",
        "back\\slash",
        "“curly” ‘quotes’ ＂wide＂",
        "--all",
        "key=value",
        "tab\there",
        "中文 值",
    ] {
        let line = format!("run note text={}", quote(v));
        let tokens = opsbot_engine::grammar::tokenize(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(tokens.len(), 3, "{line} → {tokens:?}");
        assert_eq!(tokens[2].key.as_deref(), Some("text"), "{line}");
        assert_eq!(tokens[2].text, v, "{line}");
    }
    let form = opsbot_core::Form {
        title: "Run note".into(),
        command: "run note".into(),
        fields: vec![opsbot_core::FormField {
            name: "text".into(),
            input: opsbot_core::FormInput::Text { secret: false },
            required: true,
            value: None,
            help: None,
        }],
    };
    assert!(
        form.command_line(&[("text".into(), "a\nb".into())])
            .unwrap_err()
            .contains("one line")
    );
    assert_eq!(form.command_line(&[("text".into(), "  ".into())]).unwrap(), "run note");
}

/// The commands of a reply's buttons.
fn buttons_of(o: &opsbot_engine::Outcome) -> Vec<String> {
    o.replies
        .iter()
        .flat_map(|r| r.blocks.iter())
        .flat_map(|b| match b {
            opsbot_core::Block::Buttons { buttons } => buttons.iter().map(|b| b.command.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[tokio::test]
async fn a_confirmation_button_answers_only_its_own_question() {
    let (engine, _) = engine().await;
    let d = |t: &str| {
        let mut e = Envelope::direct(UserId::new("chat", "U1"), Place::new("chat", "D1"), t);
        e.button = Some("b".into());
        e
    };
    let first = engine.handle(&d("restart")).await;
    assert_eq!(first.awaiting, Some(Awaiting::Confirmation));
    let old_yes = buttons_of(&first)
        .into_iter()
        .find(|c| c.starts_with("yes "))
        .expect("a Yes button");
    engine.handle(&d(&buttons_of(&first)[1])).await; // No: dropped
    // A new question: the first one's Yes button must not answer it.
    let second = engine.handle(&d("restart")).await;
    let o = engine.handle(&d(&old_yes)).await;
    assert!(o.queued.is_none(), "{}", text_of(&o));
    assert!(text_of(&o).contains("earlier question"), "{}", text_of(&o));
    // Its own Yes does.
    let yes = buttons_of(&second).into_iter().find(|c| c.starts_with("yes ")).unwrap();
    assert_ne!(yes, old_yes);
    assert!(engine.handle(&d(&yes)).await.queued.is_some());
    // With nothing open, a stale button says so.
    let o = engine.handle(&d(&yes)).await;
    assert!(text_of(&o).contains("Nothing is waiting"), "{}", text_of(&o));
}

#[tokio::test]
async fn a_suggestion_button_shows_all_it_would_run() {
    let (engine, _) = engine().await;
    let o = engine.handle(&in_channel("U1", "!deplyo app=web env=dev")).await;
    assert_eq!(buttons_of(&o), ["deploy app=web env=dev"], "{}", text_of(&o));
    // Too long to show whole in a label: no button (it could hide what it runs).
    let long = format!("!deplyo app=web {} env=prod", "x".repeat(80));
    let o = engine.handle(&in_channel("U1", &long)).await;
    assert!(text_of(&o).contains("Did you mean `deploy`"), "{}", text_of(&o));
    assert!(buttons_of(&o).is_empty(), "{:?}", buttons_of(&o));
}

#[tokio::test]
async fn ping_answers_pong_at_once_and_records_nothing() {
    let (engine, store) = engine().await;
    let before = store.audit_records(100).await.unwrap().len();
    for text in ["!ping", "opsbot: ping", "!PING ", "ping"] {
        let mut env = in_channel("U1", text);
        env.direct = text == "ping";
        let o = engine.handle(&env).await;
        assert_eq!(text_of(&o).trim(), "PONG", "{text}");
        assert!(o.ephemeral && o.queued.is_none(), "{text}");
    }
    // Not addressed, or with more words: not the built-in.
    assert!(engine.handle(&in_channel("U1", "ping")).await.replies.is_empty());
    let o = engine.handle(&in_channel("U1", "!ping the api")).await;
    assert_ne!(text_of(&o).trim(), "PONG");
    assert!(!o.ephemeral);
    assert_eq!(store.audit_records(100).await.unwrap().len(), before, "a ping is not an action");
    // It does not answer an open question, and the question stays open.
    let d = |t: &str| Envelope::direct(UserId::new("chat", "U2"), Place::new("chat", "D2"), t);
    let o = engine.handle(&d("note")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("force".into())));
    assert_eq!(text_of(&engine.handle(&d("ping")).await).trim(), "PONG");
    let o = engine.handle(&d("true")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("text".into())), "{}", text_of(&o));
    // `help` lists it.
    assert!(text_of(&engine.handle(&d("help")).await).contains("ping"));
}

#[tokio::test]
async fn a_job_or_alias_named_ping_keeps_the_word() {
    for jobs in [
        "[jobs.ping]\nrunner = { type = \"exec\", argv = [\"true\"] }\n",
        "[jobs.check]\naliases = [\"ping\"]\nrunner = { type = \"exec\", argv = [\"true\"] }\n",
    ] {
        let text = format!("[access]\ndefault_role = \"admin\"\n\n{jobs}");
        let cfg = Config::parse(&text, Path::new("/tmp/opsbot-test.toml"), LoadOptions::default()).expect("config");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.expect("store"));
        let engine = Engine::new(Arc::new(cfg.catalog), cfg.bot, store).with_access(cfg.access);
        let o = engine.handle(&in_channel("U1", "!ping")).await;
        assert!(o.queued.is_some() && !o.ephemeral, "{jobs}: {}", text_of(&o));
    }
}
