//! Who may do what: `[access]`, `[people.NAME]`, `[roles.NAME]` and `[[policy.*]]`.
//!
//! This module only reads and checks these sections into typed rules; the engine evaluates
//! them (`opsbot_engine::access`, `opsbot_engine::policy`).

use super::{Cx, valid_name};
use crate::UserId;
use crate::job::{Catalog, JobSpec, ParamKind};
use chrono::{DateTime, NaiveTime, Utc, Weekday};
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// Roles opsbot defines itself; a config may not redefine them.
pub const BUILTIN_ROLES: &[&str] = &["guest", "admin"];

/// Platforms whose accounts are people on this machine (the `opsbot` command line and its
/// shell): they get `[access] local_role` unless a person lists the account.
pub const LOCAL_PLATFORMS: &[&str] = &["cli", "terminal"];

/// What a role may be granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// Start a run of a job.
    Run,
    /// Cancel someone else's run of a job (one's own runs may always be cancelled).
    Cancel,
    /// Vote on approval requests for a job.
    Approve,
    /// See runs of a job that others started (status, logs, history).
    View,
    /// Lock and unlock a job or a parameter value.
    Admin,
}

impl Verb {
    /// Every verb, in the order they are documented.
    pub const ALL: [Verb; 5] = [Verb::Run, Verb::Cancel, Verb::Approve, Verb::View, Verb::Admin];

    /// The word in config and commands.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Run => "run",
            Verb::Cancel => "cancel",
            Verb::Approve => "approve",
            Verb::View => "view",
            Verb::Admin => "admin",
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Verb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Verb::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a verb; the verbs are run, cancel, approve, view, admin (or \"*\" for all)"))
    }
}

/// A shell-style pattern: `*` any run of characters, `?` one character; everything else
/// literal. Matched against the whole text.
#[derive(Clone, Debug)]
pub struct Glob {
    text: String,
    re: Regex,
}

impl Glob {
    /// Compiles a pattern.
    pub fn new(text: &str) -> Glob {
        let mut re = String::from("^");
        for c in text.chars() {
            match c {
                '*' => re.push_str(".*"),
                '?' => re.push('.'),
                c => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        Glob {
            text: text.to_string(),
            re: Regex::new(&re).expect("an escaped glob is a valid regex"),
        }
    }

    /// Whether the whole of `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        !self.text.contains(['*', '?'])
    }
}

impl PartialEq for Glob {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Which runs a rule speaks about: job names (globs) and, optionally, parameter values.
///
/// A condition on a parameter only speaks about runs of jobs that declare that parameter: in
/// an allow rule it limits those jobs to the listed values and leaves other jobs alone; in a
/// deny rule or a policy it picks the runs whose value is listed.
#[derive(Clone, Debug, PartialEq)]
pub struct Scope {
    /// Job names or globs (`*` = every job).
    pub jobs: Vec<Glob>,
    /// Parameter name → accepted values (globs), in the order written.
    pub params: Vec<(String, Vec<Glob>)>,
}

impl Scope {
    /// Whether the job's name is in scope.
    pub fn has_job(&self, job: &str) -> bool {
        self.jobs.iter().any(|g| g.matches(job))
    }

    /// `deploy, rollback with env in [prod]` for messages.
    pub fn describe(&self) -> String {
        let jobs = self.jobs.iter().map(Glob::as_str).collect::<Vec<_>>().join(", ");
        let mut s = if jobs == "*" { "every job".to_string() } else { jobs };
        if !self.params.is_empty() {
            let conds: Vec<String> = self
                .params
                .iter()
                .map(|(k, vs)| {
                    if vs.len() == 1 {
                        format!("{k}={}", vs[0])
                    } else {
                        format!("{k} in [{}]", vs.iter().map(Glob::as_str).collect::<Vec<_>>().join(", "))
                    }
                })
                .collect();
            s.push_str(&format!(" with {}", conds.join(" and ")));
        }
        s
    }
}

/// One allow or deny rule of a role.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Verbs it grants or denies.
    pub verbs: Vec<Verb>,
    /// Jobs and parameter conditions.
    pub scope: Scope,
    /// Places (`platform/channel` keys, globs) it is limited to; empty = everywhere.
    pub channels: Vec<Glob>,
    /// Where it is written, for explanations (`opsbot.toml:42`).
    pub at: String,
}

/// A role: what its members may and may not do.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleSpec {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Allow rules.
    pub allow: Vec<Grant>,
    /// Deny rules (win over any allow rule of any role).
    pub deny: Vec<Grant>,
}

/// A person and their accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct PersonSpec {
    /// The key in `[people.KEY]`.
    pub key: String,
    /// How to address them (`None`: by the platform's display name, else the key).
    pub name: Option<String>,
    /// Their platform accounts, by stable id.
    pub accounts: Vec<UserId>,
    /// Their roles.
    pub roles: Vec<String>,
    /// The language opsbot answers them in (`None`: the language of each request).
    pub language: Option<crate::Lang>,
}

