//! Policies a run must pass after access control: locks, forbidden command lines, allowed
//! hours, change freezes (with an override that needs approval), approval rules and rate
//! limits. Each refusal names the policy and says what would make the run pass.

use crate::access::{Localized, Person, picks, scope_in};
use crate::i18n::{self, Arg, Lang};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock};
use opsbot_core::Params;
use opsbot_core::config::{AccessConfig, FreezeRule, FreezeWindow, HoursRule, RatePer};
use opsbot_core::job::JobSpec;
use opsbot_store::Lock;
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use std::time::Duration;

/// The job's command line as the runner would render it for `params` (execution id 0), for
/// the forbidden-pattern policy. An element whose template cannot render is left out (the
/// runner reports that error when it runs).
pub fn render_argv(templates: &minijinja::Environment<'static>, job: &JobSpec, params: &Params, requester: &str) -> Vec<String> {
    let opsbot_core::RunnerSpec::Exec { argv, .. } = &job.runner;
    let ctx = opsbot_core::job::template_context(&job.name, &job.params, params, 0, requester);
    argv.iter().filter_map(|t| templates.render_str(t, ctx.clone()).ok()).collect()
}

/// Approvals a run needs before it starts: one entry per policy that asks for them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The policy asking (`approval prod-changes`, `freeze year-end (override)`).
    pub policy: String,
    /// Roles whose members may approve; empty = anyone with the `approve` verb on the job.
    pub approvers: Vec<String>,
    /// Approvals needed from different people, never the requester.
    pub count: u32,
    /// How long the request stays open, in seconds.
    pub expires_secs: u64,
}

impl Requirement {
    /// `1 approval from lead (approval prod-changes)`, in English (as the audit trail and the
    /// stored request keep it).
    pub fn describe(&self) -> String {
        self.describe_in(Lang::En)
    }

    /// [`Requirement::describe`] in `lang` (the policy's name stays as it is).
    pub fn describe_in(&self, lang: Lang) -> String {
        let mut args = approvals_args(self.count, &self.approvers, lang);
        args.push(("policy", (&self.policy).into()));
        i18n::text(lang, "requirement", &args)
    }
}

/// The arguments of a message saying `N approval(s) from WHO`: `count`, `who`.
fn approvals_args(count: u32, approvers: &[String], lang: Lang) -> Vec<(&'static str, Arg)> {
    let who = if approvers.is_empty() {
        i18n::text(lang, "approvers-anyone", &[])
    } else {
        let or = i18n::text(lang, "list-or", &[]);
        let roles = approvers.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(&or);
        i18n::text(lang, "approvers-roles", &[("roles", roles.into())])
    };
    vec![("count", count.into()), ("who", who.into())]
}

/// A policy said no.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `lock env=prod`, `freeze year-end`, `hours business`, `rate_limit deploys`, `deny_argv rm-rf`.
    pub policy: Localized,
    /// What it says.
    pub why: Localized,
    /// What would make the run pass (may be empty).
    pub would_pass: Localized,
}

impl Refusal {
    /// One paragraph for a person, in English (as the audit trail keeps it).
    pub fn explain(&self) -> String {
        self.explain_in(Lang::En)
    }

    /// One paragraph for a person, in `lang`.
    pub fn explain_in(&self, lang: Lang) -> String {
        i18n::text(
            lang,
            "refused-by",
            &[
                ("policy", self.policy.get(lang).into()),
                ("why", self.why.get(lang).into()),
                ("would_pass", self.would_pass.get(lang).into()),
            ],
        )
    }

    /// The paragraph of [`Refusal::explain_in`] in each language: English for the audit, the
    /// person's language for the reply.
    pub fn explanation(&self) -> Localized {
        Localized::new(|lang| self.explain_in(lang))
    }
}

/// A weekday and time for a person: `Thu 09:00` in English, `周四 09:00` in Chinese.
fn day_time(day: chrono::Weekday, time: &str, lang: Lang) -> String {
    let day = match lang {
        Lang::En => day.to_string(),
        Lang::Zh => {
            const DAYS: [&str; 7] = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"];
            DAYS[day.num_days_from_monday() as usize % 7].to_string()
        }
    };
    format!("{day} {time}")
}

