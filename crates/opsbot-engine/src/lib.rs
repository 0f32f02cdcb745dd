//! The engine: one message in, decisions and replies out.
//!
//! Steps for a message: identify → continue a dialog → understand (explicit grammar, alias
//! templates, then the optional [`Understand`] layer) → validate → (authorize and policy: later
//! issues) → dispatch (queue in the store, audit) → reply. The engine never runs a job itself:
//! workers claim what it queues. Its [`Engine::notifier`] turns store events into replies for
//! the conversation that asked.

pub mod access;
pub mod chat;
pub mod grammar;
pub mod i18n;
pub mod policy;
pub mod present;
mod reading;
mod schedule;
pub mod understand;
mod verbs;

pub use access::{Known, Person};
use chrono::Utc;
use opsbot_core::Lang;
use opsbot_core::config::{AccessConfig, BotConfig, Verb};
use opsbot_core::job::{Catalog, JobSpec, closest};
use opsbot_core::{Command, Envelope, ExecState, Execution, ExecutionId, NewExecution, Params, Place, Reply, Tone, Understand, UserId};
use opsbot_store::{AuditRecord, CancelResult, Dialog, ExecutionFilter, Store, StoreError};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// What the engine decided for one message.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Replies for the same conversation, in order.
    pub replies: Vec<Reply>,
    /// The execution queued, if one was.
    pub queued: Option<ExecutionId>,
    /// What the engine now waits for from this person here, if anything.
    pub awaiting: Option<Awaiting>,
    /// The approval request recorded instead of a run, if one was.
    pub approval: Option<i64>,
    /// Whether a permission or a policy refused the request (as opposed to a bad value).
    pub denied: bool,
    /// Messages for other conversations: an approval request for the approvers' channels, the
    /// job card of an approved run for the requester's. The door that handled the message
    /// delivers them.
    pub elsewhere: Vec<Elsewhere>,
    /// The replies are worth nothing later (`PONG`): a chat door sends them at once instead of
    /// keeping them in its outbox until the platform takes them.
    pub ephemeral: bool,
}

/// A reply for another conversation than the one that spoke.
#[derive(Clone, Debug)]
pub struct Elsewhere {
    /// Where it goes.
    pub place: Place,
    /// What it says (`card_for` set when it is a run's job card).
    pub reply: Reply,
}

/// An open question after a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Awaiting {
    /// A value for this parameter.
    Param(String),
    /// yes/no to run a sensitive job.
    Confirmation,
}

/// A reply for a conversation other than "the one that just spoke": end-of-run reports etc.
#[derive(Clone, Debug)]
pub struct Notice {
    /// Where it goes.
    pub place: Place,
    /// What it says.
    pub reply: Reply,
    /// The execution it concerns.
    pub execution: ExecutionId,
    /// That execution's state when the notice was made.
    pub state: ExecState,
    /// Its job.
    pub job: String,
    /// Its wall time, once it has ended.
    pub duration_ms: Option<i64>,
}

/// What an open dialog made of a message.
enum DialogStep {
    /// The message answered it (or was refused as an answer); these are the replies.
    Answered(Outcome),
    /// Not an answer: handle the message as usual, after this note if there is one.
    Pass(Option<Reply>),
}

/// Errors the engine cannot turn into a reply itself.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The engine. Cheap to share behind an `Arc`; handles many conversations in parallel.
pub struct Engine {
    catalog: Arc<Catalog>,
    grammar: grammar::Grammar,
    bot: BotConfig,
    store: Arc<dyn Store>,
    nlu: Option<Arc<dyn Understand>>,
    llm: Option<Arc<opsbot_nlu::llm::Llm>>,
    /// Values the LLM provider must never see (secrets of the config).
    llm_scrub: Vec<String>,
    crons: Arc<Vec<opsbot_core::config::nlu::CronSchedule>>,
    /// The language each run was asked for in, for its card's updates (this process only).
    run_lang: std::sync::Mutex<std::collections::HashMap<ExecutionId, opsbot_core::Lang>>,
    access: Arc<AccessConfig>,
    policies: policy::Policies,
    templates: minijinja::Environment<'static>,
    /// Whether `ping` is the built-in (no job or alias of the catalog takes the word), so that
    /// it can be answered before anything is read from the store.
    ping_builtin: bool,
}

const DIALOG_PARAM: &str = "param";
const DIALOG_CONFIRM: &str = "confirm";
/// A reading the person is asked about ("Did you mean …?").
const DIALOG_SUGGEST: &str = "suggest";

impl Engine {
    /// An engine over a catalog and a store, with the default access rules (accounts of the
    /// local command line are `admin`, everyone else a `guest` who may run nothing) until
    /// [`Engine::with_access`] gives it the config's.
    pub fn new(catalog: Arc<Catalog>, bot: BotConfig, store: Arc<dyn Store>) -> Self {
        let access = AccessConfig::default();
        let grammar = grammar::Grammar::new(&catalog);
        let ping_builtin = matches!(grammar.parse("ping", &catalog), Ok(Some(Command::Ping)));
        Self {
            ping_builtin,
            grammar,
            catalog,
            bot,
            store,
            nlu: None,
            llm: None,
            llm_scrub: Vec::new(),
            crons: Arc::new(Vec::new()),
            run_lang: Default::default(),
            policies: policy::Policies::new(&access),
            access: Arc::new(access),
            templates: opsbot_core::job::template_env(),
        }
    }

    /// Uses these people, roles and policies.
    pub fn with_access(mut self, access: AccessConfig) -> Self {
        self.policies = policy::Policies::new(&access);
        self.access = Arc::new(access);
        self
    }

    /// The people, roles and policies.
    pub fn access(&self) -> &AccessConfig {
        &self.access
    }

    /// Uses this understanding layer after the grammar and aliases (natural language).
    pub fn with_understander(mut self, u: Arc<dyn Understand>) -> Self {
        self.nlu = Some(u);
        self
    }

    /// Asks this LLM provider about what the natural-language layer cannot place; `scrub` are
    /// values that must never reach it (the config's secrets). Its proposals are always shown
    /// to the person to confirm.
    pub fn with_llm(mut self, llm: Arc<opsbot_nlu::llm::Llm>, scrub: Vec<String>) -> Self {
        self.llm = Some(llm);
        self.llm_scrub = scrub;
        self
    }

