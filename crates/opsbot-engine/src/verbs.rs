//! Built-in verbs about people and permissions: help and list filtered per person, `whoami`,
//! approvals (`approve`, `deny`, `approvals`), locks (`lock`, `unlock`, `locks`) and account
//! linking (`link`, `unlink`); and the checks on other people's runs.

use crate::access::{self, Known, Person};
use crate::i18n::{self, Arg, Lang};
use crate::policy::Requirement;
use crate::{Elsewhere, Engine, EngineError, Outcome, present, reply, tr};
use chrono::Utc;
use opsbot_core::config::Verb;
use opsbot_core::job::{Catalog, JobSpec};
use opsbot_core::{Button, Envelope, Execution, Params, Reply, Tone};
use opsbot_store::{AccountLink, Approval, ApprovalState, NewApproval, NewLock, Vote};
use sha2::{Digest, Sha256};

/// How long a `link` code may be used.
const LINK_CODE_TTL_MINUTES: i64 = 10;
/// Letters of a link code: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A message twice: in English for the audit record, in the person's language for the reply.
struct Said {
    audit: String,
    reply: String,
}

impl Said {
    /// The text `f` makes in English and in the current language.
    fn with(f: impl Fn(Lang) -> String) -> Self {
        Said {
            audit: f(Lang::En),
            reply: f(i18n::current()),
        }
    }

    /// Message `id` with these arguments, in both.
    fn new(id: &str, args: &[(&str, Arg)]) -> Self {
        Said::with(|lang| i18n::text(lang, id, args))
    }

    /// A text that exists only in English (a parameter's validation message, say).
    fn english(text: String) -> Self {
        Said {
            audit: text.clone(),
            reply: text,
        }
    }
}

/// An approval request's state, for people.
fn approval_state(lang: Lang, state: ApprovalState) -> String {
    let id = match state {
        ApprovalState::Pending => "approval-state-pending",
        ApprovalState::Approved => "approval-state-approved",
        ApprovalState::Denied => "approval-state-denied",
        ApprovalState::Expired => "approval-state-expired",
        ApprovalState::Withdrawn => "approval-state-withdrawn",
    };
    i18n::text(lang, id, &[])
}

impl Engine {
    /// The jobs this person may run here.
    fn runnable(&self, env: &Envelope, person: &Person) -> Vec<JobSpec> {
        self.catalog
            .jobs()
            .iter()
            .filter(|j| access::may_run_some(&self.access, person, j, &env.place))
            .cloned()
            .collect()
    }

    pub(crate) fn help_for(&self, env: &Envelope, person: &Person) -> Reply {
        let jobs = self.runnable(env, person);
        let none = jobs.is_empty();
        let r = present::help(&Catalog::new(jobs), &self.bot.name);
        if none { r.para(nothing_runnable(person)) } else { r }
    }

    pub(crate) fn list_for(&self, env: &Envelope, person: &Person) -> Reply {
        let jobs = self.runnable(env, person);
        if jobs.is_empty() {
            return Reply::text(Tone::Info, nothing_runnable(person));
        }
        present::list(&Catalog::new(jobs))
    }