/// Who must agree before a run starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRule {
    /// Its name, shown in requests.
    pub name: String,
    /// Runs that need it.
    pub scope: Scope,
    /// Roles whose members may approve (besides needing the `approve` verb on the job); empty =
    /// anyone with the `approve` verb.
    pub approvers: Vec<String>,
    /// Approvals needed from different people, never the requester.
    pub count: u32,
    /// How long the request stays open.
    pub expires: Duration,
}

/// When a change freeze is in force.
#[derive(Clone, Debug)]
pub enum FreezeWindow {
    /// From one instant to another.
    Range {
        /// Start (inclusive).
        from: DateTime<Utc>,
        /// End (exclusive).
        until: DateTime<Utc>,
    },
    /// Starting at every time the cron pattern names (in the team's time zone), lasting `duration`.
    Cron {
        /// The pattern.
        cron: Box<croner::Cron>,
        /// As written.
        pattern: String,
        /// How long each window lasts.
        duration: Duration,
    },
}

/// A change freeze.
#[derive(Clone, Debug)]
pub struct FreezeRule {
    /// Its name.
    pub name: String,
    /// Runs it stops.
    pub scope: Scope,
    /// When.
    pub window: FreezeWindow,
    /// Why, shown to whoever is refused.
    pub reason: Option<String>,
    /// Who may let a run through anyway (`--override REASON`); `None` = nobody.
    pub override_by: Option<OverrideRule>,
}

/// Who must approve a run that overrides a freeze.
#[derive(Clone, Debug, PartialEq)]
pub struct OverrideRule {
    /// Roles whose members may approve.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub count: u32,
    /// How long the request stays open.
    pub expires: Duration,
}

/// Hours in which runs are allowed.
#[derive(Clone, Debug, PartialEq)]
pub struct HoursRule {
    /// Its name.
    pub name: String,
    /// Runs it limits.
    pub scope: Scope,
    /// Days allowed, Monday first.
    pub days: [bool; 7],
    /// Time of day from (inclusive), in the team's time zone.
    pub from: NaiveTime,
    /// Time of day until (exclusive); earlier than `from` means the window crosses midnight.
    pub until: NaiveTime,
    /// As written, for messages (`mon-fri 09:00-18:00`).
    pub text: String,
}

/// What a rate limit counts per.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatePer {
    /// Each person separately.
    Person,
    /// Each job, whoever asks.
    Job,
}

/// At most `max` runs per `every`.
#[derive(Clone, Debug, PartialEq)]
pub struct RateRule {
    /// Its name.
    pub name: String,
    /// Runs it counts.
    pub scope: Scope,
    /// Per person or per job.
    pub per: RatePer,
    /// Runs allowed in a burst.
    pub max: u32,
    /// In this long (the allowance refills evenly over it).
    pub every: Duration,
}

/// A pattern that no rendered command line may contain.
#[derive(Clone, Debug)]
pub struct ArgvRule {
    /// Its name.
    pub name: String,
    /// Jobs it applies to.
    pub scope: Scope,
    /// Matched against each argv element and against all of them joined by spaces.
    pub pattern: Regex,
    /// Why, shown to whoever is refused.
    pub reason: Option<String>,
}

/// Everything about who may do what.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// Role of accounts no person lists (and that no one linked).
    pub default_role: String,
    /// Role of accounts of the local command line (`cli:*`, `terminal:*`) that no person lists.
    pub local_role: String,
    /// Whether `link` may tie a new account to a person (confirmed from a known account).
    pub self_link: bool,
    /// Places (`platform/channel`) where approval requests are also posted (besides where they were asked).
    pub notify: Vec<crate::Place>,
    /// The team's time zone (`[bot] timezone`), for freezes and hours.
    pub timezone: chrono_tz::Tz,
    /// People.
    pub people: Vec<PersonSpec>,
    /// Roles, built-in ones included.
    pub roles: Vec<RoleSpec>,
    /// Approval rules.
    pub approvals: Vec<ApprovalRule>,
    /// Change freezes.
    pub freezes: Vec<FreezeRule>,
    /// Allowed hours.
    pub hours: Vec<HoursRule>,
    /// Rate limits.
    pub rate_limits: Vec<RateRule>,
    /// Forbidden command-line patterns.
    pub deny_argv: Vec<ArgvRule>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            default_role: "guest".into(),
            local_role: "admin".into(),
            self_link: true,
            notify: Vec::new(),
            timezone: chrono_tz::UTC,
            people: Vec::new(),
            roles: builtin_roles(),
            approvals: Vec::new(),
            freezes: Vec::new(),
            hours: Vec::new(),
            rate_limits: Vec::new(),
            deny_argv: Vec::new(),
        }
    }
}

