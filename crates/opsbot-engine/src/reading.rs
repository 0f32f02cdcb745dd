//! The understand step in the engine: act on what is clear, ask about what is likely, offer
//! choices when unsure, refuse what must never run, and say so when nothing fits.

use crate::access::Person;
use crate::understand::{canonical, canonical_shown, explain};
use crate::{DIALOG_SUGGEST, Engine, EngineError, Outcome, grammar, reply, tr};
use chrono::{DateTime, Utc};
use opsbot_core::{Button, Candidate, Command, Context, Envelope, Reply, Tone, Verdict};
use serde_json::json;

impl Engine {
    /// Reads an addressed message and acts on it.
    pub(crate) async fn understood(&self, env: &Envelope, person: &Person, text: &str) -> Result<Outcome, EngineError> {
        let ctx = Context {
            catalog: &self.catalog,
            now: Utc::now(),
            tz: self.bot.timezone,
        };
        let e = explain(&self.grammar, &self.catalog, self.nlu.as_deref(), text, &ctx);
        let at = e.when.as_ref().map(|w| w.at);
        // The LLM path keeps a time the text gives even when nothing else was understood.
        let llm_at = at.or_else(|| e.time_in_text.as_ref().map(|w| w.at));
        let best = e.candidates.first().cloned();
        match (&e.verdict, best) {
            (Verdict::Proceed, Some(c)) if e.source == "grammar" => self.command_at(env, person, c.command, at).await,
            (Verdict::Proceed, Some(c)) => {
                // Say how it was read, then do it: the person sees the exact command.
                let line = canonical_shown(&self.catalog, &c.command).unwrap_or_default();
                self.audit_reading(env, person, &c, "proceed").await?;
                let mut o = self.command_at(env, person, c.command, at).await?;
                if !line.is_empty() {
                    o.replies.insert(0, Reply::text(Tone::Info, tr!("read-as", command = line)));
                }
                Ok(o)
            }
            (Verdict::Confirm, Some(c)) => {
                self.audit_reading(env, person, &c, "confirm").await?;
                self.suggest(env, &c, at, false).await
            }
            (Verdict::Choose, _) => Ok(reply(self.choices(&e.candidates, at))),
            (Verdict::Refuse(why), _) => {
                let (kind, detail) = why.split_once(':').unwrap_or((why.as_str(), ""));
                self.audit(
                    env,
                    person,
                    "understand",
                    None,
                    None,
                    "refused",
                    Some(format!("{kind}: {detail}")),
                    None,
                )
                .await?;
                let msg = match kind {
                    opsbot_nlu::refusal::SHELL => tr!("refuse-shell", sign = detail),
                    opsbot_nlu::refusal::DESTRUCTIVE => tr!("refuse-destructive", word = detail),
                    opsbot_nlu::refusal::NEGATED => tr!("refuse-negated", word = detail),
                    _ => tr!("refuse-invalid", detail = detail),
                };
                Ok(reply(Reply::text(Tone::Error, msg)))
            }
            _ => {
                if let Some(err) = e.error {
                    return Ok(reply(Reply::text(Tone::Error, err)));
                }
                if let Some(o) = self.ask_llm(env, person, text, llm_at).await? {
                    return Ok(o);
                }
                Ok(reply(self.unknown(text)))
            }
        }
    }

    /// A command, scheduled for `at` when it is a run and a time was given.
    pub(crate) async fn command_at(
        &self,
        env: &Envelope,
        person: &Person,
        cmd: Command,
        at: Option<DateTime<Utc>>,
    ) -> Result<Outcome, EngineError> {
        match (cmd, at) {
            (Command::Run { job, params, positional }, Some(at)) => self.run(env, person, &job, params, positional, Some(at)).await,
            (cmd, _) => self.command(env, person, cmd).await,
        }
    }

    async fn audit_reading(&self, env: &Envelope, person: &Person, c: &Candidate, what: &str) -> Result<(), EngineError> {
        let job = match &c.command {
            Command::Run { job, .. } => Some(job.as_str()),
            _ => None,
        };
        self.audit(
            env,
            person,
            "understand",
            job,
            None,
            what,
            Some(format!(
                "{} ({:.2}): {}",
                canonical_shown(&self.catalog, &c.command).unwrap_or_default(),
                c.confidence,
                c.why
            )),
            None,
        )
        .await
    }