    /// Starts these cron runs of the config when they are due ([`Engine::fire_due`]).
    pub fn with_crons(mut self, crons: Vec<opsbot_core::config::nlu::CronSchedule>) -> Self {
        self.crons = Arc::new(crons);
        self
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The bot's name (`[bot] name`).
    pub fn bot_name(&self) -> &str {
        &self.bot.name
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Handles one message. A store failure becomes a reply with an error id, logged with it.
    pub async fn handle(&self, env: &Envelope) -> Outcome {
        // `ping` is answered at once: no identity, dialog or language to look up, nothing
        // recorded (it is not an action), and the same answer for everyone who can reach us.
        if self.ping_builtin
            && env.button.is_none()
            && env.text.len() <= 64
            && grammar::address(env, &self.bot.name, &self.bot.prefixes).is_some_and(|t| t.trim().eq_ignore_ascii_case("ping"))
        {
            return Outcome { ephemeral: true, ..pong() };
        }
        let lang = self.language_for(env).await;
        i18n::scope(lang, self.handle_scoped(env)).await
    }

    /// The language to answer a message in: the person's setting, the bot's, the language the
    /// message is written in, the language of the question it answers, English.
    async fn language_for(&self, env: &Envelope) -> opsbot_core::Lang {
        if let Some(l) = self.access.person_with_account(&env.user).and_then(|p| p.language) {
            return l;
        }
        if let Some(l) = self.bot.language {
            return l;
        }
        let text = grammar::address(env, &self.bot.name, &self.bot.prefixes).unwrap_or(&env.text);
        // The words the person wrote, not the values they quote or give as `key=value`
        // (`!echo v="部署"` is an English command).
        let own: String = match grammar::tokenize(text) {
            Ok(toks) => toks
                .iter()
                .filter(|t| t.key.is_none() && !t.quoted)
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            Err(_) => text.to_string(),
        };
        let lower = own.trim().to_lowercase();
        // One word (a value, `yes`, `是`) or a button answers in the language of the open
        // question, if there is one.
        let answer = env.button.is_some() || !lower.contains(char::is_whitespace) || grammar::nonce_answer(&lower).is_some();
        let detected = opsbot_core::Lang::detect(&own);
        if (answer || detected.is_none())
            && let Ok(Some(d)) = self.store.dialog(&env.place, &env.user).await
            && let Some(l) = d.state.get("lang").and_then(|v| v.as_str()).and_then(opsbot_core::Lang::parse)
        {
            return l;
        }
        detected.unwrap_or_default()
    }

    async fn handle_scoped(&self, env: &Envelope) -> Outcome {
        match self.handle_inner(env).await {
            Ok(o) => o,
            Err(e) => {
                let id = error_id();
                tracing::error!(error_id = %id, error = %e, user = %env.user, "failed to handle a message");
                Outcome {
                    replies: vec![Reply::text(Tone::Error, tr!("internal-error", id = &id))],
                    ..Default::default()
                }
            }
        }
    }

    /// Who owns this account: a person listed in the config, one it was linked to, or nobody.
    pub async fn identify(&self, account: &UserId, display_name: Option<&str>) -> Result<Person, EngineError> {
        let linked = if self.access.person_with_account(account).is_some() {
            None
        } else {
            self.store.linked_person(account).await?
        };
        Ok(access::identify(&self.access, account, display_name, linked.as_deref()))
    }

    async fn handle_inner(&self, env: &Envelope) -> Result<Outcome, EngineError> {
        let person = self.identify(&env.user, env.display_name.as_deref()).await?;
        let addressed = grammar::address(env, &self.bot.name, &self.bot.prefixes);
        if env.text.len() > grammar::MAX_MESSAGE_LEN {
            // A long paste in a channel that is not for us is none of our business.
            if addressed.is_none() {
                return Ok(Outcome::default());
            }
            return Ok(reply(Reply::text(
                Tone::Error,
                tr!(
                    "message-too-long",
                    len = env.text.len(),
                    max = grammar::MAX_MESSAGE_LEN,
                    kib = grammar::MAX_MESSAGE_LEN / 1024
                ),
            )));
        }
        // A dialog answer needs no mention: the person is talking to us already.
        let mut notes = Vec::new();
        if let Some(d) = self.store.dialog(&env.place, &env.user).await? {
            let text = addressed.unwrap_or(env.text.trim());
            match self.continue_dialog(env, &person, d, text, addressed.is_some()).await? {
                DialogStep::Answered(o) => return Ok(o),
                DialogStep::Pass(note) => notes.extend(note),
            }
        }
        let Some(text) = addressed else {
            return Ok(Outcome::default());
        };
        let mut out = if text.is_empty() {
            reply(Reply::text(Tone::Info, tr!("empty-message")))
        } else {
            self.understood(env, &person, text).await?
        };
        if !notes.is_empty() {
            notes.append(&mut out.replies);
            out.replies = notes;
        }
        Ok(out)
    }

    fn unknown(&self, text: &str) -> Reply {
        let first = grammar::tokenize(text)
            .ok()
            .and_then(|t| t.into_iter().next())
            .map(|t| t.text)
            .unwrap_or_default();
        let shown = opsbot_core::job::shorten(&first, 40);
        if self.grammar.knows(&first) {
            return Reply::text(Tone::Warning, tr!("unknown-form", word = &shown));
        }
        match self.grammar.suggest(&first) {
            Some(s) => {
                // The same words with the suggestion first, as a button to press instead of retyping.
                let rest = text
                    .trim_start()
                    .split_once(char::is_whitespace)
                    .map(|(_, r)| r.trim())
                    .unwrap_or("");
                let command = if rest.is_empty() { s.clone() } else { format!("{s} {rest}") };
                let r = Reply::text(Tone::Warning, tr!("unknown-did-you-mean", word = &shown, suggestion = &s));
                // Only when its label can show the whole command and it is one line: a button
                // must never run more than it says (someone else may press it).
                if command.chars().count() <= 60 && !command.contains(['\n', '\r']) {
                    r.buttons(vec![opsbot_core::Button {
                        label: command.clone(),
                        command,
                        tone: Tone::Info,
                    }])
                } else {
                    r
                }
            }
            None => Reply::text(Tone::Warning, tr!("unknown-word", word = &shown)),
        }
    }

    async fn command(&self, env: &Envelope, person: &Person, cmd: Command) -> Result<Outcome, EngineError> {
        match cmd {
            Command::Help(None) => Ok(reply(self.help_for(env, person))),
            Command::Help(Some(topic)) => Ok(reply(match self.catalog.get(&topic) {
                Some(job) if access::may_run_some(&self.access, person, job, &env.place) => {
                    present::job_help(job, self.bot.prefixes.first().map(String::as_str).unwrap_or(""))
                }
                Some(job) => Reply::text(Tone::Warning, tr!("help-may-not-run", job = &job.name)),
                None if grammar::VERBS.contains(&topic.to_lowercase().as_str()) => self.help_for(env, person),
                None => self.unknown_job(&topic),
            })),
            Command::List => Ok(reply(self.list_for(env, person))),
            Command::Whoami => self.whoami(env, person).await,
            Command::Ping => Ok(pong()),
            Command::Yes | Command::No => Ok(reply(Reply::text(Tone::Info, tr!("nothing-waiting")))),
            Command::Status(id) => self.status(env, person, id).await,
            Command::Logs { id, all } => self.logs(env, person, id, all).await,
            Command::Cancel(id) => self.cancel(env, person, id).await,
            Command::History { job, mine, limit } => self.history(env, person, job, mine, limit).await,
            Command::Run { job, params, positional } => self.run(env, person, &job, params, positional, None).await,
            Command::Approve(id) => self.vote(env, person, id, true, None).await,
            Command::Deny { id, reason } => self.vote(env, person, id, false, reason).await,
            Command::Approvals => self.approvals(env, person).await,
            Command::Lock { job, params, reason } => self.lock(env, person, job, params, reason).await,
            Command::Unlock { job, params } => self.unlock(env, person, job, params).await,
            Command::Locks => self.locks(env, person).await,
            Command::Link(code) => self.link(env, person, code).await,
            Command::Unlink(account) => self.unlink(env, person, &account).await,
            Command::Schedules => self.schedules(env, person).await,
            Command::Unschedule(id) => self.unschedule(env, person, id).await,
        }
    }

    fn unknown_job(&self, name: &str) -> Reply {
        let shown = opsbot_core::job::shorten(name, 40);
        let names = self.catalog.jobs().iter().map(|j| j.name.as_str());
        match closest(name, names) {
            Some(s) => Reply::text(Tone::Warning, tr!("no-job-did-you-mean", job = &shown, suggestion = s)),
            None => Reply::text(Tone::Warning, tr!("no-job", job = &shown)),
        }
    }

    async fn run(
        &self,
        env: &Envelope,
        person: &Person,
        job_name: &str,
        named: Vec<(String, String)>,
        positional: Vec<String>,
        at: Option<chrono::DateTime<Utc>>,
    ) -> Result<Outcome, EngineError> {
        let Some(job) = self.catalog.get(job_name) else {
            self.audit(
                env,
                person,
                "run",
                Some(job_name),
                None,
                "refused",
                Some("no such job".into()),
                None,
            )
            .await?;
            return Ok(reply(self.unknown_job(job_name)));
        };
        // `--override "why"` asks to let the run through a change freeze (with approval).
        let mut named = named;
        let mut override_reason = None;
        if job.param("override").is_none()
            && let Some(i) = named.iter().position(|(k, _)| k == "override")
        {
            let (_, why) = named.remove(i);
            override_reason = Some(why).filter(|w| !w.trim().is_empty() && w != "true");
            if override_reason.is_none() {
                self.run_decision(env, person, &job.name, None, "refused", Some("--override without a reason".into()))
                    .await?;
                return Ok(reply(Reply::text(Tone::Error, tr!("override-needs-reason"))));
            }
        }
        let pre = access::decide(&self.access, person, Verb::Run, job, None, &env.place);
        if !pre.allowed() {
            return self.refuse(env, person, "run", &job.name, None, &pre.explanation(), None).await;
        }
        let (params, missing) = match understand::bind(job, named, positional, true) {
            Ok(b) => b,
            Err(problems) => {
                let reason = problems.join(" ");
                self.run_decision(env, person, &job.name, None, "refused", Some(reason.clone()))
                    .await?;
                let mut r = Reply::new(Tone::Error).para(tr!("cant-run", job = &job.name));
                for p in &problems {
                    r = r.para(format!("• {p}"));
                }
                return Ok(reply(r.para(tr!("cant-run-help", job = &job.name))));
            }
        };
        if !env.direct
            && let Some(reason) = secret_in_public(job, &params, &missing, Lang::En)
        {
            self.run_decision(env, person, &job.name, Some(&params), "refused", Some(reason.clone()))
                .await?;
            // The audit keeps the English reason; the person reads it in their language.
            let shown = secret_in_public(job, &params, &missing, i18n::current()).unwrap_or(reason);
            return Ok(reply(Reply::text(Tone::Error, tr!("secret-refused", reason = shown))));
        }
        self.proceed(env, person, job, params, missing, override_reason, at).await
    }

    /// Refuses a request: an audit record with the reason in English, and the reason for the
    /// person in their language.
    #[allow(clippy::too_many_arguments)]
    async fn refuse(
        &self,
        env: &Envelope,
        person: &Person,
        action: &str,
        job: &str,
        params: Option<&Params>,
        why: &access::Localized,
        execution: Option<ExecutionId>,
    ) -> Result<Outcome, EngineError> {
        self.audit(
            env,
            person,
            action,
            Some(job),
            params,
            "refused",
            Some(why.english().to_string()),
            execution,
        )
        .await?;
        let what = match (action, params) {
            ("run", Some(p)) => format!("`{}`", present::describe_run(self.catalog.get(job), job, p)),
            ("run", None) => format!("`{job}`"),
            ("schedule", _) => tr!("refuse-schedule", job = job),
            (a, _) => tr!("refuse-action", action = a, job = job),
        };
        Ok(Outcome {
            denied: true,
            ..reply(
                Reply::new(Tone::Error)
                    .para(tr!("refuse-not-allowed", what = what))
                    .para(why.get(i18n::current()).to_string()),
            )
        })
    }

    /// The last checks before a run may start or be put to approvers: the person's right to
    /// run it with these values here, then the policies; counts it against rate limits when
    /// `count` is set. Refusals are audited and become the reply.
    #[allow(clippy::too_many_arguments)]
    async fn gate(
        &self,
        env: &Envelope,
        person: &Person,
        job: &JobSpec,
        params: &Params,
        override_reason: Option<&str>,
        count: bool,
    ) -> Result<Result<Vec<policy::Requirement>, Outcome>, EngineError> {
        let d = access::decide(&self.access, person, Verb::Run, job, Some(params), &env.place);
        if !d.allowed() {
            return Ok(Err(self
                .refuse(env, person, "run", &job.name, Some(params), &d.explanation(), None)
                .await?));
        }
        // The command line is rendered only when a forbidden-pattern rule looks at this run.
        let argv = if self.access.deny_argv.iter().any(|r| access::picks(&r.scope, job, Some(params))) {
            self.render_argv(job, params, &env.user.to_string())
        } else {
            Vec::new()
        };
        let locks = self.store.locks().await?;
        let checked = self
            .policies
            .check(&self.access, job, params, &argv, &locks, Utc::now(), override_reason)
            .and_then(|needs| {
                if count {
                    self.policies.take_rate(&self.access, person, job, params)?;
                }
                Ok(needs)
            });
        match checked {
            Ok(needs) => Ok(Ok(needs)),
            Err(r) => Ok(Err(self
                .refuse(env, person, "run", &job.name, Some(params), &r.explanation(), None)
                .await?)),
        }
    }

    fn render_argv(&self, job: &JobSpec, params: &Params, requester: &str) -> Vec<String> {
        policy::render_argv(&self.templates, job, params, requester)
    }

    /// After binding: ask for what is missing, then confirm if sensitive, then dispatch.
    #[allow(clippy::too_many_arguments)]
    async fn proceed(
        &self,
        env: &Envelope,
        person: &Person,
        job: &JobSpec,
        params: Params,
        missing: Vec<String>,
        override_reason: Option<String>,
        at: Option<chrono::DateTime<Utc>>,
    ) -> Result<Outcome, EngineError> {
        let at_json = at.map(|t| t.to_rfc3339());
        if let Some(next) = missing.first() {
            let spec = job.param(next).expect("missing params are declared");
            self.open_dialog(
                env,
                DIALOG_PARAM,
                json!({ "job": job.name, "params": params, "asking": next, "override": override_reason, "at": at_json }),
                self.bot.dialog_timeout,
            )
            .await?;
            self.run_decision(env, person, &job.name, Some(&params), "asked", Some(format!("missing `{next}`")))
                .await?;
            let mut q = tr!("ask-param", param = next, job = &job.name, kind = capitalise(&spec.kind.describe()));
            if let Some(h) = &spec.help {
                q.push_str(&format!(" — {h}"));
            }
            let mut ask = Reply::new(Tone::Warning).para(q).para(tr!("ask-param-hint"));
            ask.blocks.push(opsbot_core::Block::Form(present::form(job, &params, env.direct)));
            return Ok(Outcome {
                replies: vec![ask],
                awaiting: Some(Awaiting::Param(next.clone())),
                ..Default::default()
            });
        }
        // A run for later: the policies are asked when it is due.
        let needs = if at.is_some() {
            Vec::new()
        } else {
            match self.gate(env, person, job, &params, override_reason.as_deref(), true).await? {
                Ok(needs) => needs,
                Err(refused) => return Ok(refused),
            }
        };
        if job.sensitive {
            // The Yes/No buttons carry this question's nonce, so a button of an earlier question
            // never answers this one.
            let nonce = grammar::new_nonce();
            self.open_dialog(
                env,
                DIALOG_CONFIRM,
                json!({ "job": job.name, "params": params, "override": override_reason, "nonce": nonce, "at": at_json }),
                self.bot.confirm_timeout,
            )
            .await?;
            self.run_decision(
                env,
                person,
                &job.name,
                Some(&params),
                "asked",
                Some("sensitive job: confirmation requested".into()),
            )
            .await?;
            let secs = self.bot.confirm_timeout.as_secs();
            let r = Reply::new(Tone::Warning)
                .para(tr!(
                    "confirm-sensitive",
                    job = &job.name,
                    within = present::duration(secs as i64 * 1000)
                ))
                .code(present::describe_run(Some(job), &job.name, &params))
                .para(tr!("confirm-or-no"))
                .buttons(vec![
                    opsbot_core::Button {
                        label: tr!("confirm-yes-button"),
                        command: format!("yes {nonce}"),
                        tone: Tone::Warning,
                    },
                    opsbot_core::Button {
                        label: tr!("no-button"),
                        command: format!("no {nonce}"),
                        tone: Tone::Info,
                    },
                ]);
            return Ok(Outcome {
                replies: vec![r],
                awaiting: Some(Awaiting::Confirmation),
                ..Default::default()
            });
        }
        if let Some(at) = at {
            return self.schedule_run(env, person, job, params, at).await;
        }
        self.launch(env, person, job, params, needs, override_reason, None).await
    }

    /// Opens (or replaces) this person's dialog in this place, expiring after `ttl`.
    async fn open_dialog(&self, env: &Envelope, kind: &str, state: serde_json::Value, ttl: std::time::Duration) -> Result<(), EngineError> {
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(10));
        let expires_at = Utc::now().checked_add_signed(ttl).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        let mut state = state;
        if let Some(o) = state.as_object_mut() {
            o.insert("lang".into(), json!(i18n::current().code()));
        }
        let dialog = Dialog {
            place: env.place.clone(),
            user: env.user.clone(),
            kind: kind.into(),
            state,
            expires_at,
        };
        Ok(self.store.put_dialog(&dialog).await?)
    }

    async fn dispatch(
        &self,
        env: &Envelope,
        person: &Person,
        job: &JobSpec,
        params: Params,
        reason: Option<String>,
    ) -> Result<Outcome, EngineError> {
        let e = self
            .store
            .create_execution(&NewExecution {
                job: job.name.clone(),
                params: params.clone(),
                requested_by: env.user.clone(),
                requester_name: person.name.clone(),
                place: env.place.clone(),
                max_parallel: job.concurrency,
            })
            .await?;
        self.audit(env, person, "run", Some(&job.name), Some(&params), "accepted", reason, Some(e.id))
            .await?;
        if let Ok(mut m) = self.run_lang.lock() {
            // Only this process's recent runs: a bound, not a history.
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(e.id, i18n::current());
        }
        Ok(Outcome {
            replies: vec![present::queued(&e, Some(job))],
            queued: Some(e.id),
            ..Default::default()
        })
    }

    /// Answers an open dialog, or says the message is not an answer (with a note to send first,
    /// such as "that question expired").
    async fn continue_dialog(
        &self,
        env: &Envelope,
        person: &Person,
        d: Dialog,
        text: &str,
        addressed: bool,
    ) -> Result<DialogStep, EngineError> {
        let mut lower = text.trim().to_lowercase();
        // A Yes/No button says which question it answers (`yes NONCE`): one of an earlier
        // question answers nothing, whatever is open now.
        if let Some((word, nonce)) = grammar::nonce_answer(&lower) {
            if (d.kind != DIALOG_CONFIRM && d.kind != DIALOG_SUGGEST)
                || d.state.get("nonce").and_then(|v| v.as_str()) != Some(nonce.as_str())
            {
                return Ok(DialogStep::Answered(reply(Reply::text(Tone::Warning, tr!("stale-button")))));
            }
            lower = word;
        }
        let is_yes = grammar::YES.contains(&lower.as_str());
        let is_no = grammar::NO.contains(&lower.as_str());
        let job_name = d.state.get("job").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if d.expires_at < Utc::now() {
            if self.store.delete_dialog(&env.place, &env.user).await? {
                self.run_decision(env, person, &job_name, None, "expired", Some(format!("{} dialog expired", d.kind)))
                    .await?;
            }
            let at = present::when(d.expires_at);
            let note = Reply::text(
                Tone::Warning,
                if d.kind == DIALOG_CONFIRM {
                    tr!("confirm-expired", job = &job_name, at = &at)
                } else {
                    tr!("question-expired", job = &job_name, at = &at)
                },
            );
            // A late yes/no is an answer to the expired question: say so and nothing else. Any
            // other message is handled as usual, after the note when it is meant for us.
            if (is_yes || is_no) && d.kind == DIALOG_CONFIRM {
                return Ok(DialogStep::Answered(reply(note.para(tr!("expired-start-over")))));
            }
            return Ok(DialogStep::Pass(addressed.then_some(note)));
        }
        if d.kind == DIALOG_SUGGEST {
            let line = d.state.get("command").and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let at = d
                .state
                .get("at")
                .and_then(|v| v.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc));
            if is_yes {
                if !self.store.delete_dialog(&env.place, &env.user).await? {
                    return Ok(DialogStep::Answered(reply(Reply::text(Tone::Info, tr!("already-answered")))));
                }
                return match self.grammar.parse(&line, &self.catalog) {
                    Ok(Some(cmd)) => Ok(DialogStep::Answered(self.command_at(env, person, cmd, at).await?)),
                    _ => Ok(DialogStep::Answered(reply(Reply::text(Tone::Warning, tr!("suggestion-gone"))))),
                };
            }
            // No, or anything else (a new message): the reading is dropped.
            self.store.delete_dialog(&env.place, &env.user).await?;
            if is_no {
                return Ok(DialogStep::Answered(reply(Reply::text(Tone::Info, tr!("suggestion-dropped")))));
            }
            return Ok(DialogStep::Pass(None));
        }
        let params: Params = d
            .state
            .get("params")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default();
        let override_reason = d.state.get("override").and_then(|v| v.as_str()).map(str::to_string);
        let dialog_at = d
            .state
            .get("at")
            .and_then(|v| v.as_str())
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let Some(job) = self.catalog.get(&job_name) else {
            // The job left the catalog since the question was asked (config reload).
            self.store.delete_dialog(&env.place, &env.user).await?;
            return Ok(DialogStep::Answered(reply(Reply::text(
                Tone::Warning,
                tr!("dialog-job-gone", job = &job_name),
            ))));
        };
        // Built-in commands (`status 3`, `cancel 3`, `help`, …) are handled as such; the
        // question stays open. (Quote a value to give one of these words as the answer.)
        if matches!(
            self.grammar.parse(text, &self.catalog),
            Ok(Some(
                Command::Status(_)
                    | Command::Cancel(_)
                    | Command::Logs { .. }
                    | Command::Help(_)
                    | Command::List
                    | Command::History { .. }
                    | Command::Whoami
                    | Command::Ping
                    | Command::Approve(_)
                    | Command::Deny { .. }
                    | Command::Approvals
                    | Command::Locks
            ))
        ) {
            return Ok(DialogStep::Pass(None));
        }
        // Of two concurrent answers (a double click on "Yes"), only the one that closes the
        // dialog acts on it.
        if d.kind == DIALOG_CONFIRM {
            if is_yes {
                if !self.store.delete_dialog(&env.place, &env.user).await? {
                    return Ok(DialogStep::Answered(reply(Reply::text(Tone::Info, tr!("already-answered")))));
                }
                self.run_decision(env, person, &job.name, Some(&params), "confirmed", None).await?;
                if let Some(at) = dialog_at {
                    return Ok(DialogStep::Answered(self.schedule_run(env, person, job, params, at).await?));
                }
                // Policies again: a lock or a freeze may have begun while the question was open.
                let needs = match self.gate(env, person, job, &params, override_reason.as_deref(), false).await? {
                    Ok(needs) => needs,
                    Err(refused) => return Ok(DialogStep::Answered(refused)),
                };
                let o = self
                    .launch(
                        env,
                        person,
                        job,
                        params,
                        needs,
                        override_reason,
                        Some("confirmed by the requester".into()),
                    )
                    .await?;
                return Ok(DialogStep::Answered(o));
            }
            if is_no {
                if self.store.delete_dialog(&env.place, &env.user).await? {
                    self.run_decision(env, person, &job.name, Some(&params), "abandoned", Some("requester said no".into()))
                        .await?;
                }
                return Ok(DialogStep::Answered(reply(Reply::text(
                    Tone::Info,
                    tr!("confirm-declined", job = &job.name),
                ))));
            }
            // Anything else is a new message; the confirmation stays open until it expires.
            return Ok(DialogStep::Pass(None));
        }
        let asking = d.state.get("asking").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        // A button or a submitted form is a command of its own (`deploy env=prod …` from the
        // question's form), never the answer to the open question: it replaces the question.
        if env.button.is_some() {
            if self.store.delete_dialog(&env.place, &env.user).await? {
                self.run_decision(
                    env,
                    person,
                    &job.name,
                    Some(&params),
                    "abandoned",
                    Some(format!("replaced by a button or form while asked for `{asking}`")),
                )
                .await?;
            }
            return Ok(DialogStep::Pass(None));
        }
        let Some(spec) = job.param(&asking) else {
            self.store.delete_dialog(&env.place, &env.user).await?;
            return Ok(DialogStep::Answered(reply(Reply::text(
                Tone::Warning,
                tr!("dialog-job-changed", job = &job.name),
            ))));
        };
        let answer = grammar::tokenize(text)
            .ok()
            .filter(|t| t.len() == 1)
            .map(|t| t[0].text.clone())
            .unwrap_or_else(|| text.trim().to_string());
        let fits = spec.normalize(&answer);
        // `cancel` always abandons; `no` only when it is not itself a valid answer (a bool).
        if grammar::ABANDON.contains(&lower.as_str()) || (is_no && fits.is_err()) {
            if self.store.delete_dialog(&env.place, &env.user).await? {
                self.run_decision(
                    env,
                    person,
                    &job.name,
                    Some(&params),
                    "abandoned",
                    Some(format!("requester cancelled while asked for `{asking}`")),
                )
                .await?;
            }
            return Ok(DialogStep::Answered(reply(Reply::text(
                Tone::Info,
                tr!("param-dropped", job = &job.name),
            ))));
        }
        // In a channel, an un-addressed message answers only when it fits a typed
        // parameter; free text (and anything that does not fit) is chatter.
        let free_text = matches!(spec.kind, opsbot_core::ParamKind::String { pattern: None });
        if !addressed && !env.direct && (free_text || fits.is_err()) {
            return Ok(DialogStep::Pass(None));
        }
        match fits {
            Ok(v) => {
                if !self.store.delete_dialog(&env.place, &env.user).await? {
                    return Ok(DialogStep::Answered(reply(Reply::text(Tone::Info, tr!("already-answered")))));
                }
                let mut params = params;
                params.insert(spec.name.clone(), v);
                let missing: Vec<String> = job
                    .params
                    .iter()
                    .filter(|p| p.required && !params.contains_key(&p.name))
                    .map(|p| p.name.clone())
                    .collect();
                Ok(DialogStep::Answered(
                    self.proceed(env, person, job, params, missing, override_reason, dialog_at).await?,
                ))
            }
            Err(e) => Ok(DialogStep::Answered(Outcome {
                replies: vec![
                    Reply::new(Tone::Error)
                        .para(tr!("param-doesnt-fit", problem = &e.message))
                        .para(tr!("param-ask-again", param = &asking, job = &job.name)),
                ],
                awaiting: Some(Awaiting::Param(asking)),
                ..Default::default()
            })),
        }
    }