impl AccessConfig {
    /// The person that lists this account in the config.
    pub fn person_with_account(&self, account: &UserId) -> Option<&PersonSpec> {
        self.people.iter().find(|p| p.accounts.contains(account))
    }

    /// The person with this key.
    pub fn person(&self, key: &str) -> Option<&PersonSpec> {
        self.people.iter().find(|p| p.key == key)
    }

    /// The role with this name.
    pub fn role(&self, name: &str) -> Option<&RoleSpec> {
        self.roles.iter().find(|r| r.name == name)
    }
}

fn builtin_roles() -> Vec<RoleSpec> {
    vec![
        RoleSpec {
            name: "guest".into(),
            description: Some("built in: may read help and list, may run nothing".into()),
            allow: Vec::new(),
            deny: Vec::new(),
        },
        RoleSpec {
            name: "admin".into(),
            description: Some("built in: every verb on every job".into()),
            allow: vec![Grant {
                verbs: Verb::ALL.to_vec(),
                scope: Scope {
                    jobs: vec![Glob::new("*")],
                    params: Vec::new(),
                },
                channels: Vec::new(),
                at: "built in".into(),
            }],
            deny: Vec::new(),
        },
    ]
}

// ---- raw shapes -----------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccess {
    default_role: Option<Spanned<String>>,
    local_role: Option<Spanned<String>>,
    self_link: Option<bool>,
    #[serde(default)]
    notify: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    name: Option<String>,
    language: Option<Spanned<String>>,
    #[serde(default)]
    accounts: Vec<Spanned<String>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    description: Option<String>,
    #[serde(default)]
    allow: Vec<Spanned<RawGrant>>,
    #[serde(default)]
    deny: Vec<Spanned<RawGrant>>,
}