/// The policies of one config, with the rate limiters' state (per process).
pub struct Policies {
    limiters: Vec<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").field("limiters", &self.limiters.len()).finish()
    }
}

impl Policies {
    /// Limiters for the config's rate limits.
    pub fn new(cfg: &AccessConfig) -> Self {
        let limiters = cfg
            .rate_limits
            .iter()
            .map(|r| {
                let max = NonZeroU32::new(r.max).unwrap_or(NonZeroU32::MIN);
                let period = (r.every / r.max.max(1)).max(Duration::from_nanos(1));
                let quota = Quota::with_period(period).expect("non-zero period").allow_burst(max);
                RateLimiter::keyed(quota)
            })
            .collect();
        Policies { limiters }
    }

    /// Checks the policies that can refuse outright (locks, command lines, hours, freezes);
    /// returns the approvals the run needs (approval rules, a freeze overridden with
    /// `--override`). Rate limits are separate ([`Policies::take_rate`]) because they count.
    #[allow(clippy::too_many_arguments)]
    pub fn check(
        &self,
        cfg: &AccessConfig,
        job: &JobSpec,
        params: &Params,
        argv: &[String],
        locks: &[Lock],
        now: DateTime<Utc>,
        override_reason: Option<&str>,
    ) -> Result<Vec<Requirement>, Refusal> {
        for lock in locks {
            let job_ok = lock.job.as_deref().is_none_or(|j| j == job.name);
            // A lock's value means what this job makes of it (a synonym locks its value).
            let params_ok = lock.params.iter().all(|(k, v)| {
                params
                    .get(k)
                    .is_some_and(|have| have == v || job.param(k).and_then(|p| p.normalize(v).ok()).as_ref() == Some(have))
            });
            if job_ok && params_ok {
                return Err(Refusal {
                    policy: Localized::same(format!("lock `{}`", lock.scope)),
                    why: Localized::message(
                        "refused-lock",
                        &[
                            ("by", (&lock.by_name).into()),
                            ("at", lock.at.format("%Y-%m-%d %H:%M").to_string().into()),
                            ("reason", (&lock.reason).into()),
                        ],
                    ),
                    would_pass: Localized::message("refused-lock-pass", &[("scope", lock.scope.trim_start_matches("* ").into())]),
                });
            }
        }
        let joined = argv.join(" ");
        for rule in &cfg.deny_argv {
            if !picks(&rule.scope, job, Some(params)) {
                continue;
            }
            // The refusal names where, never what: the element may hold a secret value.
            let hit = argv
                .iter()
                .position(|a| rule.pattern.is_match(a))
                .map(|i| Localized::same(format!("argv[{i}]")))
                .or_else(|| {
                    rule.pattern
                        .is_match(&joined)
                        .then(|| Localized::message("refused-argv-whole", &[]))
                });
            if let Some(hit) = hit {
                return Err(Refusal {
                    policy: Localized::same(format!("deny_argv `{}`", rule.name)),
                    why: Localized::new(|lang| {
                        i18n::text(
                            lang,
                            "refused-argv",
                            &[
                                ("hit", hit.get(lang).into()),
                                ("pattern", rule.pattern.as_str().into()),
                                ("reason", given_reason(rule.reason.as_deref(), lang).into()),
                            ],
                        )
                    }),
                    would_pass: Localized::message("refused-argv-pass", &[]),
                });
            }
        }
        let local = now.with_timezone(&cfg.timezone);
        for rule in &cfg.hours {
            if picks(&rule.scope, job, Some(params)) && !in_hours(rule, &local) {
                return Err(Refusal {
                    policy: Localized::same(format!("hours `{}`", rule.name)),
                    why: Localized::new(|lang| {
                        i18n::text(
                            lang,
                            "refused-hours",
                            &[
                                ("scope", scope_in(&rule.scope, lang).into()),
                                ("hours", (&rule.text).into()),
                                ("tz", cfg.timezone.to_string().into()),
                                ("now", day_time(local.weekday(), &local.format("%H:%M").to_string(), lang).into()),
                            ],
                        )
                    }),
                    would_pass: Localized::new(|lang| {
                        i18n::text(lang, "refused-hours-pass", &[("next", next_opening(rule, &local, lang).into())])
                    }),
                });
            }
        }
        let mut needs = Vec::new();
        for rule in &cfg.freezes {
            if !picks(&rule.scope, job, Some(params)) {
                continue;
            }
            let Some(until) = frozen_until(rule, now, cfg.timezone) else {
                continue;
            };
            let until_text = until.with_timezone(&cfg.timezone).format("%Y-%m-%d %H:%M %Z").to_string();
            let frozen = Localized::new(|lang| {
                i18n::text(
                    lang,
                    "refused-freeze",
                    &[
                        ("scope", scope_in(&rule.scope, lang).into()),
                        ("until", (&until_text).into()),
                        ("reason", given_reason(rule.reason.as_deref(), lang).into()),
                    ],
                )
            });
            match (&rule.override_by, override_reason) {
                (Some(o), Some(_)) => needs.push(Requirement {
                    policy: format!("freeze `{}` override", rule.name),
                    approvers: o.approvers.clone(),
                    count: o.count,
                    expires_secs: o.expires.as_secs(),
                }),
                (Some(o), None) => {
                    return Err(Refusal {
                        policy: Localized::same(format!("freeze `{}`", rule.name)),
                        why: frozen,
                        would_pass: Localized::new(|lang| {
                            i18n::text(lang, "refused-freeze-override", &approvals_args(o.count, &o.approvers, lang))
                        }),
                    });
                }
                (None, _) => {
                    return Err(Refusal {
                        policy: Localized::same(format!("freeze `{}`", rule.name)),
                        why: frozen,
                        would_pass: Localized::message("refused-freeze-no-override", &[]),
                    });
                }
            }
        }
        for rule in &cfg.approvals {
            if picks(&rule.scope, job, Some(params)) {
                needs.push(Requirement {
                    policy: format!("approval `{}`", rule.name),
                    approvers: rule.approvers.clone(),
                    count: rule.count,
                    expires_secs: rule.expires.as_secs(),
                });
            }
        }
        Ok(needs)
    }

