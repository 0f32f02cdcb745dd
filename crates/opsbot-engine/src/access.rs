//! Who is asking, and may they: identities and role-based access control.
//!
//! A person is found by the platform account's stable id (never a display name): listed in
//! `[people.KEY] accounts`, or linked to a person with `link`. Everyone else gets
//! `[access] default_role` (`guest`: help only), and accounts of the local command line get
//! `[access] local_role`. Roles grant verbs on jobs, with conditions on parameter values and
//! places; a deny rule of any of a person's roles wins over every allow rule; nothing allowed is
//! denied.

use crate::i18n::{self, Arg, Lang};
use opsbot_core::config::{AccessConfig, Glob, Grant, LOCAL_PLATFORMS, Scope, Verb};
use opsbot_core::job::JobSpec;
use opsbot_core::{Params, Place, UserId};

/// A text in each language replies are written in: English for the audit trail (and
/// anything else that must not change with the person's language), the person's language for
/// the reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Localized {
    // Boxed: a refusal holds three of these, and results carry refusals.
    en: Box<str>,
    zh: Box<str>,
}

impl Localized {
    /// The text `f` writes in each language.
    pub fn new(f: impl Fn(Lang) -> String) -> Self {
        Localized {
            en: f(Lang::En).into(),
            zh: f(Lang::Zh).into(),
        }
    }

    /// Message `id` of the message files with these arguments, in each language.
    pub fn message(id: &str, args: &[(&str, Arg)]) -> Self {
        Localized::new(|lang| i18n::text(lang, id, args))
    }

    /// A text that reads the same in every language (written in the config, say).
    pub fn same(text: impl Into<String>) -> Self {
        let en: Box<str> = text.into().into();
        Localized { zh: en.clone(), en }
    }

    /// The text in `lang`.
    pub fn get(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }

    /// The English text (what the audit trail keeps).
    pub fn english(&self) -> &str {
        &self.en
    }
}

/// How an account was recognised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Known {
    /// A person lists it in the config.
    Listed,
    /// It was linked to a person with `link`.
    Linked,
    /// An account of the local command line that no person lists.
    Local,
    /// Nobody knows it.
    Unknown,
}

/// Who is asking, after the identify step.
#[derive(Clone, Debug)]
pub struct Person {
    /// The platform account.
    pub account: UserId,
    /// Name to address them by: the configured name of the person, else the platform's
    /// display name (which proves nothing).
    pub name: String,
    /// The person's key in `[people.KEY]`, when the account is theirs.
    pub key: Option<String>,
    /// Their roles.
    pub roles: Vec<String>,
    /// How the account was recognised.
    pub known: Known,
}

impl Person {
    /// Whether two people are the same person (same key, or the same account).
    pub fn same_as(&self, key: &str, account: &UserId) -> bool {
        match &self.key {
            Some(k) => k == key || (key.is_empty() && &self.account == account),
            None => &self.account == account,
        }
    }

    /// The key that identifies them in approvals and rate limits: the person key, else the account.
    pub fn id(&self) -> String {
        self.key.clone().unwrap_or_else(|| self.account.to_string())
    }
}

/// Resolves an account: config first, then a stored link.
pub fn identify(cfg: &AccessConfig, account: &UserId, display: Option<&str>, linked: Option<&str>) -> Person {
    if let Some(p) = cfg.person_with_account(account) {
        return person(p, account, display, Known::Listed);
    }
    if let Some(p) = linked.and_then(|k| cfg.person(k)) {
        return person(p, account, display, Known::Linked);
    }
    let local = LOCAL_PLATFORMS.contains(&account.platform.as_str());
    let shown = display.map(str::to_string).unwrap_or_else(|| account.id.clone());
    Person {
        account: account.clone(),
        name: shown,
        key: None,
        roles: vec![if local { cfg.local_role.clone() } else { cfg.default_role.clone() }],
        known: if local { Known::Local } else { Known::Unknown },
    }
}