    async fn status(&self, env: &Envelope, person: &Person, id: ExecutionId) -> Result<Outcome, EngineError> {
        let Some(e) = self.store.execution(id).await? else {
            return Ok(reply(no_such(id)));
        };
        if let Some(refused) = self.may_touch(env, person, &e, Verb::View).await? {
            return Ok(refused);
        }
        let (tail, total) = self.store.output_tail(id, 5).await?;
        Ok(reply(present::status(&e, self.catalog.get(&e.job), &tail, total)))
    }

    async fn logs(&self, env: &Envelope, person: &Person, id: ExecutionId, all: bool) -> Result<Outcome, EngineError> {
        let Some(e) = self.store.execution(id).await? else {
            return Ok(reply(no_such(id)));
        };
        if let Some(refused) = self.may_touch(env, person, &e, Verb::View).await? {
            return Ok(refused);
        }
        let (lines, total) = if all {
            let l = self.store.output_all(id).await?;
            let n = l.len() as u64;
            (l, n)
        } else {
            self.store.output_tail(id, 50).await?
        };
        let mut r = Reply::new(present::state_tone(e.state)).status(
            present::state_tone(e.state),
            format!("#{} {} — {}", e.id, e.job, state_word(i18n::current(), e.state)),
        );
        if lines.is_empty() {
            r = r.para(if e.state == ExecState::Queued {
                tr!("logs-not-started")
            } else {
                tr!("logs-no-output")
            });
        } else {
            r = r.code(present::render_lines(&lines));
            if total > lines.len() as u64 {
                r = r.para(tr!("logs-tail", shown = lines.len(), total = total, id = e.id));
            }
        }
        Ok(reply(r))
    }