    /// Counts one run against every rate limit that applies, refusing when one is exhausted.
    pub fn take_rate(&self, cfg: &AccessConfig, who: &Person, job: &JobSpec, params: &Params) -> Result<(), Refusal> {
        for (rule, limiter) in cfg.rate_limits.iter().zip(&self.limiters) {
            if !picks(&rule.scope, job, Some(params)) {
                continue;
            }
            // Each rule has its own limiter: per person, all the rule's jobs count together.
            let key = match rule.per {
                RatePer::Person => who.id(),
                RatePer::Job => job.name.clone(),
            };
            if let Err(not_until) = limiter.check_key(&key) {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                let per = match rule.per {
                    RatePer::Person => "rate-per-person",
                    RatePer::Job => "rate-per-job",
                };
                let retry = humantime::format_duration(Duration::from_secs(wait.as_secs().saturating_add(1))).to_string();
                return Err(Refusal {
                    policy: Localized::same(format!("rate_limit `{}`", rule.name)),
                    why: Localized::new(|lang| {
                        i18n::text(
                            lang,
                            "refused-rate",
                            &[
                                ("max", rule.max.into()),
                                ("scope", scope_in(&rule.scope, lang).into()),
                                ("per", i18n::text(lang, per, &[]).into()),
                                ("every", humantime::format_duration(rule.every).to_string().into()),
                            ],
                        )
                    }),
                    would_pass: Localized::message("refused-rate-pass", &[("wait", retry.into())]),
                });
            }
        }
        Ok(())
    }
}

fn in_hours(rule: &HoursRule, local: &DateTime<chrono_tz::Tz>) -> bool {
    let t = local.time();
    let day = local.weekday().num_days_from_monday() as usize;
    if rule.from < rule.until {
        rule.days[day] && t >= rule.from && t < rule.until
    } else {
        // Across midnight: the part after midnight belongs to the day before.
        let yesterday = (day + 6) % 7;
        (rule.days[day] && t >= rule.from) || (rule.days[yesterday] && t < rule.until)
    }
}