    pub(crate) async fn whoami(&self, env: &Envelope, person: &Person) -> Result<Outcome, EngineError> {
        let who = match (&person.known, &person.key) {
            (Known::Listed, Some(k)) => tr!("whoami-listed", name = &person.name, key = k),
            (Known::Linked, Some(k)) => tr!("whoami-linked", name = &person.name, key = k),
            (Known::Local, _) => tr!("whoami-local", name = &person.name),
            _ => tr!("whoami-unknown", name = &person.name),
        };
        let direct = if env.direct { tr!("whoami-here-direct") } else { String::new() };
        let mut fields = vec![
            (tr!("field-you"), who),
            (tr!("field-account"), person.account.to_string()),
            (tr!("field-here"), format!("{}{direct}", env.place)),
            (tr!("field-roles"), person.roles.join(", ")),
        ];
        if let Some(k) = &person.key {
            let mut accounts: Vec<String> = self
                .access
                .person(k)
                .map(|p| p.accounts.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default();
            for l in self.store.account_links(Some(k)).await? {
                accounts.push(tr!("whoami-linked-account", account = l.account.to_string()));
            }
            fields.push((tr!("field-accounts"), accounts.join(", ")));
        }
        let mut r = Reply::new(Tone::Info).fields(fields);
        let grants = access::describe_roles_in(&self.access, person, i18n::current());
        if !grants.is_empty() {
            r = r.para(tr!("whoami-grants")).code(grants.join("\n"));
        }
        Ok(reply(r))
    }

    /// Whether `account` belongs to `person` (the same account, or another account of theirs).
    async fn same_person(&self, account: &opsbot_core::UserId, person: &Person) -> Result<bool, EngineError> {
        if *account == person.account {
            return Ok(true);
        }
        let Some(key) = &person.key else { return Ok(false) };
        Ok(self.identify(account, None).await?.key.as_deref() == Some(key))
    }

    /// Whether `person` asked for this run (from this or another of their accounts).
    async fn is_own(&self, person: &Person, e: &Execution) -> Result<bool, EngineError> {
        self.same_person(&e.requested_by, person).await
    }

    /// Whether `person` may see this run (status, log, listings) from `place`: their own runs
    /// always, others' with the `view` verb on its job and values.
    pub async fn may_view(&self, place: &opsbot_core::Place, person: &Person, e: &Execution) -> Result<bool, EngineError> {
        // The rules first: they need no store read, and listings ask this for every row.
        Ok(self.decide_on_run(Verb::View, place, person, e).allowed() || self.is_own(person, e).await?)
    }

    /// May `person` `verb` someone's run `e` (whoever asked for it)? A run of a job that left
    /// the config cannot be judged by its values: only people who may do it to every job may.
    fn decide_on_run(&self, verb: Verb, place: &opsbot_core::Place, person: &Person, e: &Execution) -> access::Decision {
        match self.catalog.get(&e.job) {
            Some(job) => access::decide(&self.access, person, verb, job, Some(&e.params), place),
            None if self.may_everywhere(verb, place, person) => access::Decision::Allowed(format!("{verb} on every job")),
            None => access::Decision::Denied {
                why: access::Localized::message("access-job-gone", &[("job", (&e.job).into())]),
                would_pass: Some(access::Localized::message(
                    "access-job-gone-pass",
                    &[("verb", verb.as_str().into())],
                )),
            },
        }
    }

    /// Whether `person` may view every run of every job from `place` (no listing needs
    /// filtering for them, and they may read the audit trail).
    pub fn views_everything(&self, place: &opsbot_core::Place, person: &Person) -> bool {
        self.may_everywhere(Verb::View, place, person)
    }

    /// Whether `person` may `verb` on every job from `place`, whatever the values: an allow
    /// rule without conditions for each job, and no deny rule for the verb.
    fn may_everywhere(&self, verb: Verb, place: &opsbot_core::Place, person: &Person) -> bool {
        let roles: Vec<&opsbot_core::config::RoleSpec> = person.roles.iter().filter_map(|r| self.access.role(r)).collect();
        if roles.iter().any(|r| r.deny.iter().any(|g| g.verbs.contains(&verb))) {
            return false;
        }
        self.catalog.jobs().iter().all(|j| {
            roles.iter().any(|r| {
                r.allow.iter().any(|g| {
                    g.verbs.contains(&verb)
                        && g.scope.has_job(&j.name)
                        && g.scope.params.iter().all(|(name, _)| j.param(name).is_none())
                        && access::in_place(&g.channels, place)
                })
            })
        })
    }

    /// Whether `person` may see an approval request: they asked for it, or may approve or view
    /// runs of its job with its values.
    pub fn may_see_approval(&self, place: &opsbot_core::Place, person: &Person, a: &Approval) -> bool {
        if person.same_as(&a.requester_person, &a.requested_by) {
            return true;
        }
        self.catalog.get(&a.job).is_some_and(|j| {
            [Verb::Approve, Verb::View]
                .into_iter()
                .any(|v| access::decide(&self.access, person, v, j, Some(&a.params), place).allowed())
        })
    }

    /// Whether `person` may run `job` (with some values) from `place`.
    pub fn may_run(&self, place: &opsbot_core::Place, person: &Person, job: &JobSpec) -> bool {
        access::may_run_some(&self.access, person, job, place)
    }

    /// Refuses (audited) unless the person asked for this run or may `verb` runs of its job.
    pub(crate) async fn may_touch(
        &self,
        env: &Envelope,
        person: &Person,
        e: &Execution,
        verb: Verb,
    ) -> Result<Option<Outcome>, EngineError> {
        let d = self.decide_on_run(verb, &env.place, person, e);
        if d.allowed() || self.is_own(person, e).await? {
            return Ok(None);
        }
        let why = Said::with(|lang| {
            i18n::text(
                lang,
                "touch-not-yours",
                &[
                    ("id", e.id.into()),
                    ("who", (&e.requester_name).into()),
                    ("job", (&e.job).into()),
                    ("explain", d.explain_in(lang).into()),
                ],
            )
        });
        self.audit(
            env,
            person,
            verb.as_str(),
            Some(&e.job),
            None,
            "refused",
            Some(why.audit),
            Some(e.id),
        )
        .await?;
        Ok(Some(Outcome {
            denied: true,
            ..reply(
                Reply::new(Tone::Error)
                    .para(tr!("touch-may-not", verb = verb.as_str(), id = e.id))
                    .para(why.reply),
            )
        }))
    }

    /// Starts the run, or — when policies ask for approvals — records an approval request and
    /// shows it here and in the `[access] notify` places.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn launch(
        &self,
        env: &Envelope,
        person: &Person,
        job: &JobSpec,
        params: Params,
        needs: Vec<Requirement>,
        override_reason: Option<String>,
        why: Option<String>,
    ) -> Result<Outcome, EngineError> {
        if needs.is_empty() {
            return self.dispatch(env, person, job, params, why).await;
        }
        let secs = needs.iter().map(|r| r.expires_secs).min().unwrap_or(3600).max(1);
        let expires_at = Utc::now() + chrono::Duration::seconds(secs.min(366 * 86400) as i64);
        let mut reason = needs.iter().map(Requirement::describe).collect::<Vec<_>>().join("; ");
        if let Some(o) = &override_reason {
            reason.push_str(&format!("; override asked: \"{}\"", opsbot_core::job::shorten(o, 200)));
        }
        let a = self
            .store
            .create_approval(&NewApproval {
                job: job.name.clone(),
                params: params.clone(),
                requested_by: env.user.clone(),
                requester_person: person.key.clone().unwrap_or_default(),
                requester_name: person.name.clone(),
                place: env.place.clone(),
                requirements: serde_json::to_value(&needs).unwrap_or_default(),
                reason: reason.clone(),
                expires_at,
            })
            .await?;
        self.audit(
            env,
            person,
            "approval",
            Some(&job.name),
            Some(&params),
            "asked",
            Some(format!("request {}: needs {reason}", a.id)),
            None,
        )
        .await?;
        let card = self.approval_card(&a, &needs);
        let elsewhere = self
            .access
            .notify
            .iter()
            .filter(|p| **p != env.place)
            .map(|p| Elsewhere {
                place: p.clone(),
                reply: card.clone(),
            })
            .collect();
        Ok(Outcome {
            replies: vec![card.para(tr!("approval-withdraw-hint", id = a.id))],
            elsewhere,
            approval: Some(a.id),
            ..Default::default()
        })
    }

