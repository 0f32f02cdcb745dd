//! The understand step as one function, shared by the engine and `opsbot understand`: the
//! exact grammar and alias templates first, then the natural-language layer, with a time to
//! run at taken out of the text first.

use crate::grammar::Grammar;
use opsbot_core::job::{Catalog, JobSpec, closest};
use opsbot_core::{Candidate, Command, Context, Lang, Params, Understand, Verdict, When};

/// What the engine makes of a text, and why.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// The language of the text.
    pub lang: Lang,
    /// Which layer decided: `grammar` (explicit grammar or alias), `nlu` or `none`.
    pub source: &'static str,
    /// What to do.
    pub verdict: Verdict,
    /// Readings, best first.
    pub candidates: Vec<Candidate>,
    /// When to run it, if the text says and the reading is a run.
    pub when: Option<When>,
    /// A time the text names (outside quoted values), whatever the reading: for a proposal the
    /// LLM provider may make of a text nothing else understood.
    pub time_in_text: Option<When>,
    /// The grammar's error, when the text was a command it could not read.
    pub error: Option<String>,
}

impl Explanation {
    fn of(u: opsbot_core::Understanding, time_in_text: Option<When>) -> Self {
        Explanation {
            lang: u.lang,
            source: if u.verdict == Verdict::Unknown { "none" } else { "nlu" },
            verdict: u.verdict,
            candidates: u.candidates,
            when: u.when,
            time_in_text,
            error: None,
        }
    }

    fn nothing(lang: Lang, time_in_text: Option<When>, error: Option<String>) -> Self {
        Explanation {
            lang,
            source: "none",
            verdict: Verdict::Unknown,
            candidates: Vec::new(),
            when: None,
            time_in_text,
            error,
        }
    }
}

/// Reads a text the way the engine does.
pub fn explain(grammar: &Grammar, catalog: &Catalog, nlu: Option<&dyn Understand>, text: &str, ctx: &Context<'_>) -> Explanation {
    let lang = Lang::detect(text).unwrap_or_default();
    let found = opsbot_nlu::time::find(text, ctx.now, ctx.tz).filter(|w| opsbot_nlu::time::outside_values(text, &w.span));
    let exact = |cmd: Command, when: Option<When>| Explanation {
        lang,
        source: "grammar",
        verdict: Verdict::Proceed,
        candidates: vec![Candidate {
            command: cmd,
            confidence: 1.0,
            why: "the command grammar or an alias template".into(),
        }],
        when,
        time_in_text: found.clone(),
        error: None,
    };
    // `run deploy app=api env=dev at 23:30`: the grammar reads what is left once the time is out.
    if let Some(w) = &found {
        let rest = format!("{} {}", &text[..w.span.start], &text[w.span.end..]);
        if let Ok(Some(cmd @ Command::Run { .. })) = grammar.parse(rest.trim(), catalog)
            && (binds(catalog, &cmd) || has_pairs(text))
        {
            return exact(cmd, Some(w.clone()));
        }
    }
    let error = match grammar.parse(text, catalog) {
        // A run whose words do not bind (`restart the database on db2` read as positional
        // values, `run a health check` as job `a`) is natural language that happens to start
        // with a job's name: natural language may read it when it is sure; else the grammar's
        // reading stands, and binding says exactly what is wrong.
        Ok(Some(cmd @ Command::Run { .. })) if !binds(catalog, &cmd) && !has_pairs(text) => {
            if let Some(u) = nlu.map(|n| n.understand(text, ctx))
                && u.verdict == Verdict::Proceed
            {
                return Explanation::of(u, found);
            }
            return exact(cmd, None);
        }
        Ok(Some(cmd)) => return exact(cmd, None),
        Ok(None) => None,
        Err(e) => Some(e.0),
    };
    let Some(n) = nlu else {
        return Explanation::nothing(lang, found, error);
    };
    let u = n.understand(text, ctx);
    // A grammar error is precise; natural language overrides it only when it is sure, and never
    // for text written as a command (`key=value`, quotes: an unclosed quote stays an error).
    if error.is_some() && (u.verdict != Verdict::Proceed || text.contains(['=', '"', '\'', '\u{201C}', '\u{2018}'])) {
        return Explanation::nothing(u.lang, found, error);
    }
    Explanation::of(u, found)
}

fn binds(catalog: &Catalog, cmd: &Command) -> bool {
    match cmd {
        Command::Run { job, params, positional } => catalog
            .get(job)
            .is_some_and(|spec| bind(spec, params.clone(), positional.clone(), false).is_ok()),
        _ => true,
    }
}

/// Whether the text gives `key=value` pairs: then it is the explicit grammar, read as written.
fn has_pairs(text: &str) -> bool {
    crate::grammar::tokenize(text).is_ok_and(|t| t.iter().any(|t| t.key.is_some()))
}