fn person(p: &opsbot_core::config::PersonSpec, account: &UserId, display: Option<&str>, known: Known) -> Person {
    Person {
        account: account.clone(),
        name: p
            .name
            .clone()
            .or_else(|| display.map(str::to_string))
            .unwrap_or_else(|| p.key.clone()),
        key: Some(p.key.clone()),
        roles: p.roles.clone(),
        known,
    }
}

/// The answer to "may they?", with the rule that decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this rule.
    Allowed(String),
    /// Denied: why, and what would make it pass (if anything would).
    Denied {
        /// Which rule refused, or that none allowed.
        why: Localized,
        /// What would be allowed instead, if something close is.
        would_pass: Option<Localized>,
    },
}

impl Decision {
    /// Whether it was allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }

    /// One paragraph for a person, in English (as the audit trail keeps it).
    pub fn explain(&self) -> String {
        self.explain_in(Lang::En)
    }

    /// One paragraph for a person, in `lang`. The rule that allowed (an `Allowed` decision)
    /// is named in English in every language.
    pub fn explain_in(&self, lang: Lang) -> String {
        match self {
            Decision::Allowed(by) => i18n::text(lang, "access-allowed", &[("by", by.into())]),
            Decision::Denied { why, would_pass: None } => i18n::text(lang, "access-denied", &[("why", why.get(lang).into())]),
            Decision::Denied { why, would_pass: Some(w) } => i18n::text(
                lang,
                "access-denied-more",
                &[("why", why.get(lang).into()), ("would_pass", w.get(lang).into())],
            ),
        }
    }

    /// The paragraph of [`Decision::explain_in`] in each language: English for the audit,
    /// the person's language for the reply.
    pub fn explanation(&self) -> Localized {
        Localized::new(|lang| self.explain_in(lang))
    }
}

/// Whether `value` (absent = "") meets an allow rule's conditions: each condition limits only
/// jobs that declare that parameter. With `params` unknown (`None`), conditions could be met.
fn allow_params(scope: &Scope, job: &JobSpec, params: Option<&Params>) -> bool {
    let Some(params) = params else { return true };
    scope.params.iter().all(|(name, globs)| {
        job.param(name).is_none() || {
            let v = params.get(name).map(String::as_str).unwrap_or("");
            listed(globs, job, name, v)
        }
    })
}

/// Whether the run's (canonical) value `v` of `name` is one a condition lists. A literal value
/// of the config is read through this job's own parameter spec — the same words mean the same
/// value for every job (`production` is `prod` for a job with that synonym, and stays
/// `production` for a job taking free text); a pattern is matched as it is.
pub fn listed(globs: &[Glob], job: &JobSpec, name: &str, v: &str) -> bool {
    globs.iter().any(|g| {
        if g.is_literal() {
            g.as_str() == v || job.param(name).and_then(|p| p.normalize(g.as_str()).ok()).as_deref() == Some(v)
        } else {
            g.matches(v)
        }
    })
}

/// Whether a deny rule's or policy's conditions pick this run: every named parameter is
/// declared by the job and its value is listed. With `params` unknown, only rules without
/// conditions pick.
pub fn picks(scope: &Scope, job: &JobSpec, params: Option<&Params>) -> bool {
    if !scope.has_job(&job.name) {
        return false;
    }
    if scope.params.is_empty() {
        return true;
    }
    let Some(params) = params else { return false };
    scope.params.iter().all(|(name, globs)| {
        job.param(name).is_some() && {
            let v = params.get(name).map(String::as_str).unwrap_or("");
            listed(globs, job, name, v)
        }
    })
}

/// Whether a rule limited to `channels` (none = everywhere) applies in `place`.
pub(crate) fn in_place(channels: &[Glob], place: &Place) -> bool {
    channels.is_empty() || {
        let key = place.key();
        let no_thread = format!("{}/{}", place.platform, place.channel);
        channels.iter().any(|g| g.matches(&key) || g.matches(&no_thread))
    }
}