/// One value or a list of values; numbers and booleans are taken as the text they are written
/// as (`replicas = 3` and `replicas = "3"` mean the same).
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum OneOrMany {
    One(Scalar),
    Many(Vec<Scalar>),
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Text(s) => s.clone(),
            Scalar::Int(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.text()],
            OneOrMany::Many(v) => v.iter().map(Scalar::text).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    verbs: Spanned<OneOrMany>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    channels: Option<Spanned<OneOrMany>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    approval: Vec<Spanned<RawApproval>>,
    #[serde(default)]
    freeze: Vec<Spanned<RawFreeze>>,
    #[serde(default)]
    hours: Vec<Spanned<RawHours>>,
    #[serde(default)]
    rate_limit: Vec<Spanned<RawRate>>,
    #[serde(default)]
    deny_argv: Vec<Spanned<RawArgv>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApproval {
    name: Spanned<String>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    #[serde(default)]
    approvers: Vec<Spanned<String>>,
    count: Option<Spanned<i64>>,
    expires: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFreeze {
    name: Spanned<String>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    from: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
    reason: Option<String>,
    #[serde(rename = "override")]
    override_by: Option<Spanned<RawOverride>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    #[serde(default)]
    approvers: Vec<Spanned<String>>,
    count: Option<Spanned<i64>>,
    expires: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHours {
    name: Spanned<String>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    days: Option<Spanned<String>>,
    between: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    name: Spanned<String>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    per: Option<Spanned<String>>,
    max: Spanned<i64>,
    every: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgv {
    name: Spanned<String>,
    jobs: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<OneOrMany>>,
    pattern: Spanned<String>,
    reason: Option<String>,
}

/// The most approvals a rule may ask for.
const MAX_APPROVERS: i64 = 10;
/// How long an approval request stays open unless the rule says.
const DEFAULT_APPROVAL_TTL: Duration = Duration::from_secs(3600);

// ---- the checker ----------------------------------------------------------------------------

impl<'a> Cx<'a> {
    /// Reads `[access]`, `[people]`, `[roles]` and `[policy]`, checking them against the catalog.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn access(
        &mut self,
        declared: &[String],
        access: Option<&Spanned<DeValue<'a>>>,
        people: Option<&Spanned<DeValue<'a>>>,
        roles: Option<&Spanned<DeValue<'a>>>,
        policy: Option<&Spanned<DeValue<'a>>>,
        catalog: &Catalog,
        timezone: chrono_tz::Tz,
    ) -> AccessConfig {
        let raw: RawAccess = self.section(access);
        let mut cfg = AccessConfig {
            self_link: raw.self_link.unwrap_or(true),
            timezone,
            ..AccessConfig::default()
        };

        // Roles first: people and policies name them.
        for (name, value) in self.table_entries(roles, "roles", "[roles.deployer]") {
            match RawRole::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(raw) => {
                    if let Some(r) = self.role(&name, raw, catalog, declared) {
                        cfg.roles.push(r);
                    }
                }
                Err(e) => self.toml_err(e, value.span()),
            }
        }
        for n in &raw.notify {
            match n.get_ref().split_once('/') {
                Some((p, c)) if !p.is_empty() && !c.is_empty() && !n.get_ref().contains(char::is_whitespace) => {
                    // The web chat names its channels without `#` ("web/#ops" is "web/ops");
                    // elsewhere the `#` is part of the name (an IRC channel).
                    let c = if p == "web" { c.trim_start_matches('#') } else { c };
                    cfg.notify.push(crate::Place::new(p, c))
                }
                _ => self.err(
                    n.span(),
                    format!("`{}` is not a place", n.get_ref()),
                    Some("write PLATFORM/CHANNEL, e.g. \"web/ops\" or \"slack/C024BE91L\"".into()),
                ),
            }
        }
        let role_names: Vec<String> = cfg.roles.iter().map(|r| r.name.clone()).collect();
        for (field, v) in [("default_role", &raw.default_role), ("local_role", &raw.local_role)] {
            if let Some(v) = v
                && self.known_role(v, &role_names)
            {
                let s = v.get_ref().clone();
                if field == "default_role" {
                    cfg.default_role = s;
                } else {
                    cfg.local_role = s;
                }
            }
        }

        let mut owner: HashMap<UserId, String> = HashMap::new();
        for (key, value) in self.table_entries(people, "people", "[people.ana]") {
            let raw = match RawPerson::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(r) => r,
                Err(e) => {
                    self.toml_err(e, value.span());
                    continue;
                }
            };
            if !valid_name(key.get_ref(), true) || key.get_ref().len() > 64 {
                self.err(
                    key.span(),
                    format!("`{}` is not a valid person key", key.get_ref()),
                    Some("use lowercase letters, digits, `-` and `_`, starting with a letter, e.g. [people.ana]".into()),
                );
                continue;
            }
            let mut accounts = Vec::new();
            for a in &raw.accounts {
                match parse_account(a.get_ref()) {
                    Ok(u) => {
                        if let Some(other) = owner.get(&u) {
                            self.err(
                                a.span(),
                                format!("account `{u}` is listed for both `{other}` and `{}`", key.get_ref()),
                                Some("an account belongs to one person".into()),
                            );
                        } else {
                            owner.insert(u.clone(), key.get_ref().clone());
                            accounts.push(u);
                        }
                    }
                    Err(msg) => self.err(a.span(), msg, Some("write PLATFORM:ID with the platform's stable user id, e.g. \"slack:U024BE7LH\", \"matrix:@ana:example.org\", \"web:ana\"".into())),
                }
            }
            let mut roles = Vec::new();
            for r in &raw.roles {
                if self.known_role(r, &role_names) {
                    roles.push(r.get_ref().clone());
                }
            }
            let language = match &raw.language {
                None => None,
                Some(l) if l.get_ref() == "auto" => None,
                Some(l) => {
                    let lang = crate::Lang::parse(l.get_ref());
                    if lang.is_none() {
                        self.err(
                            l.span(),
                            format!("`{}` is not a language opsbot speaks", l.get_ref()),
                            Some("\"auto\" (follow each request), \"en\" or \"zh\"".into()),
                        );
                    }
                    lang
                }
            };
            cfg.people.push(PersonSpec {
                key: key.get_ref().clone(),
                name: raw.name,
                accounts,
                roles,
                language,
            });
        }

        let raw_policy: RawPolicy = self.section(policy);
        // Refusals and approval requests name policies: a name must say which one.
        for (kind, names) in [
            (
                "approval",
                raw_policy.approval.iter().map(|a| &a.get_ref().name).collect::<Vec<_>>(),
            ),
            ("freeze", raw_policy.freeze.iter().map(|a| &a.get_ref().name).collect()),
            ("hours", raw_policy.hours.iter().map(|a| &a.get_ref().name).collect()),
            ("rate_limit", raw_policy.rate_limit.iter().map(|a| &a.get_ref().name).collect()),
            ("deny_argv", raw_policy.deny_argv.iter().map(|a| &a.get_ref().name).collect()),
        ] {
            let mut seen = std::collections::HashSet::new();
            for n in names {
                if n.get_ref().trim().is_empty() {
                    self.err(
                        n.span(),
                        format!("a [[policy.{kind}]] needs a name"),
                        Some("e.g. name = \"prod-changes\"".into()),
                    );
                } else if !seen.insert(n.get_ref().clone()) {
                    self.err(
                        n.span(),
                        format!("there are two [[policy.{kind}]] named `{}`", n.get_ref()),
                        Some("give each a name of its own: refusals and approval requests name them".into()),
                    );
                }
            }
        }
        for a in raw_policy.approval {
            let a = a.into_inner();
            let Some(scope) = self.scope(&a.jobs, &a.params, catalog, declared) else {
                continue;
            };
            let approvers = self.role_list(&a.approvers, &role_names);
            let count = self.count(&a.count);
            cfg.approvals.push(ApprovalRule {
                name: a.name.get_ref().clone(),
                scope,
                approvers,
                count,
                expires: self.duration(&a.expires, DEFAULT_APPROVAL_TTL),
            });
        }
        for f in raw_policy.freeze {
            let span = f.span();
            let f = f.into_inner();
            let scope = self.scope(&f.jobs, &f.params, catalog, declared);
            let window = self.freeze_window(&f, span, cfg.timezone);
            let override_by = f.override_by.map(|o| {
                let o = o.into_inner();
                OverrideRule {
                    approvers: self.role_list(&o.approvers, &role_names),
                    count: self.count(&o.count),
                    expires: self.duration(&o.expires, DEFAULT_APPROVAL_TTL),
                }
            });
            if let (Some(scope), Some(window)) = (scope, window) {
                cfg.freezes.push(FreezeRule {
                    name: f.name.get_ref().clone(),
                    scope,
                    window,
                    reason: f.reason,
                    override_by,
                });
            }
        }
        for h in raw_policy.hours {
            let h = h.into_inner();
            let scope = self.scope(&h.jobs, &h.params, catalog, declared);
            let days = match &h.days {
                None => Some([true; 7]),
                Some(d) => match parse_days(d.get_ref()) {
                    Ok(days) => Some(days),
                    Err(msg) => {
                        self.err(d.span(), msg, Some("write e.g. \"mon-fri\", \"mon,wed,fri\" or \"sat-sun\"".into()));
                        None
                    }
                },
            };
            let between = match parse_between(h.between.get_ref()) {
                Ok(b) => Some(b),
                Err(msg) => {
                    self.err(
                        h.between.span(),
                        msg,
                        Some("write \"HH:MM-HH:MM\", e.g. \"09:00-18:00\" or \"22:00-06:00\"".into()),
                    );
                    None
                }
            };
            if let (Some(scope), Some(days), Some((from, until))) = (scope, days, between) {
                let text = match &h.days {
                    Some(d) => format!("{} {}", d.get_ref(), h.between.get_ref()),
                    None => format!("every day {}", h.between.get_ref()),
                };
                cfg.hours.push(HoursRule {
                    name: h.name.get_ref().clone(),
                    scope,
                    days,
                    from,
                    until,
                    text,
                });
            }
        }
        for r in raw_policy.rate_limit {
            let r = r.into_inner();
            let scope = self.scope(&r.jobs, &r.params, catalog, declared);
            let per = match r.per.as_ref().map(|p| p.get_ref().as_str()) {
                None | Some("person") => Some(RatePer::Person),
                Some("job") => Some(RatePer::Job),
                Some(other) => {
                    self.err(
                        r.per.as_ref().expect("present").span(),
                        format!("`per = \"{other}\"` is not a rate-limit key"),
                        Some("write per = \"person\" (each person separately) or per = \"job\" (everyone together)".into()),
                    );
                    None
                }
            };
            let max = match *r.max.get_ref() {
                n @ 1..=100_000 => Some(n as u32),
                _ => {
                    self.err(r.max.span(), "max must be between 1 and 100000", None);
                    None
                }
            };
            let every = self.duration(&Some(r.every.clone()), Duration::from_secs(60));
            if let (Some(scope), Some(per), Some(max)) = (scope, per, max) {
                cfg.rate_limits.push(RateRule {
                    name: r.name.get_ref().clone(),
                    scope,
                    per,
                    max,
                    every,
                });
            }
        }
        for d in raw_policy.deny_argv {
            let d = d.into_inner();
            let scope = self.scope(&d.jobs, &d.params, catalog, declared);
            let pattern = match regex::RegexBuilder::new(d.pattern.get_ref()).size_limit(1 << 20).build() {
                Ok(re) => Some(re),
                Err(e) => {
                    // The regex crate's message draws the pattern over several lines; its last
                    // line says what is wrong.
                    let text = e.to_string();
                    let what = text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ");
                    self.err(d.pattern.span(), format!("not a valid regular expression: {what}"), None);
                    None
                }
            };
            if let (Some(scope), Some(pattern)) = (scope, pattern) {
                cfg.deny_argv.push(ArgvRule {
                    name: d.name.get_ref().clone(),
                    scope,
                    pattern,
                    reason: d.reason,
                });
            }
        }
        cfg
    }

    /// The entries of a table of named things (`[roles.X]`, `[people.X]`).
    fn table_entries(
        &mut self,
        v: Option<&Spanned<DeValue<'a>>>,
        what: &str,
        example: &str,
    ) -> Vec<(Spanned<String>, Spanned<DeValue<'a>>)> {
        match v.map(|v| (v.span(), v.get_ref())) {
            None => Vec::new(),
            Some((_, DeValue::Table(t))) => t
                .iter()
                .map(|(k, v)| (Spanned::new(k.span(), k.get_ref().to_string()), v.clone()))
                .collect(),
            Some((span, _)) => {
                self.err(span, format!("`{what}` must be a table"), Some(format!("write {example} …")));
                Vec::new()
            }
        }
    }

    fn known_role(&mut self, r: &Spanned<String>, known: &[String]) -> bool {
        if known.iter().any(|k| k == r.get_ref()) {
            return true;
        }
        let hint = crate::job::closest(r.get_ref(), known.iter().map(String::as_str))
            .map(|s| format!("did you mean `{s}`?"))
            .unwrap_or_else(|| format!("roles: {}", known.join(", ")));
        self.err(r.span(), format!("there is no role `{}`", r.get_ref()), Some(hint));
        false
    }

    fn role_list(&mut self, list: &[Spanned<String>], known: &[String]) -> Vec<String> {
        list.iter()
            .filter(|r| self.known_role(r, known))
            .map(|r| r.get_ref().clone())
            .collect()
    }

    fn count(&mut self, c: &Option<Spanned<i64>>) -> u32 {
        match c {
            None => 1,
            Some(n) if (1..=MAX_APPROVERS).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.err(n.span(), format!("count must be between 1 and {MAX_APPROVERS}"), None);
                1
            }
        }
    }

    fn role(&mut self, name: &Spanned<String>, raw: RawRole, catalog: &Catalog, declared: &[String]) -> Option<RoleSpec> {
        let n = name.get_ref();
        if BUILTIN_ROLES.contains(&n.as_str()) {
            self.err(
                name.span(),
                format!("`{n}` is a built-in role and cannot be redefined"),
                Some("`guest` may read help and run nothing; `admin` may do everything. Pick another name.".into()),
            );
            return None;
        }
        if !valid_name(n, true) || n.len() > 64 {
            self.err(
                name.span(),
                format!("`{n}` is not a valid role name"),
                Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
            );
            return None;
        }
        let grant = |cx: &mut Self, g: Spanned<RawGrant>| -> Option<Grant> {
            let span = g.span();
            let at = format!("{}:{}", cx.file_name(), cx.line_of(span.start));
            let g = g.into_inner();
            let mut verbs = Vec::new();
            for v in g.verbs.get_ref().list() {
                if v == "*" {
                    verbs.extend(Verb::ALL);
                } else {
                    match v.parse::<Verb>() {
                        Ok(v) => verbs.push(v),
                        Err(msg) => cx.err(g.verbs.span(), msg, None),
                    }
                }
            }
            if verbs.is_empty() {
                cx.err(
                    g.verbs.span(),
                    "a rule needs at least one verb",
                    Some("e.g. verbs = [\"run\", \"view\"]".into()),
                );
                return None;
            }
            let scope = cx.scope(&g.jobs, &g.params, catalog, declared)?;
            let channels = g
                .channels
                .map(|c| c.get_ref().list().iter().map(|s| Glob::new(s)).collect())
                .unwrap_or_default();
            Some(Grant {
                verbs,
                scope,
                channels,
                at,
            })
        };
        let allow = raw.allow.into_iter().filter_map(|g| grant(self, g)).collect();
        let deny = raw.deny.into_iter().filter_map(|g| grant(self, g)).collect();
        Some(RoleSpec {
            name: n.clone(),
            description: raw.description,
            allow,
            deny,
        })
    }

    /// Reads a rule's jobs and parameter conditions, checking each against the catalog: a job
    /// pattern must name at least one job, a condition's parameter must belong to one of them,
    /// and a literal value must be one that parameter can take (canonical enum values).
    fn scope(
        &mut self,
        jobs: &Option<Spanned<OneOrMany>>,
        params: &BTreeMap<String, Spanned<OneOrMany>>,
        catalog: &Catalog,
        declared: &[String],
    ) -> Option<Scope> {
        let job_globs: Vec<Glob> = match jobs {
            None => vec![Glob::new("*")],
            Some(j) => j.get_ref().list().iter().map(|s| Glob::new(s)).collect(),
        };
        let mut ok = true;
        if let Some(j) = jobs {
            if job_globs.is_empty() {
                self.err(
                    j.span(),
                    "`jobs` is empty",
                    Some("list job names or globs, or leave it out for every job".into()),
                );
                ok = false;
            }
            for g in &job_globs {
                if declared.iter().any(|d| g.matches(d)) && !catalog.jobs().iter().any(|job| g.matches(&job.name)) {
                    // It names a job that failed to load: that job's own problem is reported.
                    ok = false;
                    continue;
                }
                if !catalog.jobs().iter().any(|job| g.matches(&job.name)) {
                    let hint = crate::job::closest(g.as_str(), catalog.jobs().iter().map(|j| j.name.as_str()))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "`opsbot check` lists the jobs; `*` matches every job".into());
                    self.err(j.span(), format!("`{g}` matches no job"), Some(hint));
                    ok = false;
                }
            }
        }
        let in_scope: Vec<&JobSpec> = catalog
            .jobs()
            .iter()
            .filter(|j| job_globs.iter().any(|g| g.matches(&j.name)))
            .collect();
        let mut conds = Vec::new();
        for (name, values) in params {
            let having: Vec<&&JobSpec> = in_scope.iter().filter(|j| j.param(name).is_some()).collect();
            if having.is_empty() {
                self.err(
                    values.span(),
                    format!("no job this rule names has a parameter `{name}`"),
                    Some("a condition must name a parameter of one of the rule's jobs".into()),
                );
                ok = false;
                continue;
            }
            let list = values.get_ref().list();
            if list.is_empty() {
                self.err(values.span(), format!("`{name}` lists no values"), None);
                ok = false;
                continue;
            }
            let mut globs = Vec::new();
            for v in &list {
                let g = Glob::new(v);
                if g.is_literal() {
                    // A literal value must be one some job of the rule can take.
                    let mut canonical = None;
                    let mut reasons = Vec::new();
                    for j in &having {
                        let spec = j.param(name).expect("filtered");
                        match spec.normalize(v) {
                            Ok(c) => {
                                canonical = Some(c);
                                break;
                            }
                            Err(e) => reasons.push(e.message),
                        }
                    }
                    // Kept as written: each job reads it through its own spec when a run is
                    // matched (`access::listed`), so a synonym means the same for every job.
                    match canonical {
                        Some(_) => globs.push(g),
                        None => {
                            self.err(
                                values.span(),
                                format!(
                                    "`{v}` is not a value `{name}` can take: {}",
                                    reasons.first().cloned().unwrap_or_default()
                                ),
                                None,
                            );
                            ok = false;
                        }
                    }
                } else {
                    if having
                        .iter()
                        .all(|j| matches!(j.param(name).map(|p| &p.kind), Some(ParamKind::Int { .. } | ParamKind::Bool)))
                    {
                        self.err(
                            values.span(),
                            format!("`{name}` is a number or a flag; list its values without wildcards"),
                            None,
                        );
                        ok = false;
                    }
                    globs.push(g);
                }
            }
            conds.push((name.clone(), globs));
        }
        if !ok {
            return None;
        }
        Some(Scope {
            jobs: job_globs,
            params: conds,
        })
    }

    fn freeze_window(&mut self, f: &RawFreeze, span: std::ops::Range<usize>, tz: chrono_tz::Tz) -> Option<FreezeWindow> {
        match (&f.from, &f.until, &f.cron, &f.duration) {
            (Some(from), Some(until), None, None) => {
                let a = self.instant(from, tz)?;
                let b = self.instant(until, tz)?;
                if b <= a {
                    self.err(until.span(), "`until` must be after `from`", None);
                    return None;
                }
                Some(FreezeWindow::Range { from: a, until: b })
            }
            (None, None, Some(cron), Some(_)) => {
                let parsed = match croner::Cron::from_str(cron.get_ref()) {
                    Ok(c) => c,
                    Err(e) => {
                        self.err(
                            cron.span(),
                            format!("`{}` is not a cron pattern: {e}", cron.get_ref()),
                            Some("five fields: minute hour day-of-month month day-of-week, e.g. \"0 17 * * fri\"".into()),
                        );
                        return None;
                    }
                };
                let duration = self.duration(&f.duration, Duration::from_secs(3600));
                Some(FreezeWindow::Cron {
                    cron: Box::new(parsed),
                    pattern: cron.get_ref().clone(),
                    duration,
                })
            }
            _ => {
                self.err(
                    span,
                    format!(
                        "freeze `{}` needs either `from` and `until`, or `cron` and `duration`",
                        f.name.get_ref()
                    ),
                    Some(
                        "e.g. from = \"2026-12-20 00:00\", until = \"2027-01-04 00:00\"; or cron = \"0 17 * * fri\", duration = \"63h\""
                            .into(),
                    ),
                );
                None
            }
        }
    }

    fn instant(&mut self, v: &Spanned<String>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        match parse_instant(v.get_ref(), tz) {
            Some(t) => Some(t),
            None => {
                self.err(
                    v.span(),
                    format!("`{}` is not a date and time", v.get_ref()),
                    Some("write \"YYYY-MM-DD HH:MM\" in [bot] timezone, or RFC 3339 such as \"2026-12-20T00:00:00Z\"".into()),
                );
                None
            }
        }
    }

    fn file_name(&self) -> String {
        self.file.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].matches('\n').count() + 1
    }
}

