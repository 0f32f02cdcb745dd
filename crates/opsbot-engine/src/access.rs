//! Who is asking, and may they: identities and role-based access control.
//!
//! A person is found by the platform account's stable id (never a display name): listed in
//! `[people.KEY] accounts`, or linked to a person with `link`. Everyone else gets
//! `[access] default_role` (`guest`: help only), and accounts of the local command line get
//! `[access] local_role`. Roles grant verbs on jobs, with conditions on parameter values and
//! places; a deny rule of any of a person's roles wins over every allow rule; nothing allowed is
//! denied.

use opsbot_core::config::{AccessConfig, Glob, Grant, LOCAL_PLATFORMS, Scope, Verb};
use opsbot_core::job::JobSpec;
use opsbot_core::{Params, Place, UserId};

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
        why: String,
        /// What would be allowed instead, if something close is.
        would_pass: Option<String>,
    },
}

impl Decision {
    /// Whether it was allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allowed(_))
    }

    /// One paragraph for a person.
    pub fn explain(&self) -> String {
        match self {
            Decision::Allowed(by) => format!("Allowed by {by}."),
            Decision::Denied { why, would_pass: None } => format!("{why}."),
            Decision::Denied { why, would_pass: Some(w) } => format!("{why}. {w}"),
        }
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

fn where_(g: &Grant) -> String {
    if g.channels.is_empty() {
        String::new()
    } else {
        format!(" in {}", g.channels.iter().map(Glob::as_str).collect::<Vec<_>>().join(", "))
    }
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
                    why: format!(
                        "Role `{}` denies {verb} on {}{} ({})",
                        role.name,
                        g.scope.describe(),
                        where_(g),
                        g.at
                    ),
                    would_pass: None,
                };
            }
        }
    }
    let mut near: Option<String> = None;
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
                    where_(g),
                    g.at
                ));
            }
            if near.is_none() {
                near = Some(format!(
                    "Role `{}` allows {verb} only on {}{} ({}).",
                    role.name,
                    g.scope.describe(),
                    where_(g),
                    g.at
                ));
            }
        }
    }
    let roles_text = if who.roles.is_empty() {
        "you have no role".to_string()
    } else {
        format!(
            "none of your roles ({}) allows",
            who.roles.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ")
        )
    };
    let why = if who.roles.is_empty() {
        format!("{roles_text}, so you may not {verb} `{}`", job.name)
    } else {
        format!("{} {verb} on `{}`{}", capital(&roles_text), job.name, asked(job, params, place))
    };
    let would_pass = match (&near, &who.known) {
        (Some(n), _) => Some(n.clone()),
        (None, Known::Unknown) => Some(format!(
            "I don't know your account `{}`: ask an admin to add it to your person in the config, or send `link` to me in a direct message to tie it to an account I know.",
            who.account
        )),
        (None, _) => Some("Ask an admin for a role that allows it; `whoami` shows your roles.".into()),
    };
    Decision::Denied { why, would_pass }
}

fn asked(job: &JobSpec, params: Option<&Params>, place: &Place) -> String {
    let mut s = String::new();
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
            s.push_str(&format!(" with {}", shown.join(" ")));
        }
    }
    // The place without a thread: an API request's own thread id means nothing to a person.
    s.push_str(&format!(" in {}/{}", place.platform, place.channel));
    s
}

fn capital(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Whether `who` may run `job` with some parameter values in `place` (for help and list).
pub fn may_run_some(cfg: &AccessConfig, who: &Person, job: &JobSpec, place: &Place) -> bool {
    decide(cfg, who, Verb::Run, job, None, place).allowed()
}

/// The verbs each of `who`'s roles grants, for `whoami`: `deployer: run, view on deploy with env in [dev, staging]`.
pub fn describe_roles(cfg: &AccessConfig, who: &Person) -> Vec<String> {
    let mut out = Vec::new();
    for r in &who.roles {
        let Some(role) = cfg.role(r) else { continue };
        if role.allow.is_empty() && role.deny.is_empty() {
            out.push(format!("{r}: {}", role.description.as_deref().unwrap_or("grants nothing")));
            continue;
        }
        for (kind, list) in [("", &role.allow), ("deny ", &role.deny)] {
            for g in list {
                let verbs = g.verbs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
                out.push(format!("{r}: {kind}{verbs} on {}{}", g.scope.describe(), where_(g)));
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
}