/// The places a rule is limited to, for a sentence: ` in slack/C1, web/*` (empty when the
/// rule holds everywhere).
fn where_(g: &Grant, lang: Lang) -> String {
    if g.channels.is_empty() {
        String::new()
    } else {
        let channels = g.channels.iter().map(Glob::as_str).collect::<Vec<_>>().join(", ");
        i18n::text(lang, "access-in-channels", &[("channels", channels.into())])
    }
}

/// What a rule covers (its jobs and parameter conditions), in `lang`: in English exactly
/// [`Scope::describe`]; in Chinese `deploy（env 取 dev，staging 之一）`, with a space after it
/// when it ends in a Latin letter or digit (the Chinese messages put no space after it).
pub(crate) fn scope_in(scope: &Scope, lang: Lang) -> String {
    if lang == Lang::En {
        return scope.describe();
    }
    let mut text = scope_words(scope, lang);
    if text.ends_with(|c: char| c.is_ascii_graphic()) {
        text.push(' ');
    }
    text
}

/// [`scope_in`] without the space.
fn scope_words(scope: &Scope, lang: Lang) -> String {
    let jobs = scope.jobs.iter().map(Glob::as_str).collect::<Vec<_>>();
    let jobs = if jobs == ["*"] {
        i18n::text(lang, "scope-every-job", &[])
    } else {
        jobs.join(&i18n::text(lang, "list-comma", &[]))
    };
    if scope.params.is_empty() {
        return jobs;
    }
    let conds: Vec<String> = scope
        .params
        .iter()
        .map(|(k, vs)| match vs.as_slice() {
            [one] => format!("{k}={}", one.as_str()),
            _ => {
                let values = vs
                    .iter()
                    .map(Glob::as_str)
                    .collect::<Vec<_>>()
                    .join(&i18n::text(lang, "list-comma", &[]));
                i18n::text(lang, "scope-one-of", &[("param", k.into()), ("values", values.into())])
            }
        })
        .collect();
    let and = i18n::text(lang, "scope-and", &[]);
    i18n::text(
        lang,
        "scope-with",
        &[("jobs", jobs.into()), ("conditions", conds.join(&and).into())],
    )
}

/// A verb for a sentence in `lang`: as it is in English, in backticks in Chinese.
fn verb_in(verb: &str, lang: Lang) -> String {
    match lang {
        Lang::En => verb.to_string(),
        Lang::Zh => format!("`{verb}`"),
    }
}

/// The arguments every sentence about a rule of a role uses.
fn rule_args(role: &str, verb: Verb, g: &Grant, lang: Lang) -> Vec<(&'static str, Arg)> {
    vec![
        ("role", role.into()),
        ("verb", verb_in(verb.as_str(), lang).into()),
        ("scope", scope_in(&g.scope, lang).into()),
        ("where", where_(g, lang).into()),
        ("at", g.at.to_string().into()),
    ]
}

