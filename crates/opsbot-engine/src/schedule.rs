//! Runs for later: `deploy api to dev at 23:30` schedules one (persisted), `schedules` lists
//! them, `unschedule 7` drops one; config's `[schedules.NAME]` cron runs; and the loop that
//! starts them when they are due, through the same permission and policy checks as a run
//! asked for now.

use crate::access::{self, Known, Person};
use crate::{Elsewhere, Engine, EngineError, Outcome, present, reply, tr};
use chrono::{DateTime, Utc};
use opsbot_core::config::Verb;
use opsbot_core::config::nlu::CronSchedule;
use opsbot_core::{Envelope, JobSpec, Params, Reply, Tone, UserId};
use opsbot_store::{NewSchedule, Schedule, ScheduleState};

/// A scheduled run that did not start within this long of its time (opsbot was down) still
/// starts, late, with a note; past this it is dropped as too late.
pub const LATE_LIMIT: chrono::Duration = chrono::Duration::hours(12);

/// The time in the team's zone, for people: `2026-11-24 23:30 CET`.
pub(crate) use opsbot_nlu::time::show as local;

/// How long until `t`, roughly: `in 13 h 30 min`, `in 5 min`.
fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let mins = ((t - now).num_seconds().max(0) + 59) / 60;
    let (d, h, m) = (mins / 1440, (mins % 1440) / 60, mins % 60);
    match (d, h, m) {
        (0, 0, m) => tr!("in-minutes", m = m),
        (0, h, 0) => tr!("in-hours", h = h),
        (0, h, m) => tr!("in-hours-minutes", h = h, m = m),
        (d, h, _) => tr!("in-days-hours", d = d, h = h),
    }
}

impl Engine {
    /// Records a run for later, after the person's right to run it with these values here.
    /// Policies (freezes, hours, locks, approvals) are checked when it is due.
    pub(crate) async fn schedule_run(
        &self,
        env: &Envelope,
        person: &Person,
        job: &JobSpec,
        params: Params,
        at: DateTime<Utc>,
    ) -> Result<Outcome, EngineError> {
        let d = access::decide(&self.access, person, Verb::Run, job, Some(&params), &env.place);
        if !d.allowed() {
            return self
                .refuse(env, person, "schedule", &job.name, Some(&params), &d.explanation(), None)
                .await;
        }
        if job
            .params
            .iter()
            .any(|p| p.secret && params.get(&p.name).is_some_and(|v| Some(v) != p.default.as_ref()))
        {
            self.audit(
                env,
                person,
                "schedule",
                Some(&job.name),
                Some(&params),
                "refused",
                Some("secret value in a schedule".into()),
                None,
            )
            .await?;
            return Ok(reply(Reply::text(Tone::Error, tr!("schedule-secret", job = job.name.as_str()))));
        }
        let now = Utc::now();
        if at <= now {
            return Ok(reply(Reply::text(
                Tone::Error,
                tr!("schedule-past", at = local(at, self.bot.timezone)),
            )));
        }
        let text: String = env.text.chars().take(500).collect();
        let s = self
            .store
            .create_schedule(&NewSchedule {
                job: job.name.clone(),
                params: params.clone(),
                requested_by: env.user.clone(),
                requester_name: person.name.clone(),
                place: env.place.clone(),
                run_at: at,
                lang: crate::i18n::current().code().into(),
                text,
            })
            .await?;
        self.audit(
            env,
            person,
            "schedule",
            Some(&job.name),
            Some(&params),
            "accepted",
            Some(format!("schedule {} at {}", s.id, at.to_rfc3339())),
            None,
        )
        .await?;
        let what = present::describe_run(Some(job), &job.name, &self.redact(Some(&job.name), &params));
        let r = Reply::new(Tone::Success)
            .para(tr!(
                "schedule-made",
                id = s.id,
                at = local(at, self.bot.timezone),
                until = until(at, now)
            ))
            .code(what)
            .para(tr!("schedule-made-hint", id = s.id))
            .buttons(vec![opsbot_core::Button {
                label: tr!("schedule-drop-button"),
                command: format!("unschedule {}", s.id),
                tone: Tone::Warning,
            }]);
        Ok(reply(r))
    }