/// `platform:id` → an account.
pub fn parse_account(s: &str) -> Result<UserId, String> {
    match s.split_once(':') {
        Some((p, id)) if !p.is_empty() && !id.is_empty() && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') => {
            if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!("`{s}` has spaces or control characters; an account id never does"));
            }
            Ok(UserId::new(p, id))
        }
        _ => Err(format!("`{s}` is not an account")),
    }
}

/// `2026-12-20 00:00` (in `tz`) or RFC 3339.
pub fn parse_instant(s: &str, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return n.and_local_timezone(tz).earliest().map(|t| t.with_timezone(&Utc));
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|n| n.and_local_timezone(tz).earliest())
        .map(|t| t.with_timezone(&Utc))
}

fn weekday(s: &str) -> Option<Weekday> {
    s.trim().parse::<Weekday>().ok()
}

/// `mon-fri`, `mon,wed,fri`, `sat-sun` → days allowed, Monday first.
pub fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for part in s.split(',') {
        let part = part.trim().to_lowercase();
        match part.split_once('-') {
            Some((a, b)) => {
                let (Some(a), Some(b)) = (weekday(a), weekday(b)) else {
                    return Err(format!("`{part}` is not a range of days"));
                };
                let mut d = a;
                loop {
                    days[d.num_days_from_monday() as usize] = true;
                    if d == b {
                        break;
                    }
                    d = d.succ();
                }
            }
            None => match weekday(&part) {
                Some(d) => days[d.num_days_from_monday() as usize] = true,
                None => return Err(format!("`{part}` is not a day")),
            },
        }
    }
    Ok(days)
}