/// May `who` do `verb` on `job` (with `params`, when known) in `place`? Deny rules of any of
/// their roles win; then the first allow rule that fits decides; else denied, saying what the
/// closest allow rule would have needed.
pub fn decide(cfg: &AccessConfig, who: &Person, verb: Verb, job: &JobSpec, params: Option<&Params>, place: &Place) -> Decision {
    let roles: Vec<&opsbot_core::config::RoleSpec> = who.roles.iter().filter_map(|r| cfg.role(r)).collect();
    for role in &roles {
        for g in &role.deny {
            if g.verbs.contains(&verb) && picks(&g.scope, job, params) && in_place(&g.channels, place) {
                return Decision::Denied {
                    why: Localized::new(|lang| i18n::text(lang, "access-role-denies", &rule_args(&role.name, verb, g, lang))),
                    would_pass: None,
                };
            }
        }
    }
    let mut near: Option<Localized> = None;
    for role in &roles {
        for g in &role.allow {
            if !g.verbs.contains(&verb) || !g.scope.has_job(&job.name) {
                continue;
            }
            let params_ok = allow_params(&g.scope, job, params);
            let place_ok = in_place(&g.channels, place);
            if params_ok && place_ok {
                return Decision::Allowed(format!(
                    "role `{}`: {verb} on {}{} ({})",
                    role.name,
                    g.scope.describe(),
                    where_(g, Lang::En),
                    g.at
                ));
            }
            if near.is_none() {
                near = Some(Localized::new(|lang| {
                    i18n::text(lang, "access-role-allows-only", &rule_args(&role.name, verb, g, lang))
                }));
            }
        }
    }
    let why = Localized::new(|lang| {
        let verb_text = verb_in(verb.as_str(), lang);
        if who.roles.is_empty() {
            i18n::text(lang, "access-no-role", &[("verb", verb_text.into()), ("job", (&job.name).into())])
        } else {
            let roles = who.roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ");
            let (with, in_place) = asked(job, params, place, lang);
            i18n::text(
                lang,
                "access-no-role-allows",
                &[
                    ("roles", roles.into()),
                    ("verb", verb_text.into()),
                    ("job", (&job.name).into()),
                    ("with", with.into()),
                    ("place", in_place.into()),
                ],
            )
        }
    });
    let would_pass = match (near, &who.known) {
        (Some(n), _) => Some(n),
        (None, Known::Unknown) => Some(Localized::message(
            "access-unknown-account",
            &[("account", who.account.to_string().into())],
        )),
        (None, _) => Some(Localized::message("access-ask-admin", &[])),
    };
    Decision::Denied { why, would_pass }
}

/// What was asked, for a denial: the values (secret ones left out) as ` with k=v k=v` (empty
/// when none are known), and the place without a thread (an API request's own thread id means
/// nothing to a person).
fn asked(job: &JobSpec, params: Option<&Params>, place: &Place, lang: Lang) -> (String, String) {
    let mut with = String::new();
    if let Some(p) = params {
        let shown: Vec<String> = job
            .params
            .iter()
            .filter(|spec| !spec.secret)
            .filter_map(|spec| {
                p.get(&spec.name)
                    .map(|v| format!("{}={}", spec.name, opsbot_core::job::shorten(v, 40)))
            })
            .collect();
        if !shown.is_empty() {
            with = i18n::text(lang, "access-asked-with", &[("values", shown.join(" ").into())]);
        }
    }
    (with, format!("{}/{}", place.platform, place.channel))
}

/// Whether `who` may run `job` with some parameter values in `place` (for help and list).
pub fn may_run_some(cfg: &AccessConfig, who: &Person, job: &JobSpec, place: &Place) -> bool {
    decide(cfg, who, Verb::Run, job, None, place).allowed()
}

/// The verbs each of `who`'s roles grants, for `whoami`: `deployer: run, view on deploy with env in [dev, staging]`.
pub fn describe_roles(cfg: &AccessConfig, who: &Person) -> Vec<String> {
    describe_roles_in(cfg, who, Lang::En)
}

