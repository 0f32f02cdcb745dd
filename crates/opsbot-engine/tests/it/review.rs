//! Findings of a hostile review of the permission system, kept as regression tests: each was
//! a way around a rule (a synonym in a rule or a lock, approving one's own request after linking
//! the account it came from, a secret in a refusal or a lock) and now holds.

use crate::access::{Bot, dm, link_code};
use opsbot_engine::Outcome;

/// `annotate` comes first and takes any `env` string; `deploy` has `production` as a synonym of
/// `prod`; `login` takes a secret token.
const BASE: &str = r#"
[bot]
timezone = "UTC"

[access]
default_role = "guest"
self_link = true

[jobs.annotate]
runner = { type = "exec", argv = ["echo", "{{ env }}"] }
[[jobs.annotate.params]]
name = "env"
required = true

[jobs.deploy]
runner = { type = "exec", argv = ["deploy", "{{ env }}"] }
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "prod"]
synonyms = { prod = ["production"] }
required = true

[jobs.login]
runner = { type = "exec", argv = ["login", "--token={{ token }}"] }
[[jobs.login.params]]
name = "token"
secret = true
required = true

[people.ana]
name = "Ana"
accounts = ["chat:U-ANA"]
roles = ["deployer"]

[people.bo]
name = "Bo"
accounts = ["chat:U-BO"]
roles = ["deployer", "no-prod"]

[people.lea]
name = "Lea"
accounts = ["chat:U-LEA"]
roles = ["lead"]

[people.lou]
name = "Lou"
accounts = ["chat:U-LOU"]
roles = ["lead"]

[people.ada]
name = "Ada"
accounts = ["chat:U-ADA"]
roles = ["admin"]

[roles.deployer]
allow = [{ verbs = ["run", "view"], jobs = "*" }]

[roles.lead]
allow = [{ verbs = ["approve", "view"], jobs = "*" }]

[roles.no-prod]
deny = [{ verbs = "*", jobs = "*", params = { env = "production" } }]
"#;

/// The shared config plus `extra`.
async fn with(extra: &str) -> Bot {
    Bot::from_text(&format!("{BASE}\n{extra}")).await
}

/// A direct message from `who`, and the reply's text.
async fn say(bot: &Bot, who: &str, text: &str) -> (Outcome, String) {
    bot.say(dm(who, text)).await
}

/// A deny rule over several jobs used to canonicalise `production` through the first job that
/// accepts it (`annotate`, a free string), so it never matched `deploy env=prod` — not even when
/// the requester typed exactly `production`.
#[tokio::test]
async fn review_deny_rule_on_a_synonym_across_jobs_is_bypassed() {
    let bot = with("").await;
    let (o, t) = say(&bot, "U-BO", "run deploy env=production").await;
    assert!(o.queued.is_none(), "role `no-prod` denies env=production, yet it was queued: {t}");
}

/// Same for a policy: an approval rule on `env = "production"` over every job.
#[tokio::test]
async fn review_approval_policy_on_a_synonym_across_jobs_is_bypassed() {
    let bot = with(
        r#"
[[policy.approval]]
name = "prod-changes"
jobs = "*"
params = { env = "production" }
approvers = ["lead"]
count = 2
"#,
    )
    .await;
    let (o, t) = say(&bot, "U-ANA", "run deploy env=production").await;
    assert!(o.queued.is_none() && o.approval.is_some(), "prod needs two leads, yet it ran: {t}");
}

/// A lock on every job (`lock env=production`) used to be canonicalised through `annotate`, so
/// it did not stop `deploy env=production` (canonical `prod`). docs/security.md: "A lock refuses runs
/// (also through a synonym)".
#[tokio::test]
async fn review_jobless_lock_on_a_synonym_does_not_lock() {
    let bot = with("").await;
    let (_, t) = say(&bot, "U-ADA", "lock env=production --reason \"incident 42\"").await;
    assert!(t.contains("Locked"), "{t}");
    let (o, t) = say(&bot, "U-ANA", "run deploy env=production").await;
    assert!(o.queued.is_none(), "locked, yet queued: {t}");
    assert_eq!(bot.runs().await.len(), 0);
}