    async fn cancel(&self, env: &Envelope, person: &Person, id: ExecutionId) -> Result<Outcome, EngineError> {
        let Some(e) = self.store.execution(id).await? else {
            return Ok(reply(no_such(id)));
        };
        if let Some(refused) = self.may_touch(env, person, &e, Verb::Cancel).await? {
            return Ok(refused);
        }
        let result = self.store.request_cancel(id).await?;
        let job = Some(e.job);
        let (decision, message, state, tone) = match &result {
            CancelResult::NotFound => return Ok(reply(no_such(id))),
            CancelResult::AlreadyFinished(s) => ("refused", "cancel-already-ended", Some(*s), Tone::Info),
            CancelResult::CancelledQueued => ("cancelled", "cancel-was-queued", None, Tone::Warning),
            CancelResult::Requested => ("accepted", "cancel-stopping", None, Tone::Warning),
        };
        // The audit record in English, the reply in the person's language.
        let text = |lang: Lang| {
            let mut args = vec![("id", i18n::Arg::from(id))];
            if let Some(s) = state {
                args.push(("state", state_word(lang, s).into()));
            }
            i18n::text(lang, message, &args)
        };
        let audited = text(Lang::En);
        self.audit(env, person, "cancel", job.as_deref(), None, decision, Some(audited), Some(id))
            .await?;
        Ok(reply(Reply::text(tone, text(i18n::current()))))
    }