    /// "Did you mean …?" with Yes/No: the reading is kept as a question that `yes` answers.
    async fn suggest(&self, env: &Envelope, c: &Candidate, at: Option<DateTime<Utc>>, from_llm: bool) -> Result<Outcome, EngineError> {
        let Some(line) = canonical(&self.catalog, &c.command) else {
            return Ok(reply(Reply::text(Tone::Warning, tr!("not-understood"))));
        };
        let nonce = grammar::new_nonce();
        let job = match &c.command {
            Command::Run { job, .. } => job.clone(),
            _ => String::new(),
        };
        self.open_dialog(
            env,
            DIALOG_SUGGEST,
            json!({ "job": job, "command": line, "at": at.map(|t| t.to_rfc3339()), "nonce": nonce }),
            self.bot.confirm_timeout,
        )
        .await?;
        let mut r = Reply::new(Tone::Warning);
        if from_llm {
            r = r.para(tr!("llm-proposal"));
        }
        r = r
            .para(tr!("did-you-mean"))
            .code(canonical_shown(&self.catalog, &c.command).unwrap_or_default());
        if let Some(t) = at {
            r = r.para(tr!("did-you-mean-at", at = crate::schedule::local(t, self.bot.timezone)));
        }
        let r = r.para(tr!("did-you-mean-hint")).buttons(vec![
            Button {
                label: tr!("yes-button"),
                command: format!("yes {nonce}"),
                tone: Tone::Info,
            },
            Button {
                label: tr!("no-button"),
                command: format!("no {nonce}"),
                tone: Tone::Info,
            },
        ]);
        Ok(reply(r))
    }

    /// Several readings: each as a button that sends its exact command.
    fn choices(&self, cands: &[Candidate], at: Option<DateTime<Utc>>) -> Reply {
        // A time the text gave goes with each choice (`… at 2026-03-04 20:00`, in the team's
        // zone), so pressing one schedules it as asked.
        let when = at.map(|t| format!(" at {}", t.with_timezone(&self.bot.timezone).format("%Y-%m-%d %H:%M")));
        let with_time = |c: &Candidate, line: String| match (&c.command, &when) {
            (Command::Run { .. }, Some(w)) => format!("{line}{w}"),
            _ => line,
        };
        let lines: Vec<String> = cands
            .iter()
            .filter_map(|c| canonical(&self.catalog, &c.command).map(|l| with_time(c, l)))
            .take(3)
            .collect();
        let shown: Vec<String> = cands
            .iter()
            .filter_map(|c| canonical_shown(&self.catalog, &c.command).map(|l| with_time(c, l)))
            .take(3)
            .collect();
        if lines.is_empty() {
            return Reply::text(Tone::Warning, tr!("not-understood"));
        }
        // A button's label shows its whole command; a reading with a secret gets none.
        let buttons: Vec<Button> = lines
            .iter()
            .zip(&shown)
            .filter(|(l, s)| l == s)
            .map(|(l, _)| l)
            .filter(|l| l.chars().count() <= 60 && !l.contains(['\n', '\r']))
            .map(|l| Button {
                label: l.clone(),
                command: l.clone(),
                tone: Tone::Info,
            })
            .collect();
        let mut r = Reply::new(Tone::Warning).para(tr!("choose-one")).code(shown.join("\n"));
        r = r.para(tr!("choose-hint"));
        if !buttons.is_empty() {
            r = r.buttons(buttons);
        }
        r
    }

    /// Asks the LLM provider, if there is one; its proposal is validated like typed text and
    /// always put to the person as a question.
    async fn ask_llm(
        &self,
        env: &Envelope,
        person: &Person,
        text: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Option<Outcome>, EngineError> {
        let Some(llm) = &self.llm else { return Ok(None) };
        // A `token=…` typed for a secret param of any job never leaves: its value joins the
        // values masked before sending. Text that cannot even be split into words (an unclosed
        // quote) and holds a `=` is not sent at all.
        let toks = match grammar::tokenize(text) {
            Ok(t) => t,
            Err(_) if text.contains('=') => return Ok(None),
            Err(_) => Vec::new(),
        };
        let secret_keys: std::collections::HashSet<String> = self
            .catalog
            .jobs()
            .iter()
            .flat_map(|j| j.params.iter().filter(|p| p.secret).map(|p| p.name.to_lowercase()))
            .collect();
        let mut scrub = self.llm_scrub.clone();
        scrub.extend(
            toks.into_iter()
                .filter(|t| t.key.as_ref().is_some_and(|k| secret_keys.contains(k)) && !t.text.is_empty())
                .map(|t| t.text),
        );
        let proposal = match llm.propose(text, &self.catalog, &scrub).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(error = %e, "the LLM provider did not answer");
                return Ok(None);
            }
        };
        let cmd = Command::Run {
            job: proposal.job.clone(),
            params: proposal.params.clone(),
            positional: Vec::new(),
        };
        let c = Candidate {
            command: cmd,
            confidence: 0.5,
            why: "proposed by the LLM provider".into(),
        };
        // Values the job does not accept are refused here, as if typed.
        let Some(job) = self.catalog.get(&proposal.job) else {
            return Ok(None);
        };
        if let Err(problems) = crate::understand::bind(job, proposal.params.clone(), Vec::new(), false) {
            self.audit(
                env,
                person,
                "understand",
                Some(&job.name),
                None,
                "refused",
                Some(format!("llm proposal: {}", problems.join(" "))),
                None,
            )
            .await?;
            return Ok(Some(reply(
                Reply::new(Tone::Error)
                    .para(tr!("llm-invalid", job = job.name.as_str()))
                    .para(problems.join(" ")),
            )));
        }
        self.audit_reading(env, person, &c, "confirm").await?;
        Ok(Some(self.suggest(env, &c, at, true).await?))
    }
}