/// Four eyes: a request made from an account nobody knew could be approved by the person that
/// account was linked to afterwards. docs/security.md: "not from another of the requester's accounts
/// either, linked ones included".
#[tokio::test]
async fn review_requester_linked_after_the_request_approves_it() {
    // Anyone may ask for a deploy (leads decide): default_role = requester.
    let text = format!(
        "{}\n{}",
        BASE.replace("default_role = \"guest\"", "default_role = \"requester\""),
        r#"
[roles.requester]
allow = [{ verbs = ["run"], jobs = "deploy" }]

[[policy.approval]]
name = "prod-changes"
jobs = "deploy"
params = { env = "prod" }
approvers = ["lead"]
count = 2
"#
    );
    let bot = Bot::from_text(&text).await;
    // Lea's second, not yet known account asks for prod.
    let (o, t) = say(&bot, "U-LEA2", "run deploy env=prod").await;
    let id = o.approval.unwrap_or_else(|| panic!("an approval request: {t}"));
    // She links it to herself…
    let code = link_code(&say(&bot, "U-LEA2", "link").await.0);
    let (_, t) = say(&bot, "U-LEA", &format!("link {code}")).await;
    assert!(t.contains("Linked"), "{t}");
    // …and approves her own request from her listed account.
    let (_, t) = say(&bot, "U-LEA", &format!("approve {id}")).await;
    assert!(t.contains("four eyes"), "Lea approved her own request: {t}");
    let (o, t) = say(&bot, "U-LOU", &format!("approve {id}")).await;
    assert!(o.queued.is_none(), "Lea + Lou started Lea's own prod deploy: {t}");
}

/// A `deny_argv` refusal used to quote the rendered command line, secret values included, in
/// the reply and in the audit reason (whose params are redacted).
#[tokio::test]
async fn review_deny_argv_refusal_leaks_a_secret() {
    let bot = with(
        r#"
[[policy.deny_argv]]
name = "no-dollar"
pattern = '\$'
"#,
    )
    .await;
    const SECRET: &str = "hunter2$XYZZY";
    let (o, t) = say(&bot, "U-ANA", &format!("run login token=\"{SECRET}\"")).await;
    assert!(o.queued.is_none(), "{t}");
    let reasons: Vec<String> = bot.audits().await.into_iter().filter_map(|r| r.reason).collect();
    assert!(
        !reasons.iter().any(|r| r.contains("hunter2")),
        "secret in the audit log: {reasons:#?}"
    );
    assert!(!t.contains("hunter2"), "secret in the reply: {t}");
}

/// A lock on a secret value used to put it in the audit reason and in `locks`, which anyone —
/// an unknown account too — could list.
#[tokio::test]
async fn review_lock_on_a_secret_value_leaks_it() {
    let bot = with("").await;
    let (_, t) = say(&bot, "U-ADA", "lock login token=hunter2XYZZY --reason \"leaked\"").await;
    // A lock cannot name a secret value (its scope is shown to everyone it stops).
    assert!(
        t.contains("is secret; a lock cannot name a secret value") && t.contains("Nothing was locked"),
        "{t}"
    );
    let (_, t2) = say(&bot, "U-ADA", "lock login --reason \"leaked token\"").await;
    assert!(t2.contains("Locked"), "{t2}");
    let (_, listed) = say(&bot, "U-EVE", "locks").await;
    assert!(
        listed.contains("for people who may run or view jobs"),
        "an unknown account lists the locks: {listed}"
    );
    let reasons: Vec<String> = bot.audits().await.into_iter().filter_map(|r| r.reason).collect();
    assert!(
        !listed.contains("hunter2"),
        "secret shown to an unknown account by `locks`: {listed}"
    );
    assert!(
        !reasons.iter().any(|r| r.contains("hunter2")),
        "secret in the audit log: {reasons:#?}"
    );
    assert!(!t.contains("hunter2"), "secret in the reply: {t}");
}