    async fn history(
        &self,
        env: &Envelope,
        person: &Person,
        job: Option<String>,
        mine: bool,
        limit: Option<u32>,
    ) -> Result<Outcome, EngineError> {
        let job = match job {
            Some(j) => match self.catalog.get(&j) {
                Some(spec) => Some(spec.name.clone()),
                None => return Ok(reply(self.unknown_job(&j))),
            },
            None => None,
        };
        let limit = limit.unwrap_or(10).min(100);
        // Runs of jobs the person may not view are left out (their own runs never are); read
        // more than asked so that leaving some out still fills the page.
        let list = self
            .store
            .executions(&ExecutionFilter {
                job: job.clone(),
                requested_by: mine.then(|| person.account.clone()),
                limit: (limit * 5).min(500),
                ..Default::default()
            })
            .await?;
        let mut shown = Vec::new();
        for e in list {
            if shown.len() as u32 >= limit {
                break;
            }
            if self.may_view(&env.place, person, &e).await? {
                shown.push(e);
            }
        }
        let list = shown;
        let n = list.len();
        let title = match (&job, mine) {
            (None, false) => tr!("history-title", n = n),
            (Some(j), false) => tr!("history-title-job", n = n, job = j),
            (None, true) => tr!("history-title-mine", n = n),
            (Some(j), true) => tr!("history-title-job-mine", n = n, job = j),
        };
        Ok(reply(present::history(&list, &self.catalog, title)))
    }