/// [`describe_roles`] in `lang` (a role's configured description stays as written).
pub fn describe_roles_in(cfg: &AccessConfig, who: &Person, lang: Lang) -> Vec<String> {
    let mut out = Vec::new();
    for r in &who.roles {
        let Some(role) = cfg.role(r) else { continue };
        if role.allow.is_empty() && role.deny.is_empty() {
            let what = match role.description.as_deref() {
                Some(d) => d.to_string(),
                None => i18n::text(lang, "role-grants-nothing", &[]),
            };
            out.push(i18n::text(lang, "role-line", &[("role", r.into()), ("what", what.into())]));
            continue;
        }
        for (id, list) in [("role-allows", &role.allow), ("role-denies", &role.deny)] {
            for g in list {
                let verbs = g
                    .verbs
                    .iter()
                    .map(|v| verb_in(v.as_str(), lang))
                    .collect::<Vec<_>>()
                    .join(&i18n::text(lang, "list-comma", &[]));
                let what = i18n::text(
                    lang,
                    id,
                    &[
                        ("verbs", verbs.into()),
                        ("scope", scope_in(&g.scope, lang).into()),
                        ("where", where_(g, lang).into()),
                    ],
                );
                out.push(i18n::text(lang, "role-line", &[("role", r.into()), ("what", what.into())]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::config::{Config, LoadOptions};
    use std::path::Path;

    const CFG: &str = r#"
[jobs.deploy]
runner = { type = "exec", argv = ["true"] }
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "staging", "prod"]
synonyms = { prod = ["production"] }
required = true
[jobs.health]
runner = { type = "exec", argv = ["true"] }

[people.ana]
name = "Ana"
accounts = ["slack:U1", "web:ana"]
roles = ["deployer"]
[people.bo]
accounts = ["slack:U2"]
roles = ["deployer", "no-prod"]

[roles.deployer]
allow = [{ verbs = ["run", "view"], jobs = ["deploy", "health"], params = { env = ["dev", "staging"] } }]
[roles.no-prod]
deny = [{ verbs = "*", jobs = "*", params = { env = "production" } }]
"#;

    fn cfg() -> Config {
        Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap()
    }

    fn params(env: &str) -> Params {
        [("env".to_string(), env.to_string())].into_iter().collect()
    }

    #[test]
    fn constraints_explain_and_deny_wins() {
        let c = cfg();
        let place = Place::new("slack", "C1");
        let deploy = c.catalog.get("deploy").unwrap();
        let health = c.catalog.get("health").unwrap();
        let ana = identify(&c.access, &UserId::new("slack", "U1"), Some("Mallory"), None);
        assert_eq!(ana.name, "Ana", "configured name, not the display name");
        assert!(decide(&c.access, &ana, Verb::Run, deploy, Some(&params("dev")), &place).allowed());
        assert!(
            decide(&c.access, &ana, Verb::Run, health, Some(&Params::new()), &place).allowed(),
            "no env: not limited"
        );
        let d = decide(&c.access, &ana, Verb::Run, deploy, Some(&params("prod")), &place);
        let text = d.explain();
        assert!(!d.allowed());
        assert!(
            text.contains("env=prod") && text.contains("env in [dev, staging]") && text.contains("t.toml:"),
            "{text}"
        );
        assert!(!decide(&c.access, &ana, Verb::Cancel, deploy, Some(&params("dev")), &place).allowed());
        // Bo has the same allow rule and a deny rule that wins for prod ("production" was
        // canonicalised when the config was read).
        let bo = identify(&c.access, &UserId::new("slack", "U2"), None, None);
        let d = decide(&c.access, &bo, Verb::Run, deploy, Some(&params("prod")), &place);
        assert!(d.explain().contains("Role `no-prod` denies"), "{}", d.explain());
        // An unknown account with a known person's display name is a guest.
        let eve = identify(&c.access, &UserId::new("slack", "U666"), Some("Ana"), None);
        assert_eq!(eve.roles, vec!["guest"]);
        let d = decide(&c.access, &eve, Verb::Run, health, Some(&Params::new()), &place);
        assert!(d.explain().contains("I don't know your account `slack:U666`"), "{}", d.explain());
        // Linked accounts are the person's.
        let linked = identify(&c.access, &UserId::new("matrix", "@ana:x"), None, Some("ana"));
        assert_eq!(linked.key.as_deref(), Some("ana"));
        assert_eq!(linked.known, Known::Linked);
        // The local command line is admin by default.
        let local = identify(&c.access, &UserId::new("cli", "root"), None, None);
        assert!(decide(&c.access, &local, Verb::Admin, deploy, None, &place).allowed());
    }

    fn is_cjk(s: &str) -> bool {
        s.chars().any(opsbot_core::understand::is_cjk)
    }

    #[test]
    fn explanations_in_english_exactly_and_in_chinese() {
        let c = cfg();
        let place = Place::new("slack", "C1");
        let deploy = c.catalog.get("deploy").unwrap();
        let ana = identify(&c.access, &UserId::new("slack", "U1"), None, None);
        let d = decide(&c.access, &ana, Verb::Run, deploy, Some(&params("prod")), &place);
        let en = d.explain();
        assert!(
            en.starts_with(
                "None of your roles (`deployer`) allows run on `deploy` with env=prod in slack/C1. Role `deployer` allows run only on deploy, health with env in [dev, staging] (t.toml:"
            ) && en.ends_with(")."),
            "{en}"
        );
        assert_eq!(d.explanation().english(), en);
        let zh = d.explain_in(Lang::Zh);
        assert_eq!(d.explanation().get(Lang::Zh), zh);
        assert!(
            zh.starts_with(
                "你的角色（`deployer`）都不允许在 slack/C1 对 `deploy` 执行 `run`（参数 env=prod）。角色 `deployer` 只允许对 deploy，health（env 取 dev，staging 之一）执行 `run`（t.toml:"
            ) && zh.ends_with("）。"),
            "{zh}"
        );
        // A deny rule, an unknown account, no role at all.
        let bo = identify(&c.access, &UserId::new("slack", "U2"), None, None);
        let d = decide(&c.access, &bo, Verb::Run, deploy, Some(&params("prod")), &place);
        assert!(
            d.explain()
                .starts_with("Role `no-prod` denies run on every job with env=production (t.toml:"),
            "{}",
            d.explain()
        );
        let zh = d.explain_in(Lang::Zh);
        assert!(
            zh.starts_with("角色 `no-prod` 禁止对 所有任务（env=production）执行 `run`（t.toml:"),
            "{zh}"
        );
        let eve = identify(&c.access, &UserId::new("slack", "U666"), None, None);
        let d = decide(&c.access, &eve, Verb::Run, deploy, Some(&params("dev")), &place);
        assert_eq!(
            d.explain(),
            "None of your roles (`guest`) allows run on `deploy` with env=dev in slack/C1. I don't know your account `slack:U666`: ask an admin to add it to your person in the config, or send `link` to me in a direct message to tie it to an account I know."
        );
        let zh = d.explain_in(Lang::Zh);
        assert!(is_cjk(&zh) && zh.contains("`slack:U666`") && zh.contains("`link`"), "{zh}");
        let nobody = Person {
            roles: vec![],
            ..ana.clone()
        };
        let d = decide(&c.access, &nobody, Verb::Cancel, deploy, None, &place);
        assert_eq!(
            d.explain(),
            "you have no role, so you may not cancel `deploy`. Ask an admin for a role that allows it; `whoami` shows your roles."
        );
        assert_eq!(
            d.explain_in(Lang::Zh),
            "你没有任何角色，因此不能对 `deploy` 执行 `cancel`。请向管理员申请允许此操作的角色；`whoami` 可查看你的角色。"
        );
        // An allowed decision names its rule in English in both languages.
        let d = decide(&c.access, &ana, Verb::Run, deploy, Some(&params("dev")), &place);
        assert!(
            d.explain().starts_with("Allowed by role `deployer`: run on deploy, health"),
            "{}",
            d.explain()
        );
        assert!(
            d.explain_in(Lang::Zh).starts_with("已允许：role `deployer`"),
            "{}",
            d.explain_in(Lang::Zh)
        );
    }

    #[test]
    fn whoami_lines_in_both_languages() {
        let c = cfg();
        let ana = identify(&c.access, &UserId::new("slack", "U1"), None, None);
        assert_eq!(
            describe_roles(&c.access, &ana),
            ["deployer: run, view on deploy, health with env in [dev, staging]"]
        );
        assert_eq!(
            describe_roles_in(&c.access, &ana, Lang::Zh),
            ["deployer：可对 deploy，health（env 取 dev，staging 之一）执行 `run`，`view`"]
        );
        let bo = identify(&c.access, &UserId::new("slack", "U2"), None, None);
        let en = describe_roles(&c.access, &bo);
        assert!(
            en[1].starts_with("no-prod: deny ") && en[1].ends_with(" on every job with env=production"),
            "{en:?}"
        );
        let zh = describe_roles_in(&c.access, &bo, Lang::Zh);
        assert!(zh[1].starts_with("no-prod：禁止对 所有任务（env=production）执行 `run`"), "{zh:?}");
    }
}