/// A reason written in the config, for the end of a sentence: ` (reason)`, or nothing.
fn given_reason(reason: Option<&str>, lang: Lang) -> String {
    reason
        .map(|r| i18n::text(lang, "refused-given-reason", &[("reason", r.into())]))
        .unwrap_or_default()
}

fn next_opening(rule: &HoursRule, local: &DateTime<chrono_tz::Tz>, lang: Lang) -> String {
    // Look minute by minute would be slow; days × opening time is enough.
    for add in 0..8 {
        let date = local.date_naive() + ChronoDuration::days(add);
        let day = date.weekday().num_days_from_monday() as usize;
        if !rule.days[day] {
            continue;
        }
        let opening = date.and_time(rule.from);
        if opening > local.naive_local() {
            let at = day_time(date.weekday(), &opening.format("%H:%M").to_string(), lang);
            return i18n::text(lang, "refused-hours-next", &[("at", at.into())]);
        }
    }
    String::new()
}

/// When the freeze in force at `now` ends, if one is.
pub fn frozen_until(rule: &FreezeRule, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    match &rule.window {
        FreezeWindow::Range { from, until } => (now >= *from && now < *until).then_some(*until),
        FreezeWindow::Cron { cron, duration, .. } => {
            let local = now.with_timezone(&tz);
            let start = cron.find_previous_occurrence(&local, true).ok()?;
            let end = start.with_timezone(&Utc) + ChronoDuration::from_std(*duration).ok()?;
            (now < end).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use opsbot_core::config::{Config, LoadOptions};
    use std::path::Path;

    const CFG: &str = r#"
[bot]
timezone = "Europe/Berlin"
[jobs.deploy]
runner = { type = "exec", argv = ["deploy", "{{ env }}", "{{ note }}"] }
[[jobs.deploy.params]]
name = "env"
type = "enum"
values = ["dev", "prod"]
required = true
[[jobs.deploy.params]]
name = "note"
default = "x"

[[policy.freeze]]
name = "weekend"
jobs = ["deploy"]
params = { env = "prod" }
cron = "0 17 * * fri"
duration = "63h"
reason = "no prod changes over the weekend"
override = { approvers = ["admin"], count = 2 }

[[policy.hours]]
name = "office"
jobs = "deploy"
params = { env = "prod" }
days = "mon-fri"
between = "09:00-18:00"

[[policy.deny_argv]]
name = "no-subshell"
pattern = '\$\(|`'

[[policy.rate_limit]]
name = "deploys"
jobs = "deploy"
max = 2
every = "1h"
"#;

    fn p(env: &str) -> Params {
        [("env".to_string(), env.to_string()), ("note".into(), "x".into())]
            .into_iter()
            .collect()
    }

    #[test]
    fn freeze_hours_argv_and_rate() {
        let c = Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap();
        let a = &c.access;
        let pol = Policies::new(a);
        let job = c.catalog.get("deploy").unwrap();
        let argv = |e: &str, n: &str| vec!["deploy".to_string(), e.to_string(), n.to_string()];
        let berlin = chrono_tz::Europe::Berlin;
        // Wednesday 2026-11-25 10:00 Berlin: open.
        let wed = berlin.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap().with_timezone(&Utc);
        assert_eq!(pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], wed, None), Ok(vec![]));
        // Wednesday 20:00: out of hours, and the refusal says when it opens.
        let late = berlin.with_ymd_and_hms(2026, 11, 25, 20, 0, 0).unwrap().with_timezone(&Utc);
        let r = pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], late, None).unwrap_err();
        assert_eq!(r.policy.english(), "hours `office`");
        assert!(r.explain().contains("Thu 09:00"), "{}", r.explain());
        assert!(
            pol.check(a, job, &p("dev"), &argv("dev", "x"), &[], late, None).is_ok(),
            "dev is not limited"
        );
        // Friday 17:30: frozen (and hours are fine); an override turns it into a requirement.
        let fri = berlin.with_ymd_and_hms(2026, 11, 27, 17, 30, 0).unwrap().with_timezone(&Utc);
        let r = pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], fri, None).unwrap_err();
        assert_eq!(r.policy.english(), "freeze `weekend`");
        assert!(
            r.explain().contains("--override") && r.explain().contains("2 approvals"),
            "{}",
            r.explain()
        );
        let needs = pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], fri, Some("hotfix")).unwrap();
        assert_eq!(needs.len(), 1);
        assert_eq!(needs[0].policy, "freeze `weekend` override");
        assert_eq!(needs[0].count, 2);
    }

    #[test]
    fn cron_freeze_window() {
        let c = Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap();
        let rule = &c.access.freezes[0];
        let berlin = chrono_tz::Europe::Berlin;
        let at = |d, h| berlin.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap().with_timezone(&Utc);
        assert!(frozen_until(rule, at(27, 16), berlin).is_none(), "Friday before 17:00");
        let until = frozen_until(rule, at(27, 18), berlin).expect("Friday evening is frozen");
        assert_eq!(until, at(30, 8), "63 h after Friday 17:00 is Monday 08:00");
        assert!(frozen_until(rule, at(29, 12), berlin).is_some(), "Sunday");
        assert!(frozen_until(rule, at(30, 9), berlin).is_none(), "Monday 09:00");
    }

    #[test]
    fn argv_patterns_and_rate_limits() {
        let c = Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap();
        let a = &c.access;
        let pol = Policies::new(a);
        let job = c.catalog.get("deploy").unwrap();
        let wed = chrono_tz::Europe::Berlin
            .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let r = pol
            .check(a, job, &p("dev"), &["deploy".into(), "dev".into(), "$(id)".into()], &[], wed, None)
            .unwrap_err();
        assert_eq!(r.policy.english(), "deny_argv `no-subshell`");
        let who = crate::access::identify(a, &opsbot_core::UserId::new("cli", "x"), None, None);
        assert!(pol.take_rate(a, &who, job, &p("dev")).is_ok());
        assert!(pol.take_rate(a, &who, job, &p("dev")).is_ok());
        let r = pol.take_rate(a, &who, job, &p("dev")).unwrap_err();
        assert!(
            r.explain().contains("at most 2 runs") && r.explain().contains("Try again in"),
            "{}",
            r.explain()
        );
        let other = crate::access::identify(a, &opsbot_core::UserId::new("cli", "y"), None, None);
        assert!(pol.take_rate(a, &other, job, &p("dev")).is_ok(), "per person");
    }

    fn is_cjk(s: &str) -> bool {
        s.chars().any(opsbot_core::understand::is_cjk)
    }

    #[test]
    fn requirements_in_both_languages() {
        let r = |approvers: &[&str], count| Requirement {
            policy: "approval `prod`".into(),
            approvers: approvers.iter().map(|a| a.to_string()).collect(),
            count,
            expires_secs: 60,
        };
        assert_eq!(r(&["lead"], 1).describe(), "1 approval from `lead` (approval `prod`)");
        assert_eq!(
            r(&["lead", "admin"], 2).describe(),
            "2 approvals from `lead` or `admin` (approval `prod`)"
        );
        assert_eq!(
            r(&[], 0).describe(),
            "0 approvals from anyone allowed to approve it (approval `prod`)"
        );
        assert_eq!(r(&["lead"], 1).describe_in(Lang::En), r(&["lead"], 1).describe());
        assert_eq!(
            r(&["lead", "admin"], 2).describe_in(Lang::Zh),
            "`lead` 或 `admin` 角色中 2 人批准（approval `prod`）"
        );
        assert_eq!(r(&[], 1).describe_in(Lang::Zh), "有权批准的人中 1 人批准（approval `prod`）");
    }

    #[test]
    fn refusals_in_english_exactly_and_in_chinese() {
        let c = Config::parse(CFG, Path::new("/tmp/t.toml"), LoadOptions::default()).unwrap();
        let a = &c.access;
        let pol = Policies::new(a);
        let job = c.catalog.get("deploy").unwrap();
        let argv = |e: &str, n: &str| vec!["deploy".to_string(), e.to_string(), n.to_string()];
        let berlin = chrono_tz::Europe::Berlin;
        let late = berlin.with_ymd_and_hms(2026, 11, 25, 20, 0, 0).unwrap().with_timezone(&Utc);
        let r = pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], late, None).unwrap_err();
        assert_eq!(
            r.explain(),
            "Refused by hours `office`: deploy with env=prod may run only mon-fri 09:00-18:00 (Europe/Berlin); it is Wed 20:00 there. Ask again within those hours (next opening Thu 09:00)."
        );
        assert_eq!(r.explanation().english(), r.explain());
        assert_eq!(
            r.explain_in(Lang::Zh),
            "被 hours `office` 拒绝：deploy（env=prod）只能在 mon-fri 09:00-18:00（Europe/Berlin）运行；当地现在是 周三 20:00。请在这些时段内再试（下次开放：周四 09:00）。"
        );
        let fri = berlin.with_ymd_and_hms(2026, 11, 27, 17, 30, 0).unwrap().with_timezone(&Utc);
        let r = pol.check(a, job, &p("prod"), &argv("prod", "x"), &[], fri, None).unwrap_err();
        assert_eq!(
            r.explain(),
            "Refused by freeze `weekend`: deploy with env=prod is frozen until 2026-11-30 08:00 CET (no prod changes over the weekend). Wait until then, or ask again with `--override \"why\"`: the run then needs 2 approvals from `admin`."
        );
        assert_eq!(
            r.explain_in(Lang::Zh),
            "被 freeze `weekend` 拒绝：deploy（env=prod）冻结至 2026-11-30 08:00 CET（no prod changes over the weekend）。请等到冻结结束，或加上 `--override \"why\"` 重新请求：届时这次运行需要`admin` 角色中 2 人批准。"
        );
        let wed = berlin.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap().with_timezone(&Utc);
        let r = pol
            .check(a, job, &p("dev"), &["deploy".into(), "dev".into(), "$(id)".into()], &[], wed, None)
            .unwrap_err();
        assert_eq!(
            r.explain(),
            r"Refused by deny_argv `no-subshell`: argv[2] would match the forbidden pattern `\$\(|``. Use values that do not produce it."
        );
        let zh = r.explain_in(Lang::Zh);
        assert!(
            zh.starts_with("被 deny_argv `no-subshell` 拒绝：argv[2] 会匹配禁止的模式") && zh.ends_with("请换用不会产生它的取值。"),
            "{zh}"
        );
        let lock = Lock {
            id: 1,
            job: Some("deploy".into()),
            params: Params::new(),
            scope: "deploy".into(),
            reason: "db migration".into(),
            by: opsbot_core::UserId::new("cli", "ops"),
            by_name: "Ops".into(),
            at: Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap(),
        };
        let r = pol.check(a, job, &p("dev"), &argv("dev", "x"), &[lock], wed, None).unwrap_err();
        assert_eq!(
            r.explain(),
            "Refused by lock `deploy`: Ops locked it at 2026-11-25 09:00 UTC: \"db migration\". It runs once someone unlocks it (`unlock deploy`)."
        );
        assert_eq!(
            r.explain_in(Lang::Zh),
            "被 lock `deploy` 拒绝：Ops 于 2026-11-25 09:00 UTC 锁定了它：“db migration”。有人解锁（`unlock deploy`）后即可运行。"
        );
        let who = crate::access::identify(a, &opsbot_core::UserId::new("cli", "x"), None, None);
        assert!(pol.take_rate(a, &who, job, &p("dev")).is_ok());
        assert!(pol.take_rate(a, &who, job, &p("dev")).is_ok());
        let r = pol.take_rate(a, &who, job, &p("dev")).unwrap_err();
        assert!(
            r.explain()
                .starts_with("Refused by rate_limit `deploys`: at most 2 runs of deploy per person every 1h. Try again in "),
            "{}",
            r.explain()
        );
        let zh = r.explain_in(Lang::Zh);
        assert!(
            zh.starts_with("被 rate_limit `deploys` 拒绝：deploy 每 1h 最多运行 2 次（每人分别计算）。请在 ") && is_cjk(&zh),
            "{zh}"
        );
    }
}