    /// Audits a decision about running `job` (no execution yet).
    async fn run_decision(
        &self,
        env: &Envelope,
        person: &Person,
        job: &str,
        params: Option<&Params>,
        decision: &str,
        reason: Option<String>,
    ) -> Result<(), EngineError> {
        self.audit(env, person, "run", Some(job), params, decision, reason, None).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        env: &Envelope,
        person: &Person,
        action: &str,
        job: Option<&str>,
        params: Option<&Params>,
        decision: &str,
        reason: Option<String>,
        execution_id: Option<ExecutionId>,
    ) -> Result<(), EngineError> {
        let params = params.map(|p| self.redact(job, p));
        self.store
            .audit(&AuditRecord {
                id: 0,
                at: Utc::now(),
                actor: person.account.clone(),
                // A display name proves nothing: say so when no person owns the account.
                actor_name: match person.known {
                    Known::Unknown => format!("{} (unknown account)", person.name),
                    _ => person.name.clone(),
                },
                place: env.place.clone(),
                action: action.into(),
                job: job.map(str::to_string),
                params,
                decision: decision.into(),
                reason,
                execution_id,
            })
            .await?;
        Ok(())
    }

    fn redact(&self, job: Option<&str>, params: &Params) -> Params {
        let spec = job.and_then(|j| self.catalog.get(j));
        params
            .iter()
            .map(|(k, v)| {
                let secret = spec.and_then(|s| s.param(k)).is_some_and(|p| p.secret);
                (k.clone(), if secret { "••••".into() } else { v.clone() })
            })
            .collect()
    }