    /// `schedules`: pending runs the person may see, then config's cron runs with their next time.
    pub(crate) async fn schedules(&self, env: &Envelope, person: &Person) -> Result<Outcome, EngineError> {
        let list = self.store.schedules(true, 50).await?;
        let tz = self.bot.timezone;
        let mut r = Reply::new(Tone::Info);
        let mut shown = 0;
        let mut lines = Vec::new();
        for s in &list {
            let visible = s.requested_by == person.account
                || self
                    .catalog
                    .get(&s.job)
                    .is_some_and(|j| access::decide(&self.access, person, Verb::View, j, Some(&s.params), &env.place).allowed());
            if !visible {
                continue;
            }
            shown += 1;
            lines.push(tr!(
                "schedules-line",
                id = s.id,
                what = present::describe_run(self.catalog.get(&s.job), &s.job, &self.redact(Some(&s.job), &s.params)),
                at = local(s.run_at, tz),
                who = s.requester_name.as_str(),
                place = s.place.to_string()
            ));
        }
        if shown == 0 {
            r = r.para(tr!("schedules-none"));
        } else {
            r = r.para(tr!("schedules-title", n = shown)).code(lines.join("\n"));
            r = r.para(tr!("schedules-hint"));
        }
        if !self.crons.is_empty() {
            let now = Utc::now();
            let mut c = Vec::new();
            for s in self.crons.iter() {
                let next = s
                    .pattern
                    .find_next_occurrence(&now.with_timezone(&tz), false)
                    .map(|t| local(t.with_timezone(&Utc), tz))
                    .unwrap_or_else(|_| "—".into());
                c.push(tr!(
                    "schedules-cron-line",
                    name = s.name.as_str(),
                    what = present::describe_run(self.catalog.get(&s.job), &s.job, &self.redact(Some(&s.job), &s.params)),
                    cron = s.cron.as_str(),
                    next = next
                ));
            }
            r = r.para(tr!("schedules-cron-title")).code(c.join("\n"));
        }
        Ok(reply(r))
    }

    /// `unschedule ID`: its requester, or someone who may cancel runs of that job here.
    pub(crate) async fn unschedule(&self, env: &Envelope, person: &Person, id: i64) -> Result<Outcome, EngineError> {
        let Some(s) = self.store.schedule(id).await? else {
            return Ok(reply(Reply::text(Tone::Warning, tr!("schedule-no-such", id = id))));
        };
        let own = s.requested_by == person.account
            || person
                .key
                .as_deref()
                .is_some_and(|k| self.access.person_with_account(&s.requested_by).is_some_and(|p| p.key == k));
        let may = own
            || self
                .catalog
                .get(&s.job)
                .is_some_and(|j| access::decide(&self.access, person, Verb::Cancel, j, Some(&s.params), &env.place).allowed());
        if !may {
            self.audit(
                env,
                person,
                "unschedule",
                Some(&s.job),
                None,
                "refused",
                Some(format!("schedule {id} is not theirs")),
                None,
            )
            .await?;
            return Ok(Outcome {
                denied: true,
                ..reply(Reply::text(
                    Tone::Error,
                    tr!("schedule-not-yours", id = id, who = s.requester_name.as_str()),
                ))
            });
        }
        if s.state != ScheduleState::Pending {
            return Ok(reply(Reply::text(
                Tone::Info,
                tr!("schedule-not-pending", id = id, state = s.state.as_str()),
            )));
        }
        match self.store.cancel_schedule(id, &person.account).await? {
            Some(_) => {
                self.audit(
                    env,
                    person,
                    "unschedule",
                    Some(&s.job),
                    None,
                    "accepted",
                    Some(format!("schedule {id} dropped")),
                    None,
                )
                .await?;
                Ok(reply(Reply::text(
                    Tone::Warning,
                    tr!("schedule-dropped", id = id, at = local(s.run_at, self.bot.timezone)),
                )))
            }
            None => Ok(reply(Reply::text(
                Tone::Info,
                tr!("schedule-not-pending", id = id, state = "fired"),
            ))),
        }
    }

    /// Starts the scheduled runs that are due (claimed in the store, so one process of several
    /// starts each), and config's cron runs whose time came. Returns the messages for their
    /// conversations (job cards, approval requests, refusals).
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<Elsewhere>, EngineError> {
        let mut out = Vec::new();
        for s in self.store.fail_stale_schedules(now - chrono::Duration::minutes(10)).await? {
            tracing::warn!(schedule = s.id, job = %s.job, "a scheduled run was being started when opsbot stopped; marked failed");
        }
        for s in self.store.claim_due_schedules(now, 50).await? {
            let lang = opsbot_core::Lang::parse(&s.lang).unwrap_or_default();
            let msgs = crate::i18n::scope(lang, self.fire_one(&s, now)).await;
            match msgs {
                Ok(m) => out.extend(m),
                Err(e) => {
                    tracing::error!(schedule = s.id, error = %e, "cannot start a scheduled run");
                    let _ = self
                        .store
                        .finish_schedule(s.id, ScheduleState::Failed, None, Some(&format!("store error: {e}")))
                        .await;
                }
            }
        }
        for c in self.crons.iter() {
            match self.fire_cron(c, now).await {
                Ok(m) => out.extend(m),
                Err(e) => tracing::error!(schedule = %c.name, error = %e, "cannot start a cron run"),
            }
        }
        Ok(out)
    }