/// `09:00-18:00` → (from, until).
pub fn parse_between(s: &str) -> Result<(NaiveTime, NaiveTime), String> {
    let (a, b) = s.split_once('-').ok_or_else(|| format!("`{s}` is not a time range"))?;
    let t = |x: &str| NaiveTime::parse_from_str(x.trim(), "%H:%M").map_err(|_| format!("`{}` is not a time of day", x.trim()));
    let (a, b) = (t(a)?, t(b)?);
    if a == b {
        return Err(format!("`{s}` is an empty range"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(Glob::new("deploy*").matches("deploy-web"));
        assert!(!Glob::new("deploy").matches("deploy-web"));
        assert!(Glob::new("db-?").matches("db-1"));
        assert!(!Glob::new("a.b").matches("axb"), "dots are literal");
        assert!(Glob::new("web/dm:*").matches("web/dm:ana"));
    }

    #[test]
    fn days_and_hours() {
        assert_eq!(parse_days("mon-fri").unwrap(), [true, true, true, true, true, false, false]);
        assert_eq!(parse_days("fri-mon").unwrap(), [true, false, false, false, true, true, true]);
        assert_eq!(parse_days("sat, sun").unwrap(), [false, false, false, false, false, true, true]);
        assert!(parse_days("funday").is_err());
        assert!(parse_between("09:00-18:00").is_ok());
        assert!(parse_between("9-18").is_err());
        assert!(parse_between("10:00-10:00").is_err());
    }

    #[test]
    fn accounts() {
        assert_eq!(parse_account("slack:U024BE7LH").unwrap(), UserId::new("slack", "U024BE7LH"));
        assert_eq!(
            parse_account("matrix:@ana:example.org").unwrap(),
            UserId::new("matrix", "@ana:example.org")
        );
        assert!(parse_account("ana").is_err());
        assert!(parse_account("Slack:U1").is_err());
        assert!(parse_account("slack:U1 x").is_err());
    }

    #[test]
    fn policy_names_are_unique_and_numbers_are_values() {
        let text = r#"
[jobs.scale]
runner = { type = "exec", argv = ["true"] }
[[jobs.scale.params]]
name = "n"
type = "int"
required = true
[roles.small]
allow = [{ verbs = "run", jobs = "scale", params = { n = [1, 2, 3] } }]
[[policy.approval]]
name = "big"
params = { n = 10 }
[[policy.approval]]
name = "big"
"#;
        let err = match crate::config::Config::parse(text, std::path::Path::new("/tmp/t.toml"), Default::default()) {
            Err(crate::config::LoadError::Invalid(d)) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].message.contains("two [[policy.approval]] named `big`"), "{err:?}");
        assert_eq!(err[0].line, 14);
    }

    #[test]
    fn instants() {
        let berlin: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_instant("2026-12-20 00:00", berlin).unwrap().to_rfc3339(),
            "2026-12-19T23:00:00+00:00"
        );
        assert!(parse_instant("2026-12-20T00:00:00Z", berlin).is_some());
        assert!(parse_instant("next week", berlin).is_none());
    }
}