    /// Marks executions whose worker died as `lost`, audits them and returns the notices to
    /// send. Called at start-up and periodically.
    pub async fn recover_lost(&self, is_dead: &opsbot_store::IsDead<'_>) -> Result<Vec<Execution>, EngineError> {
        let lost = self.store.recover_lost(is_dead).await?;
        for e in &lost {
            tracing::warn!(execution = e.id, job = %e.job, worker = ?e.worker, "execution lost: its worker stopped before it finished");
            self.store
                .audit(&AuditRecord {
                    id: 0,
                    at: Utc::now(),
                    actor: UserId::new("opsbot", "recovery"),
                    actor_name: "opsbot".into(),
                    place: e.place.clone(),
                    action: "recover".into(),
                    job: Some(e.job.clone()),
                    params: Some(self.redact(Some(&e.job), &e.params)),
                    decision: "lost".into(),
                    reason: e.detail.clone(),
                    execution_id: Some(e.id),
                })
                .await?;
        }
        Ok(lost)
    }

    /// Builds the notice for an execution's current state (start or end), if it warrants one.
    pub async fn notice_for(&self, id: ExecutionId) -> Result<Option<Notice>, EngineError> {
        let Some(e) = self.store.execution(id).await? else {
            return Ok(None);
        };
        let job = self.catalog.get(&e.job);
        // The card speaks the language the run was asked for in.
        let lang = self
            .access
            .person_with_account(&e.requested_by)
            .and_then(|p| p.language)
            .or(self.bot.language)
            .or_else(|| {
                let m = self.run_lang.lock().ok()?;
                m.get(&e.id).copied()
            })
            .unwrap_or_default();
        let reply = match e.state {
            ExecState::Queued => return Ok(None),
            ExecState::Running => i18n::sync_scope(lang, || present::started(&e, job)),
            _ => {
                let (tail, total) = self.store.output_tail(id, self.bot.output_tail).await?;
                i18n::sync_scope(lang, || present::finished(&e, job, &tail, total))
            }
        };
        Ok(Some(Notice {
            place: e.place.clone(),
            reply,
            execution: e.id,
            state: e.state,
            job: e.job.clone(),
            duration_ms: e.duration_ms,
        }))
    }

    /// Turns store events into notices until the store's event channel closes.
    pub async fn notifier(self: Arc<Self>, out: mpsc::Sender<Notice>) {
        let mut rx = self.store.subscribe();
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "notifier fell behind; some state-change notices were skipped");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            match self.notice_for(ev.id).await {
                Ok(Some(n)) if n.state == ev.state || ev.state.is_final() => {
                    if out.send(n).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, execution = ev.id, "cannot build a notice"),
            }
        }
    }
}

/// Why a run may not go on in a place others read (a channel): it carries a value for a
/// `secret` param (anything but the configured default), or one is missing and would be asked
/// for here. Secret values are given only in a direct message or through the web console/API.
/// The reason is written in `lang` (English for the audit record).
fn secret_in_public(job: &JobSpec, params: &Params, missing: &[String], lang: Lang) -> Option<String> {
    let given: Vec<&str> = job
        .params
        .iter()
        .filter(|p| p.secret && params.get(&p.name).is_some_and(|v| Some(v) != p.default.as_ref()))
        .map(|p| p.name.as_str())
        .collect();
    let asked: Vec<&str> = job
        .params
        .iter()
        .filter(|p| p.secret && missing.contains(&p.name))
        .map(|p| p.name.as_str())
        .collect();
    let comma = i18n::text(lang, "list-comma", &[]);
    let names = |v: &[&str]| v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(&comma);
    if !given.is_empty() {
        Some(i18n::text(
            lang,
            "secret-given",
            &[("names", names(&given).into()), ("job", (&job.name).into())],
        ))
    } else if !asked.is_empty() {
        Some(i18n::text(
            lang,
            "secret-asked",
            &[("job", (&job.name).into()), ("names", names(&asked).into())],
        ))
    } else {
        None
    }
}

/// The answer to `ping`.
fn pong() -> Outcome {
    reply(Reply::text(Tone::Info, "PONG"))
}

fn reply(r: Reply) -> Outcome {
    Outcome {
        replies: vec![r],
        ..Default::default()
    }
}

fn no_such(id: ExecutionId) -> Reply {
    Reply::text(Tone::Warning, tr!("no-such-execution", id = id))
}