    async fn fire_one(&self, s: &Schedule, now: DateTime<Utc>) -> Result<Vec<Elsewhere>, EngineError> {
        let mut env = Envelope::direct(s.requested_by.clone(), s.place.clone(), s.text.clone());
        env.direct = false;
        let person = self.identify(&s.requested_by, Some(&s.requester_name)).await?;
        let place = s.place.clone();
        let fail = |detail: String| Elsewhere {
            place: place.clone(),
            reply: Reply::new(Tone::Error)
                .para(tr!("schedule-failed", id = s.id, job = s.job.as_str()))
                .para(detail),
        };
        if now - s.run_at > LATE_LIMIT {
            let why = tr!("schedule-too-late", at = local(s.run_at, self.bot.timezone));
            self.store
                .finish_schedule(s.id, ScheduleState::Failed, None, Some("too late: opsbot was down at its time"))
                .await?;
            return Ok(vec![fail(why)]);
        }
        let Some(job) = self.catalog.get(&s.job) else {
            self.store
                .finish_schedule(s.id, ScheduleState::Failed, None, Some("the job left the config"))
                .await?;
            return Ok(vec![fail(tr!("schedule-job-gone", job = s.job.as_str()))]);
        };
        let o = match self.gate(&env, &person, job, &s.params, None, true).await? {
            Ok(needs) => {
                self.launch(
                    &env,
                    &person,
                    job,
                    s.params.clone(),
                    needs,
                    None,
                    Some(format!("scheduled run {}", s.id)),
                )
                .await?
            }
            Err(refused) => refused,
        };
        let state = if o.queued.is_some() || o.approval.is_some() {
            ScheduleState::Fired
        } else {
            ScheduleState::Failed
        };
        let detail = (state == ScheduleState::Failed).then(|| o.replies.iter().map(|r| r.plain_text()).collect::<Vec<_>>().join(" "));
        self.store.finish_schedule(s.id, state, o.queued, detail.as_deref()).await?;
        // "Starting …" when it started (or went to its approvers), "did not start:" when a
        // permission or policy refused it as of now; the reasons follow.
        let header = if state == ScheduleState::Fired {
            Reply::text(
                Tone::Info,
                tr!("schedule-starting", id = s.id, at = local(s.run_at, self.bot.timezone)),
            )
        } else {
            Reply::text(Tone::Error, tr!("schedule-failed", id = s.id, job = s.job.as_str()))
        };
        let mut msgs: Vec<Elsewhere> = vec![Elsewhere {
            place: s.place.clone(),
            reply: header,
        }];
        msgs.extend(o.replies.into_iter().map(|reply| Elsewhere {
            place: s.place.clone(),
            reply,
        }));
        msgs.extend(o.elsewhere);
        Ok(msgs)
    }

    async fn fire_cron(&self, c: &CronSchedule, now: DateTime<Utc>) -> Result<Vec<Elsewhere>, EngineError> {
        let tz = self.bot.timezone;
        let next_after = |t: DateTime<Utc>| {
            c.pattern
                .find_next_occurrence(&t.with_timezone(&tz), false)
                .ok()
                .map(|n| n.with_timezone(&Utc))
        };
        let stored = self.store.cron_next(&c.name).await?;
        let Some(due) = stored else {
            // First sight of this schedule: remember its next time, start nothing now.
            if let Some(n) = next_after(now) {
                self.store.advance_cron(&c.name, None, n).await?;
            }
            return Ok(Vec::new());
        };
        if due > now {
            return Ok(Vec::new());
        }
        let Some(n) = next_after(now) else { return Ok(Vec::new()) };
        if !self.store.advance_cron(&c.name, Some(due), n).await? {
            return Ok(Vec::new()); // another process took this occurrence
        }
        if now - due > LATE_LIMIT {
            tracing::warn!(schedule = %c.name, due = %due, "a cron run was missed while opsbot was down; skipped");
            return Ok(Vec::new());
        }
        let Some(job) = self.catalog.get(&c.job) else {
            return Ok(Vec::new());
        };
        let account = UserId::new("opsbot", format!("schedule:{}", c.name));
        let place = c.place.clone().unwrap_or_else(|| opsbot_core::Place::new("opsbot", "schedules"));
        let mut env = Envelope::direct(account.clone(), place.clone(), format!("schedule {}", c.name));
        env.direct = false;
        // Written in the config by whoever may write it, like the local command line: no role
        // check (policies still apply), and the audit names it without "(unknown account)".
        let person = Person {
            account,
            name: format!("schedule {}", c.name),
            key: None,
            roles: Vec::new(),
            known: Known::Local,
        };
        let locks = self.store.locks().await?;
        let argv = self.render_argv(job, &c.params, &person.account.to_string());
        let o = match self.policies.check(&self.access, job, &c.params, &argv, &locks, now, None) {
            Ok(needs) => {
                self.launch(
                    &env,
                    &person,
                    job,
                    c.params.clone(),
                    needs,
                    None,
                    Some(format!("cron schedule {}", c.name)),
                )
                .await?
            }
            Err(r) => {
                let shown = r.explain_in(crate::i18n::current());
                self.run_decision(&env, &person, &job.name, Some(&c.params), "refused", Some(r.explain()))
                    .await?;
                reply(
                    Reply::new(Tone::Error)
                        .para(tr!("cron-refused", name = c.name.as_str()))
                        .para(shown),
                )
            }
        };
        if c.place.is_none() {
            return Ok(o.elsewhere);
        }
        let mut msgs: Vec<Elsewhere> = o
            .replies
            .into_iter()
            .map(|reply| Elsewhere {
                place: place.clone(),
                reply,
            })
            .collect();
        msgs.extend(o.elsewhere);
        Ok(msgs)
    }
}