/// Binds raw arguments to a job's params: named first, then positional in declared order;
/// canonicalises every value; fills defaults when `defaults`. Returns the params and the
/// required ones still missing, or every problem found.
pub fn bind(
    job: &JobSpec,
    named: Vec<(String, String)>,
    positional: Vec<String>,
    defaults: bool,
) -> Result<(Params, Vec<String>), Vec<String>> {
    let mut params = Params::new();
    let mut problems = Vec::new();
    for (k, v) in named {
        match job.param(&k) {
            Some(spec) => {
                if params.contains_key(&spec.name) {
                    problems.push(format!("`{}` is given twice.", spec.name));
                    continue;
                }
                match spec.normalize(&v) {
                    Ok(v) => {
                        params.insert(spec.name.clone(), v);
                    }
                    Err(e) => problems.push(format!("{e}")),
                }
            }
            None => {
                let names: Vec<&str> = job.params.iter().map(|p| p.name.as_str()).collect();
                let hint = match closest(&k, names.iter().copied()) {
                    Some(s) => format!(" Did you mean `{s}`?"),
                    None if names.is_empty() => format!(" `{}` takes no parameters.", job.name),
                    None => format!(" Its parameters: {}.", names.join(", ")),
                };
                problems.push(format!(
                    "`{}` has no parameter `{}`.{hint}",
                    job.name,
                    opsbot_core::job::shorten(&k, 40)
                ));
            }
        }
    }
    let free: Vec<&opsbot_core::ParamSpec> = job.params.iter().filter(|p| !params.contains_key(&p.name)).collect();
    if positional.len() > free.len() {
        let extra: Vec<String> = positional[free.len()..]
            .iter()
            .map(|s| format!("`{}`", opsbot_core::job::shorten(s, 40)))
            .collect();
        let order: Vec<&str> = job.params.iter().map(|p| p.name.as_str()).collect();
        problems.push(format!(
            "Too many values: {} left over. `{}` takes {} in this order: {}.",
            extra.join(", "),
            job.name,
            order.len(),
            if order.is_empty() { "(none)".to_string() } else { order.join(", ") }
        ));
    }
    for (spec, v) in free.iter().zip(positional) {
        match spec.normalize(&v) {
            Ok(v) => {
                params.insert(spec.name.clone(), v);
            }
            Err(e) => problems.push(format!("{e}")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut missing = Vec::new();
    for p in &job.params {
        if !params.contains_key(&p.name) {
            match (&p.default, p.required) {
                (Some(d), _) if defaults => {
                    params.insert(p.name.clone(), d.clone());
                }
                (Some(_), _) => {}
                (None, true) => missing.push(p.name.clone()),
                (None, false) => {}
            }
        }
    }
    Ok((params, missing))
}

/// A command as one canonical line (`run deploy app=web env=prod`, `status 23`), the values
/// given (not defaults) in the job's declared order. `None` for a run that does not bind.
pub fn canonical(catalog: &Catalog, cmd: &Command) -> Option<String> {
    line(catalog, cmd, false)
}

/// [`canonical`] with the values of `secret` params shown as `••••`: for replies and the audit.
pub fn canonical_shown(catalog: &Catalog, cmd: &Command) -> Option<String> {
    line(catalog, cmd, true)
}

fn line(catalog: &Catalog, cmd: &Command, redact: bool) -> Option<String> {
    Some(match cmd {
        Command::Run { job, params, positional } => {
            let spec = catalog.get(job)?;
            let (bound, _) = bind(spec, params.clone(), positional.clone(), false).ok()?;
            let mut s = format!("run {}", spec.name);
            for p in &spec.params {
                if let Some(v) = bound.get(&p.name) {
                    let shown = if redact && p.secret {
                        "••••".to_string()
                    } else {
                        crate::grammar::quote_arg(v)
                    };
                    s.push_str(&format!(" {}={shown}", p.name));
                }
            }
            s
        }
        Command::Help(None) => "help".into(),
        Command::Help(Some(j)) => format!("help {j}"),
        Command::List => "list".into(),
        Command::Status(id) => format!("status {id}"),
        Command::Cancel(id) => format!("cancel {id}"),
        Command::Logs { id, all } => format!("logs {id}{}", if *all { " --all" } else { "" }),
        Command::History { job, mine, limit } => {
            let mut s = "history".to_string();
            if let Some(j) = job {
                s.push_str(&format!(" {j}"));
            }
            if *mine {
                s.push_str(" --mine");
            }
            if let Some(l) = limit {
                s.push_str(&format!(" --limit {l}"));
            }
            s
        }
        Command::Whoami => "whoami".into(),
        Command::Ping => "ping".into(),
        Command::Yes => "yes".into(),
        Command::No => "no".into(),
        Command::Approve(id) => format!("approve {id}"),
        Command::Deny { id, .. } => format!("deny {id}"),
        Command::Approvals => "approvals".into(),
        Command::Locks => "locks".into(),
        Command::Lock { .. } => "lock".into(),
        Command::Unlock { .. } => "unlock".into(),
        Command::Link(_) => "link".into(),
        Command::Unlink(a) => format!("unlink {a}"),
        Command::Schedules => "schedules".into(),
        Command::Unschedule(id) => format!("unschedule {id}"),
    })
}

/// Whether this reading would start (or schedule) a run without asking anything more than a
/// missing value: the verdict proceeds and the values bind.
pub fn would_run(catalog: &Catalog, e: &Explanation) -> bool {
    e.verdict == Verdict::Proceed
        && e.candidates.first().is_some_and(|c| match &c.command {
            Command::Run { job, params, positional } => catalog
                .get(job)
                .is_some_and(|spec| bind(spec, params.clone(), positional.clone(), true).is_ok()),
            _ => false,
        })
}