    fn approval_card(&self, a: &Approval, needs: &[Requirement]) -> Reply {
        let job = self.catalog.get(&a.job);
        let mut fields = vec![
            (tr!("field-asked-by"), format!("{} ({})", a.requester_name, a.requested_by)),
            (
                tr!("field-needs"),
                needs
                    .iter()
                    .map(|r| r.describe_in(i18n::current()))
                    .collect::<Vec<_>>()
                    .join(&tr!("list-semicolon")),
            ),
            (tr!("field-expires"), present::when(a.expires_at)),
        ];
        if let Some((_, why)) = a.reason.split_once("override asked: ") {
            fields.push((tr!("field-override-asked"), why.to_string()));
        }
        if let Some(j) = job {
            // What exactly will run: the command line, with secret values hidden.
            let shown: Params = a
                .params
                .iter()
                .map(|(k, v)| {
                    let secret = j.param(k).is_some_and(|p| p.secret);
                    (k.clone(), if secret { "••••".to_string() } else { v.clone() })
                })
                .collect();
            let argv = self.render_argv(j, &shown, &a.requested_by.to_string());
            if !argv.is_empty() {
                fields.push((
                    tr!("field-command"),
                    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" ")),
                ));
            }
        }
        Reply::new(Tone::Warning)
            .status(
                Tone::Warning,
                tr!("approval-status", id = a.id, state = approval_state(i18n::current(), a.state)),
            )
            .para(tr!("approval-waits"))
            .code(present::describe_run(job, &a.job, &a.params))
            .fields(fields)
            .para(tr!("approval-approvers", id = a.id))
            .buttons(vec![
                Button {
                    label: tr!("button-approve"),
                    command: format!("approve {}", a.id),
                    tone: Tone::Success,
                },
                Button {
                    label: tr!("button-deny"),
                    command: format!("deny {}", a.id),
                    tone: Tone::Error,
                },
            ])
    }

    /// Refuses a lock, unlock or unlink: audited with the job and values it was about.
    #[allow(clippy::too_many_arguments)]
    async fn refuse_admin(
        &self,
        env: &Envelope,
        person: &Person,
        action: &str,
        job: Option<&str>,
        params: &Params,
        subject: &str,
        d: &access::Decision,
    ) -> Result<Outcome, EngineError> {
        let why = d.explain();
        let told = d.explain_in(i18n::current());
        let shown = (!params.is_empty()).then_some(params);
        self.audit(env, person, action, job, shown, "refused", Some(format!("{subject}: {why}")), None)
            .await?;
        Ok(Outcome {
            denied: true,
            ..reply(
                Reply::new(Tone::Error)
                    .para(tr!("admin-not-allowed", action = action, subject = subject))
                    .para(told),
            )
        })
    }

    /// Audits a refused vote and says why.
    async fn refuse_vote(&self, env: &Envelope, person: &Person, a: &Approval, verb: &str, why: Said) -> Result<Outcome, EngineError> {
        let audit = Some(format!("request {}: {}", a.id, why.audit));
        self.audit(env, person, verb, Some(&a.job), None, "refused", audit, a.execution_id)
            .await?;
        Ok(Outcome {
            denied: true,
            ..reply(Reply::text(Tone::Error, why.reply))
        })
    }

    /// `approve ID` / `deny ID [reason]`.
    pub(crate) async fn vote(
        &self,
        env: &Envelope,
        person: &Person,
        id: i64,
        approve: bool,
        reason: Option<String>,
    ) -> Result<Outcome, EngineError> {
        let verb = if approve { "approve" } else { "deny" };
        let Some(a) = self.store.approval(id).await? else {
            return self
                .refused(
                    env,
                    person,
                    verb,
                    None,
                    format!("no approval request {id}"),
                    Reply::text(Tone::Warning, tr!("vote-no-request", id = id)),
                )
                .await;
        };
        if a.state != ApprovalState::Pending {
            let why = Said::with(|lang| {
                let state = approval_state(lang, a.state);
                match a.decision_note.as_deref() {
                    Some(note) => i18n::text(
                        lang,
                        "vote-already-decided-note",
                        &[("id", id.into()), ("state", state.into()), ("note", note.into())],
                    ),
                    None => i18n::text(lang, "vote-already-decided", &[("id", id.into()), ("state", state.into())]),
                }
            });
            return self.refuse_vote(env, person, &a, verb, why).await;
        }
        if a.expires_at <= Utc::now() {
            if self
                .store
                .decide_approval(id, ApprovalState::Expired, Some("expired before enough approvals"))
                .await?
            {
                self.audit(
                    env,
                    person,
                    "approval",
                    Some(&a.job),
                    None,
                    "expired",
                    Some(format!("request {id} expired")),
                    None,
                )
                .await?;
            }
            return self
                .refuse_vote(
                    env,
                    person,
                    &a,
                    verb,
                    Said::new("vote-expired", &[("id", id.into()), ("at", present::when(a.expires_at).into())]),
                )
                .await;
        }
        // Who asked, as of now: an account unknown when it asked may since be linked to a
        // person, who must not approve their own request from another account either.
        let requester = self.identify(&a.requested_by, Some(&a.requester_name)).await?;
        let is_requester = person.same_as(&a.requester_person, &a.requested_by) || (requester.key.is_some() && requester.key == person.key);
        if is_requester {
            if approve {
                return self
                    .refuse_vote(env, person, &a, verb, Said::new("vote-own-request", &[("id", id.into())]))
                    .await;
            }
            if self
                .store
                .decide_approval(id, ApprovalState::Withdrawn, Some("withdrawn by the requester"))
                .await?
            {
                self.audit(env, person, "approval", Some(&a.job), None, "withdrawn", reason.clone(), None)
                    .await?;
            }
            return Ok(reply(Reply::text(Tone::Info, tr!("vote-withdrawn", id = id))));
        }
        let Some(job) = self.catalog.get(&a.job) else {
            self.store
                .decide_approval(id, ApprovalState::Denied, Some("the job left the config"))
                .await?;
            return self
                .refuse_vote(
                    env,
                    person,
                    &a,
                    verb,
                    Said::new("vote-job-gone", &[("job", (&a.job).into()), ("id", id.into())]),
                )
                .await;
        };
        let d = access::decide(&self.access, person, Verb::Approve, job, Some(&a.params), &env.place);
        if !d.allowed() {
            return self
                .refuse_vote(
                    env,
                    person,
                    &a,
                    verb,
                    Said::with(|lang| i18n::text(lang, "vote-may-not", &[("id", id.into()), ("explain", d.explain_in(lang).into())])),
                )
                .await;
        }
        let needs: Vec<Requirement> = serde_json::from_value(a.requirements.clone()).unwrap_or_default();
        let counts_for = |roles: &[String], r: &Requirement| r.approvers.is_empty() || r.approvers.iter().any(|x| roles.contains(x));
        if !needs.iter().any(|r| counts_for(&person.roles, r)) {
            let wanted: Vec<String> = needs.iter().flat_map(|r| r.approvers.iter().map(|x| format!("`{x}`"))).collect();
            return self
                .refuse_vote(
                    env,
                    person,
                    &a,
                    verb,
                    Said::with(|lang| {
                        let or = i18n::text(lang, "list-or", &[]);
                        i18n::text(
                            lang,
                            "vote-wrong-roles",
                            &[
                                ("id", id.into()),
                                ("wanted", wanted.join(&or).into()),
                                ("roles", person.roles.join(", ").into()),
                            ],
                        )
                    }),
                )
                .await;
        }
        let cast = self
            .store
            .add_vote(&Vote {
                approval_id: id,
                voter: person.account.clone(),
                voter_person: person.key.clone().unwrap_or_default(),
                voter_name: person.name.clone(),
                approve,
                reason: reason.clone(),
                at: Utc::now(),
            })
            .await?;
        if !cast {
            return self
                .refuse_vote(env, person, &a, verb, Said::new("vote-already-voted", &[("id", id.into())]))
                .await;
        }
        self.audit(
            env,
            person,
            verb,
            Some(&a.job),
            None,
            "voted",
            Some(format!(
                "request {id}{}",
                reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            )),
            None,
        )
        .await?;
        let requester_env = Envelope {
            user: a.requested_by.clone(),
            place: a.place.clone(),
            ..env.clone()
        };
        if !approve {
            let note = format!(
                "denied by {}{}",
                person.name,
                reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default()
            );
            if !self.store.decide_approval(id, ApprovalState::Denied, Some(&note)).await? {
                return Ok(reply(Reply::text(Tone::Info, tr!("vote-decided-meanwhile", id = id))));
            }
            self.audit(
                &requester_env,
                &requester,
                "approval",
                Some(&a.job),
                None,
                "denied",
                Some(note.clone()),
                None,
            )
            .await?;
            let told = match &reason {
                Some(r) => tr!("vote-denied-reason", id = id, job = &a.job, name = &person.name, reason = r),
                None => tr!("vote-denied", id = id, job = &a.job, name = &person.name),
            };
            let text = Reply::text(Tone::Warning, told);
            return Ok(self.tell_both(env, &a, text));
        }
        // Enough approvals? Each requirement counts different people holding one of its roles.
        let votes = self.store.votes(id).await?;
        // The people who approved, as of now: one count per person (votes cast from two accounts
        // linked to one person since count once), never the requester.
        let mut approvers: Vec<Person> = Vec::new();
        for v in votes.iter().filter(|v| v.approve) {
            let voter = self.identify(&v.voter, None).await?;
            let same_as_requester = requester.key.is_some() && voter.key == requester.key || voter.account == a.requested_by;
            if !same_as_requester && !approvers.iter().any(|p| p.id() == voter.id()) {
                approvers.push(voter);
            }
        }
        let mut missing = Vec::new();
        for r in &needs {
            let got = approvers.iter().filter(|p| counts_for(&p.roles, r)).count() as u32;
            if got < r.count {
                missing.push(tr!("vote-missing-item", n = r.count - got, policy = &r.policy));
            }
        }
        if !missing.is_empty() {
            return Ok(reply(Reply::text(
                Tone::Info,
                tr!("vote-recorded", id = id, missing = missing.join(&tr!("list-semicolon"))),
            )));
        }
        // Approved. The run is the requester's: checked against the policies again (a lock or
        // a freeze may have begun meanwhile), not counted against rate limits twice. An
        // override counts only for a freeze whose override this request's approvers approved;
        // any approval the policies ask for now that the request did not record refuses it.
        let overridden = needs.iter().any(|r| r.policy.starts_with("freeze "));
        let locks = self.store.locks().await?;
        let argv = self.render_argv(job, &a.params, &a.requested_by.to_string());
        // The requester's own right to run it, too (the config may have changed meanwhile).
        let may_run = access::decide(&self.access, &requester, Verb::Run, job, Some(&a.params), &a.place);
        let allowed = if may_run.allowed() {
            Ok(())
        } else {
            Err(crate::policy::Refusal {
                policy: access::Localized::message("refused-access-rules", &[]),
                why: access::Localized::new(|lang| {
                    i18n::text(
                        lang,
                        "refused-no-longer-may",
                        &[("name", (&a.requester_name).into()), ("explain", may_run.explain_in(lang).into())],
                    )
                }),
                would_pass: access::Localized::default(),
            })
        };
        let recheck = allowed
            .and_then(|()| {
                self.policies.check(
                    &self.access,
                    job,
                    &a.params,
                    &argv,
                    &locks,
                    Utc::now(),
                    overridden.then_some("approved"),
                )
            })
            .and_then(|now| match now.into_iter().find(|n| !needs.iter().any(|r| r.policy == n.policy)) {
                None => Ok(()),
                Some(new) => Err(crate::policy::Refusal {
                    policy: access::Localized::same(new.policy.clone()),
                    why: access::Localized::message("refused-new-policy", &[]),
                    would_pass: access::Localized::message("refused-new-policy-pass", &[]),
                }),
            });
        if let Err(r) = recheck {
            let explain = r.explain();
            let note = format!("approved, but {explain}");
            if self.store.decide_approval(id, ApprovalState::Denied, Some(&note)).await? {
                self.audit(
                    &requester_env,
                    &requester,
                    "run",
                    Some(&a.job),
                    Some(&a.params),
                    "refused",
                    Some(note.clone()),
                    None,
                )
                .await?;
            }
            let told = tr!("vote-approved-but", id = id, explain = r.explain_in(i18n::current()));
            return Ok(self.tell_both(env, &a, Reply::text(Tone::Error, told)));
        }
        let approvers: Vec<String> = votes.iter().filter(|v| v.approve).map(|v| v.voter_name.clone()).collect();
        let names = approvers.join(", ");
        let note = format!("approved by {names}");
        if !self.store.decide_approval(id, ApprovalState::Approved, Some(&note)).await? {
            return Ok(reply(Reply::text(Tone::Info, tr!("vote-decided-meanwhile", id = id))));
        }
        let out = self
            .dispatch(
                &requester_env,
                &requester,
                job,
                a.params.clone(),
                Some(format!("request {id} {note}")),
            )
            .await?;
        if let Some(exec) = out.queued {
            self.store.set_approval_execution(id, exec).await?;
        }
        let card = out.replies.into_iter().next().unwrap_or_else(|| Reply::new(Tone::Info));
        if env.place == a.place {
            return Ok(Outcome {
                replies: vec![Reply::text(Tone::Success, tr!("vote-approved", id = id, names = &names)), card],
                queued: out.queued,
                ..Default::default()
            });
        }
        Ok(Outcome {
            replies: vec![Reply::text(
                Tone::Success,
                tr!(
                    "vote-approved-started",
                    id = id,
                    names = &names,
                    run = out.queued.map(|i| i.to_string()).unwrap_or_default(),
                    requester = &a.requester_name
                ),
            )],
            elsewhere: vec![Elsewhere {
                place: a.place.clone(),
                reply: card,
            }],
            queued: out.queued,
            ..Default::default()
        })
    }

    /// A reply here, and the same in the requester's conversation when that is elsewhere.
    fn tell_both(&self, env: &Envelope, a: &Approval, r: Reply) -> Outcome {
        let elsewhere = if env.place == a.place {
            Vec::new()
        } else {
            vec![Elsewhere {
                place: a.place.clone(),
                reply: r.clone(),
            }]
        };
        Outcome {
            replies: vec![r],
            elsewhere,
            ..Default::default()
        }
    }

    /// `approvals`: open requests this person asked for or may vote on.
    pub(crate) async fn approvals(&self, env: &Envelope, person: &Person) -> Result<Outcome, EngineError> {
        let now = Utc::now();
        let mut rows = Vec::new();
        for a in self.store.approvals(true, 100).await? {
            if a.expires_at <= now {
                // Lapsed: close it now (audited once, by whoever closes it).
                if self
                    .store
                    .decide_approval(a.id, ApprovalState::Expired, Some("expired before enough approvals"))
                    .await?
                {
                    self.audit(
                        env,
                        person,
                        "approval",
                        Some(&a.job),
                        None,
                        "expired",
                        Some(format!("request {} expired", a.id)),
                        None,
                    )
                    .await?;
                }
                continue;
            }
            let mine = person.same_as(&a.requester_person, &a.requested_by);
            let may = self
                .catalog
                .get(&a.job)
                .is_some_and(|j| access::decide(&self.access, person, Verb::Approve, j, Some(&a.params), &env.place).allowed());
            if !mine && !may {
                continue;
            }
            let needs: Vec<Requirement> = serde_json::from_value(a.requirements.clone()).unwrap_or_default();
            rows.push(vec![
                a.id.to_string(),
                present::describe_run(self.catalog.get(&a.job), &a.job, &a.params),
                a.requester_name.clone(),
                needs
                    .iter()
                    .map(|r| r.describe_in(i18n::current()))
                    .collect::<Vec<_>>()
                    .join(&tr!("list-semicolon")),
                present::when(a.expires_at),
            ]);
        }
        if rows.is_empty() {
            return Ok(reply(Reply::text(Tone::Info, tr!("approvals-none"))));
        }
        Ok(reply(Reply::new(Tone::Info).heading(tr!("approvals-heading")).table(
            vec![
                tr!("header-id"),
                tr!("header-run"),
                tr!("header-asked-by"),
                tr!("header-needs"),
                tr!("header-expires"),
            ],
            rows,
        )))
    }

    /// Canonical lock params: each value through the parameter's spec of the job (or of the
    /// first job that has that parameter and accepts the value, for a lock on every job).
    fn lock_scope(&self, job: Option<&str>, pairs: Vec<(String, String)>) -> Result<(Option<String>, Params), Said> {
        let job = match job {
            Some(j) => Some(
                self.catalog
                    .get(j)
                    .ok_or_else(|| Said::new("lock-no-job", &[("job", opsbot_core::job::shorten(j, 40).into())]))?,
            ),
            None => None,
        };
        let mut params = Params::new();
        for (k, v) in pairs {
            let candidates: Vec<&JobSpec> = match job {
                Some(j) => vec![j],
                None => self.catalog.jobs().iter().collect(),
            };
            let mut found = None;
            let mut problem = None;
            for j in candidates {
                if let Some(spec) = j.param(&k) {
                    if spec.secret {
                        // A lock's scope is shown to everyone it stops; a secret has no place there.
                        return Err(Said::new("lock-secret", &[("param", (&spec.name).into())]));
                    }
                    match spec.normalize(&v) {
                        Ok(c) => {
                            found = Some((spec.name.clone(), c));
                            break;
                        }
                        Err(e) => problem = Some(e.message),
                    }
                }
            }
            match (found, problem) {
                (Some((name, value)), _) => {
                    params.insert(name, value);
                }
                (None, Some(p)) => return Err(Said::english(p)),
                (None, None) => {
                    return Err(Said::new("lock-no-param", &[("param", opsbot_core::job::shorten(&k, 40).into())]));
                }
            }
        }
        Ok((job.map(|j| j.name.clone()), params))
    }

    /// Whether `person` may administer every job the lock covers.
    fn may_admin(&self, env: &Envelope, person: &Person, job: Option<&str>, params: &Params) -> access::Decision {
        let jobs: Vec<&JobSpec> = match job {
            Some(j) => self.catalog.get(j).into_iter().collect(),
            None => self.catalog.jobs().iter().collect(),
        };
        for j in jobs {
            let d = access::decide(&self.access, person, Verb::Admin, j, Some(params), &env.place);
            if !d.allowed() {
                return d;
            }
        }
        access::Decision::Allowed("admin on every job it covers".into())
    }

    pub(crate) async fn lock(
        &self,
        env: &Envelope,
        person: &Person,
        job: Option<String>,
        pairs: Vec<(String, String)>,
        reason: Option<String>,
    ) -> Result<Outcome, EngineError> {
        let (job, params) = match self.lock_scope(job.as_deref(), pairs) {
            Ok(s) => s,
            Err(msg) => {
                let tell = Reply::text(Tone::Error, tr!("lock-nothing-locked", msg = msg.reply));
                return self.refused(env, person, "lock", None, msg.audit, tell).await;
            }
        };
        let scope = opsbot_store::Lock::scope_of(job.as_deref(), &params);
        let Some(reason) = reason.filter(|r| !r.trim().is_empty()) else {
            let tell = Reply::text(Tone::Error, tr!("lock-needs-reason", scope = &scope));
            return self
                .refused(env, person, "lock", job.as_deref(), format!("{scope}: no reason given"), tell)
                .await;
        };
        let d = self.may_admin(env, person, job.as_deref(), &params);
        if !d.allowed() {
            return self.refuse_admin(env, person, "lock", job.as_deref(), &params, &scope, &d).await;
        }
        let taken = self
            .store
            .put_lock(&NewLock {
                job: job.clone(),
                params,
                reason: reason.clone(),
                by: person.account.clone(),
                by_name: person.name.clone(),
            })
            .await?;
        match taken {
            Ok(l) => {
                self.audit(
                    env,
                    person,
                    "lock",
                    job.as_deref(),
                    Some(&l.params),
                    "accepted",
                    Some(format!("{scope}: {reason}")),
                    None,
                )
                .await?;
                Ok(reply(Reply::text(Tone::Warning, tr!("lock-done", scope = &scope))))
            }
            Err(existing) => Ok(reply(Reply::text(
                Tone::Info,
                tr!(
                    "lock-already",
                    scope = &scope,
                    by = &existing.by_name,
                    since = present::when(existing.at),
                    reason = &existing.reason
                ),
            ))),
        }
    }

    pub(crate) async fn unlock(
        &self,
        env: &Envelope,
        person: &Person,
        job: Option<String>,
        pairs: Vec<(String, String)>,
    ) -> Result<Outcome, EngineError> {
        let (job, params) = match self.lock_scope(job.as_deref(), pairs) {
            Ok(s) => s,
            Err(msg) => {
                return self
                    .refused(env, person, "unlock", None, msg.audit, Reply::text(Tone::Error, msg.reply))
                    .await;
            }
        };
        let scope = opsbot_store::Lock::scope_of(job.as_deref(), &params);
        let Some(lock) = self.store.locks().await?.into_iter().find(|l| l.scope == scope) else {
            let tell = Reply::text(Tone::Info, tr!("unlock-not-locked", scope = &scope));
            return self
                .refused(env, person, "unlock", job.as_deref(), format!("{scope} is not locked"), tell)
                .await;
        };
        if !self.same_person(&lock.by, person).await? {
            let d = self.may_admin(env, person, job.as_deref(), &params);
            if !d.allowed() {
                return self.refuse_admin(env, person, "unlock", job.as_deref(), &params, &scope, &d).await;
            }
        }
        if self.store.delete_lock(&scope).await?.is_some() {
            self.audit(
                env,
                person,
                "unlock",
                job.as_deref(),
                Some(&params),
                "accepted",
                Some(scope.clone()),
                None,
            )
            .await?;
        }
        Ok(reply(Reply::text(Tone::Success, tr!("unlock-done", scope = &scope))))
    }

    pub(crate) async fn locks(&self, env: &Envelope, person: &Person) -> Result<Outcome, EngineError> {
        // Locks tell who stopped what and why: for people who may see some runs, not for guests.
        let sees_some = self.catalog.jobs().iter().any(|j| {
            access::decide(&self.access, person, Verb::View, j, None, &env.place).allowed() || self.may_run(&env.place, person, j)
        });
        if !sees_some {
            let tell = Reply::text(Tone::Warning, tr!("locks-for-viewers"));
            let out = self
                .refused(env, person, "locks", None, "may neither run nor view any job".into(), tell)
                .await?;
            return Ok(Outcome { denied: true, ..out });
        }
        let locks = self.store.locks().await?;
        if locks.is_empty() {
            return Ok(reply(Reply::text(Tone::Info, tr!("lock-none"))));
        }
        let rows = locks
            .iter()
            .map(|l| vec![l.scope.clone(), l.by_name.clone(), present::when(l.at), l.reason.clone()])
            .collect();
        Ok(reply(Reply::new(Tone::Info).heading(tr!("locks-heading")).table(
            vec![
                tr!("header-scope"),
                tr!("header-locked-by"),
                tr!("header-since"),
                tr!("header-reason"),
            ],
            rows,
        )))
    }

    /// `link`: a one-time code for an account I don't know (in a direct message only);
    /// `link CODE` from an account I know ties that account to the same person.
    pub(crate) async fn link(&self, env: &Envelope, person: &Person, code: Option<String>) -> Result<Outcome, EngineError> {
        if !self.access.self_link {
            self.audit(
                env,
                person,
                "link",
                None,
                None,
                "refused",
                Some("linking is turned off ([access] self_link = false)".into()),
                None,
            )
            .await?;
            return Ok(reply(Reply::text(Tone::Info, tr!("link-turned-off"))));
        }
        match code {
            None => {
                if let (Known::Listed | Known::Linked, Some(k)) = (&person.known, &person.key) {
                    return Ok(reply(Reply::text(
                        Tone::Info,
                        tr!("link-already-yours", name = &person.name, key = k),
                    )));
                }
                if !env.direct {
                    return self
                        .refused(
                            env,
                            person,
                            "link",
                            None,
                            "asked for a link code outside a direct message".into(),
                            Reply::text(Tone::Warning, tr!("link-direct-only")),
                        )
                        .await;
                }
                let code = new_code();
                let expires = Utc::now() + chrono::Duration::minutes(LINK_CODE_TTL_MINUTES);
                self.store.create_link_code(&sha256_hex(&code), &env.user, expires).await?;
                self.audit(env, person, "link", None, None, "asked", Some("link code issued".into()), None)
                    .await?;
                Ok(reply(
                    Reply::new(Tone::Info)
                        .para(tr!(
                            "link-code-intro",
                            account = env.user.to_string(),
                            minutes = LINK_CODE_TTL_MINUTES
                        ))
                        .code(format!("link {code}"))
                        .para(tr!("link-code-once")),
                ))
            }
            Some(code) => {
                let Some(key) = person.key.clone() else {
                    return self
                        .refused(
                            env,
                            person,
                            "link",
                            None,
                            "link code sent from an account no person owns".into(),
                            Reply::text(Tone::Warning, tr!("link-from-known")),
                        )
                        .await;
                };
                let normalized: String = code
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .collect::<String>()
                    .to_uppercase();
                let taken = self.store.take_link_code(&sha256_hex(&normalized)).await?;
                let Some((account, _)) = taken.filter(|(_, e)| *e > Utc::now()) else {
                    return self
                        .refused(
                            env,
                            person,
                            "link",
                            None,
                            "unknown or expired link code".into(),
                            Reply::text(Tone::Error, tr!("link-code-bad")),
                        )
                        .await;
                };
                if self.access.person_with_account(&account).is_some() {
                    return self
                        .refused(
                            env,
                            person,
                            "link",
                            None,
                            format!("{account} is listed in the config"),
                            Reply::text(Tone::Warning, tr!("link-listed", account = account.to_string())),
                        )
                        .await;
                }
                self.store
                    .link_account(&AccountLink {
                        account: account.clone(),
                        person: key.clone(),
                        linked_by: env.user.clone(),
                        at: Utc::now(),
                    })
                    .await?;
                self.audit(
                    env,
                    person,
                    "link",
                    None,
                    None,
                    "accepted",
                    Some(format!("{account} linked to person {key}")),
                    None,
                )
                .await?;
                Ok(reply(Reply::text(
                    Tone::Success,
                    tr!(
                        "link-done",
                        account = account.to_string(),
                        name = &person.name,
                        roles = person.roles.join(", ")
                    ),
                )))
            }
        }
    }

    /// A refusal of `action` (on `job`, if it names one): audited with `why`, answered with `tell`.
    async fn refused(
        &self,
        env: &Envelope,
        person: &Person,
        action: &str,
        job: Option<&str>,
        why: String,
        tell: Reply,
    ) -> Result<Outcome, EngineError> {
        self.audit(env, person, action, job, None, "refused", Some(why), None).await?;
        Ok(reply(tell))
    }

    /// `unlink PLATFORM:ID`: by the person it is linked to, or by someone with `admin` on every job.
    pub(crate) async fn unlink(&self, env: &Envelope, person: &Person, account: &str) -> Result<Outcome, EngineError> {
        let Ok(account) = opsbot_core::config::parse_account(account) else {
            return Ok(reply(Reply::text(Tone::Error, tr!("unlink-syntax"))));
        };
        let Some(owner) = self.store.linked_person(&account).await? else {
            let told = if self.access.person_with_account(&account).is_some() {
                tr!("unlink-not-linked-listed", account = account.to_string())
            } else {
                tr!("unlink-not-linked", account = account.to_string())
            };
            return Ok(reply(Reply::text(Tone::Info, told)));
        };
        if person.key.as_deref() != Some(owner.as_str()) {
            let d = self.may_admin(env, person, None, &Params::new());
            if !d.allowed() {
                return self
                    .refuse_admin(env, person, "unlink", None, &Params::new(), &account.to_string(), &d)
                    .await;
            }
        }
        self.store.unlink_account(&account).await?;
        self.audit(
            env,
            person,
            "unlink",
            None,
            None,
            "accepted",
            Some(format!("{account} unlinked from person {owner}")),
            None,
        )
        .await?;
        Ok(reply(Reply::text(
            Tone::Success,
            tr!("unlink-done", account = account.to_string(), owner = &owner),
        )))
    }
}

fn nothing_runnable(person: &Person) -> String {
    match person.known {
        Known::Unknown => tr!("nothing-runnable-unknown", account = person.account.to_string()),
        _ => tr!("nothing-runnable-roles"),
    }
}

fn new_code() -> String {
    let mut bytes = [0u8; 10];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator is unavailable");
    bytes
        .iter()
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect()
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}