/// A run's state in one word, in `lang`: in English its stored name (as audit records and
/// replies have always shown it).
fn state_word(lang: Lang, state: ExecState) -> String {
    let id = match state {
        ExecState::Queued => "state-queued",
        ExecState::Running => "state-running",
        ExecState::Succeeded => "state-succeeded",
        ExecState::Failed => "state-failed",
        ExecState::Cancelled => "state-cancelled",
        ExecState::TimedOut => "state-timed-out",
        ExecState::Lost => "state-lost",
    };
    match lang {
        Lang::En => state.to_string(),
        _ => i18n::text(lang, id, &[]),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// A short id for an error, shown to the person and written to the log.
pub fn error_id() -> String {
    let now = Utc::now();
    format!("E{:x}{:04x}", now.timestamp_millis(), std::process::id() & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::config::{Config, LoadOptions};
    use opsbot_core::understand::is_cjk;
    use std::path::Path;

    const CFG: &str = r#"
[jobs.rotate]
runner = { type = "exec", argv = ["rotate", "{{ user }}", "{{ password }}", "{{ token }}"] }
[[jobs.rotate.params]]
name = "user"
required = true
[[jobs.rotate.params]]
name = "password"
secret = true
required = true
[[jobs.rotate.params]]
name = "token"
secret = true
"#;

    fn en(id: &str, args: &[(&str, i18n::Arg)]) -> String {
        i18n::text(Lang::En, id, args)
    }

    #[test]
    fn english_replies_are_unchanged() {
        assert_eq!(
            en("internal-error", &[("id", "E1a2b0001".into())]),
            "Something went wrong on my side (error id E1a2b0001; an admin can find it in opsbot's log). Check `history` before trying again: the request may or may not have been recorded."
        );
        // Numbers are shown in plain digits, without grouping.
        assert_eq!(
            en(
                "message-too-long",
                &[("len", 70_000usize.into()), ("max", 16_384usize.into()), ("kib", 16usize.into())]
            ),
            "That message is 70000 bytes; I read at most 16384 bytes (16 KiB). Nothing was run."
        );
        assert_eq!(
            en(
                "unknown-did-you-mean",
                &[("word", "stauts".into()), ("suggestion", "status".into())]
            ),
            "I don't know `stauts`. Did you mean `status`? `help` lists what I can do."
        );
        assert_eq!(
            en("override-needs-reason", &[]),
            "`--override` needs a reason, e.g. `--override \"hotfix for INC-42\"`. Nothing was run."
        );
        assert_eq!(
            en("confirm-sensitive", &[("job", "deploy".into()), ("within", "5 min 00 s".into())]),
            "`deploy` is sensitive. Reply `yes` within 5 min 00 s to run:"
        );
        assert_eq!(
            en("param-ask-again", &[("param", "env".into()), ("job", "deploy".into())]),
            "Which `env` for `deploy`? Reply with the value, or `cancel`."
        );
        assert_eq!(
            en(
                "logs-tail",
                &[("shown", 50usize.into()), ("total", 1234u64.into()), ("id", 7i64.into())]
            ),
            "last 50 of 1234 lines — `logs 7 --all` for everything"
        );
        assert_eq!(
            en(
                "cancel-already-ended",
                &[("id", 3i64.into()), ("state", state_word(Lang::En, ExecState::TimedOut).into())]
            ),
            "#3 already ended (timed_out); nothing to cancel."
        );
        assert_eq!(
            en("history-title-job-mine", &[("n", 2usize.into()), ("job", "deploy".into())]),
            "Last 2 run(s) of deploy by you"
        );
        assert_eq!(en("history-title", &[("n", 0usize.into())]), "Last 0 run(s)");
        assert_eq!(
            en(
                "refuse-not-allowed",
                &[("what", en("refuse-schedule", &[("job", "deploy".into())]).into())]
            ),
            "Not allowed: schedule on `deploy`. Nothing was run."
        );
        assert_eq!(
            i18n::sync_scope(Lang::En, || no_such(42).blocks),
            Reply::text(Tone::Warning, "There is no execution #42. `history` lists recent runs.").blocks
        );
    }

    #[test]
    fn chinese_replies_are_chinese_with_english_commands() {
        let zh = |id: &str, args: &[(&str, i18n::Arg)]| i18n::text(Lang::Zh, id, args);
        let samples: [(&str, Vec<(&str, i18n::Arg)>); 8] = [
            ("internal-error", vec![("id", "E1".into())]),
            ("nothing-waiting", vec![]),
            ("ask-param-hint", vec![]),
            ("confirm-or-no", vec![]),
            ("already-answered", vec![]),
            ("cancel-stopping", vec![("id", 9i64.into())]),
            ("history-title-mine", vec![("n", 3usize.into())]),
            ("no-such-execution", vec![("id", 42i64.into())]),
        ];
        for (id, args) in &samples {
            let out = zh(id, args);
            assert!(out.chars().any(is_cjk), "{id}: {out}");
            assert_ne!(out, en(id, args), "{id}");
        }
        let hint = zh("ask-param-hint", &[]);
        assert!(hint.contains("`cancel`"), "{hint}");
        let gone = zh("no-such-execution", &[("id", 42i64.into())]);
        assert!(gone.contains("#42") && gone.contains("`history`"), "{gone}");
        assert_eq!(state_word(Lang::Zh, ExecState::TimedOut), "超时");
        assert_eq!(state_word(Lang::En, ExecState::TimedOut), "timed_out");
    }

    #[test]
    fn secret_in_public_is_english_for_the_audit_and_localised_for_the_reply() {
        let c = Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap();
        let job = c.catalog.get("rotate").unwrap();
        let given: Params = [
            ("user".to_string(), "ann".to_string()),
            ("password".into(), "hunter2".into()),
            ("token".into(), "t".into()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            secret_in_public(job, &given, &[], Lang::En).unwrap(),
            "`password`, `token` of `rotate` is secret and may only be given in a direct message to me or in the web console's run form, never in a channel — consider it exposed and change it."
        );
        let zh = secret_in_public(job, &given, &[], Lang::Zh).unwrap();
        assert!(
            zh.contains("`password`，`token`") && zh.contains("`rotate`") && zh.chars().any(is_cjk),
            "{zh}"
        );
        assert!(!zh.contains("hunter2"), "{zh}");
        let user: Params = [("user".to_string(), "ann".to_string())].into_iter().collect();
        let missing = vec!["password".to_string()];
        assert_eq!(
            secret_in_public(job, &user, &missing, Lang::En).unwrap(),
            "`rotate` needs the secret `password`, which I only take in a direct message or the web console's run form: start it there."
        );
        assert!(secret_in_public(job, &user, &missing, Lang::Zh).unwrap().chars().any(is_cjk));
        assert_eq!(secret_in_public(job, &user, &[], Lang::En), None);
    }
}
