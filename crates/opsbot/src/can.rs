//! `opsbot can WHO VERB JOB [key=value …]`: explains what the access rules and policies decide,
//! without running anything.

use anyhow::Result;
use opsbot_core::config::{Config, Verb, parse_account};
use opsbot_core::{Params, Place, UserId};
use opsbot_engine::access::{self, Known, Person};
use opsbot_engine::policy::{Policies, render_argv};
use opsbot_store::{SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Prints the decision and the rule behind it. Exit 0 allowed, 1 denied, 2 a bad question.
pub async fn can(
    config: &Path,
    db: Option<PathBuf>,
    who: String,
    verb: String,
    job: String,
    args: Vec<String>,
    place: Option<String>,
) -> Result<ExitCode> {
    let cfg = Config::load(config)?;
    let bad = |msg: String| {
        eprintln!("opsbot: {msg}");
        Ok(ExitCode::from(2))
    };
    let verb: Verb = match verb.parse() {
        Ok(v) => v,
        Err(_) => {
            return bad(format!(
                "`{verb}` is not a verb; ask about one of run, cancel, approve, view, admin"
            ));
        }
    };
    let Some(spec) = cfg.catalog.get(&job) else {
        return bad(format!("there is no job `{job}`; `opsbot check` lists the jobs"));
    };
    let place = match place {
        Some(p) => match p.split_once('/') {
            Some((a, b)) if !a.is_empty() && !b.is_empty() => Place::new(a, b.trim_start_matches('#')),
            _ => {
                return bad(format!(
                    "`{p}` is not a place: write PLATFORM/CHANNEL, e.g. web/ops or slack/C024BE91L"
                ));
            }
        },
        None => Place::new("web", cfg.web.channels.first().cloned().unwrap_or_else(|| "ops".into())),
    };
    // WHO: a person of the config, or an account (listed, linked in the store, or unknown).
    let person: Person = if let Some(p) = cfg.access.person(&who) {
        let account = p.accounts.first().cloned().unwrap_or_else(|| UserId::new("person", &p.key));
        access::identify(&cfg.access, &account, None, None)
    } else {
        let account = match parse_account(&who) {
            Ok(a) => a,
            Err(_) => return bad(format!("`{who}` is neither a person of the config nor an account (PLATFORM:ID)")),
        };
        let db = db.unwrap_or_else(|| cfg.store.path.clone());
        let linked = if cfg.access.person_with_account(&account).is_none() && db.exists() {
            let store = SqliteStore::open(&db).await?;
            store.linked_person(&account).await?
        } else {
            None
        };
        access::identify(&cfg.access, &account, None, linked.as_deref())
    };
    let mut params = Params::new();
    for a in &args {
        let Some((k, v)) = a.split_once('=') else {
            return bad(format!("`{a}` is not key=value"));
        };
        let Some(p) = spec.param(k) else {
            return bad(format!("`{}` has no parameter `{k}`", spec.name));
        };
        match p.normalize(v) {
            Ok(v) => {
                params.insert(p.name.clone(), v);
            }
            Err(e) => return bad(e.message),
        }
    }
    for p in &spec.params {
        if !params.contains_key(&p.name)
            && let Some(d) = &p.default
        {
            params.insert(p.name.clone(), d.clone());
        }
    }
    let who_text = match (&person.known, &person.key) {
        (Known::Listed, Some(k)) | (Known::Linked, Some(k)) => format!("{} (person `{k}`, account {})", person.name, person.account),
        (Known::Local, _) => format!("{} (local command line)", person.account),
        _ => format!("{} (unknown account)", person.account),
    };
    let shown: Vec<String> = spec
        .params
        .iter()
        .filter_map(|p| {
            params
                .get(&p.name)
                .map(|v| format!("{}={}", p.name, if p.secret { "••••" } else { v }))
        })
        .collect();
    println!("{who_text}, roles: {}", person.roles.join(", "));
    println!("asks: {verb} {} {} in {}", spec.name, shown.join(" "), place.key());
    let d = access::decide(&cfg.access, &person, verb, spec, Some(&params), &place);
    if !d.allowed() {
        println!("DENIED — {}", d.explain());
        return Ok(ExitCode::from(1));
    }
    println!("ALLOWED — {}", d.explain());
    if verb == Verb::Run {
        let missing: Vec<&str> = spec
            .params
            .iter()
            .filter(|p| p.required && !params.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            println!("note: the run would first ask for {}", missing.join(", "));
        }
        let argv = render_argv(&opsbot_core::job::template_env(), spec, &params, &person.account.to_string());
        let policies = Policies::new(&cfg.access);
        match policies.check(&cfg.access, spec, &params, &argv, &[], chrono::Utc::now(), None) {
            Ok(needs) if needs.is_empty() => println!("policies now: nothing stops it (locks are not checked here: `locks` in chat)"),
            Ok(needs) => {
                for n in needs {
                    println!("policies now: needs {}", n.describe());
                }
            }
            Err(r) => println!("policies now: {}", r.explain()),
        }
        if spec.sensitive {
            println!("note: `{}` is sensitive: the requester confirms first", spec.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}
