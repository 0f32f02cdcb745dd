//! `opsbot understand "TEXT"`: what the engine would make of a text and why, without running
//! anything; `--eval FILE.tsv` scores a labelled file.

use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, Utc};
use opsbot_core::job::Catalog;
use opsbot_core::{Command, Context, Understand, Verdict};
use opsbot_engine::grammar::Grammar;
use opsbot_engine::understand::{Explanation, canonical, explain, would_run};
use opsbot_nlu::Nlu;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Explains one text.
pub fn understand(
    config: &Path,
    text: Option<String>,
    json_out: bool,
    eval: Option<&Path>,
    now: Option<String>,
    jobs: Option<usize>,
) -> Result<ExitCode> {
    let cfg = crate::runtime::load_config_with(config, opsbot_core::config::LoadOptions { resolve_secrets: false })?;
    let tz = cfg.bot.timezone;
    match (text, eval) {
        (Some(_), Some(_)) => bail!("give either a TEXT or --eval FILE, not both"),
        (None, None) => bail!("give the TEXT to explain, e.g. opsbot understand \"deploy web to staging\", or --eval FILE.tsv"),
        (None, Some(file)) => evaluate(&cfg.catalog, file, jobs, json_out),
        (Some(text), None) => {
            let now = match now {
                Some(n) => parse_now(&n)?,
                None => Utc::now(),
            };
            let nlu = cfg.nlu.enabled.then(|| Nlu::new(&cfg.catalog));
            let grammar = Grammar::new(&cfg.catalog);
            let ctx = Context {
                catalog: &cfg.catalog,
                now,
                tz,
            };
            let e = explain(&grammar, &cfg.catalog, nlu.as_ref().map(|n| n as &dyn Understand), &text, &ctx);
            let runs = would_run(&cfg.catalog, &e);
            if json_out {
                println!("{}", serde_json::to_string_pretty(&to_json(&cfg.catalog, &text, &e, runs, tz))?);
            } else {
                print_human(&cfg.catalog, &text, &e, runs, tz, cfg.nlu.llm.is_some());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_now(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("`{s}` is not an RFC 3339 time such as 2026-03-04T10:00:00+08:00"))
}

fn verdict_name(v: &Verdict) -> (&'static str, Option<&str>) {
    match v {
        Verdict::Proceed => ("proceed", None),
        Verdict::Confirm => ("confirm", None),
        Verdict::Choose => ("choose", None),
        Verdict::Refuse(r) => ("refuse", Some(r.as_str())),
        Verdict::Unknown => ("unknown", None),
    }
}

fn line(catalog: &Catalog, c: &Command) -> String {
    canonical(catalog, c).unwrap_or_else(|| format!("{c:?}"))
}

fn to_json(catalog: &Catalog, text: &str, e: &Explanation, runs: bool, tz: chrono_tz::Tz) -> serde_json::Value {
    let (verdict, refusal) = verdict_name(&e.verdict);
    json!({
        "text": text,
        "lang": e.lang.code(),
        "layer": e.source,
        "verdict": verdict,
        "refusal": refusal,
        "command": e.candidates.first().map(|c| line(catalog, &c.command)),
        "confidence": e.candidates.first().map(|c| c.confidence),
        "at": e.when.as_ref().map(|w| w.at.to_rfc3339()),
        "at_local": e.when.as_ref().map(|w| opsbot_nlu::time::show(w.at, tz)),
        "would_run": runs,
        "grammar_error": e.error,
        "candidates": e.candidates.iter().map(|c| json!({
            "command": line(catalog, &c.command),
            "confidence": c.confidence,
            "why": c.why,
        })).collect::<Vec<_>>(),
    })
}

fn print_human(catalog: &Catalog, text: &str, e: &Explanation, runs: bool, tz: chrono_tz::Tz, llm: bool) {
    let (verdict, refusal) = verdict_name(&e.verdict);
    println!("text:       {text}");
    println!("language:   {}", e.lang.code());
    println!("layer:      {}", e.source);
    let what = match (&e.verdict, e.candidates.first()) {
        (Verdict::Proceed, Some(c)) => format!("proceed (confidence {:.2}): act on it", c.confidence),
        (Verdict::Confirm, Some(c)) => format!("confirm (confidence {:.2}): ask \"Did you mean …?\"", c.confidence),
        (Verdict::Choose, _) => "choose: offer the readings below".to_string(),
        (Verdict::Refuse(_), _) => format!("refuse ({})", refusal.unwrap_or("")),
        _ => format!("{verdict}: not understood; the person is pointed to `help`"),
    };
    println!("verdict:    {what}");
    if let Some(c) = e.candidates.first() {
        println!("command:    {}", line(catalog, &c.command));
        println!("why:        {}", c.why);
    }
    if let Some(w) = &e.when {
        println!("at:         {}", opsbot_nlu::time::show(w.at, tz));
    }
    if let Some(err) = &e.error {
        println!("grammar:    {err}");
    }
    println!(
        "would run:  {}",
        if runs {
            if e.when.is_some() {
                "yes, scheduled (after the confirmations and approvals its policies ask for)"
            } else {
                "yes (after the confirmations and approvals its policies ask for)"
            }
        } else {
            "no"
        }
    );
    if e.verdict == Verdict::Unknown && llm {
        println!("llm:        [nlu.llm] is configured: opsbot serve would ask it, and show its proposal to confirm");
    }
    if e.candidates.len() > 1 {
        println!("other readings:");
        for c in &e.candidates[1..] {
            println!("  {:.2}  {}  ({})", c.confidence, line(catalog, &c.command), c.why);
        }
    }
}

/// One labelled line of an evaluation file.
struct Case {
    line: usize,
    text: String,
    expected: String,
    when: Option<String>,
}

fn read_cases(file: &Path) -> Result<(Vec<Case>, DateTime<Utc>, chrono_tz::Tz)> {
    let body = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut now = None;
    let mut tz = None;
    let mut cases = Vec::new();
    for (i, l) in body.lines().enumerate() {
        if let Some(c) = l.strip_prefix('#') {
            let c = c.trim();
            if let Some(v) = c.strip_prefix("now:") {
                now = Some(parse_now(v).with_context(|| format!("{}:{}", file.display(), i + 1))?);
            } else if let Some(v) = c.strip_prefix("tz:") {
                tz = Some(
                    v.trim()
                        .parse::<chrono_tz::Tz>()
                        .map_err(|_| anyhow::anyhow!("{}:{}: `{}` is not a time zone", file.display(), i + 1, v.trim()))?,
                );
            }
            continue;
        }
        if l.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = l.split('\t').collect();
        if cols.len() < 2 || cols.len() > 3 {
            bail!(
                "{}:{}: expected TEXT<TAB>EXPECTED[<TAB>WHEN], got {} column(s)",
                file.display(),
                i + 1,
                cols.len()
            );
        }
        cases.push(Case {
            line: i + 1,
            text: cols[0].to_string(),
            expected: cols[1].trim().to_string(),
            when: cols.get(2).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        });
    }
    let now = now.ok_or_else(|| anyhow::anyhow!("{}: needs a `# now: 2026-03-04T10:00:00+08:00` line", file.display()))?;
    Ok((cases, now, tz.unwrap_or(chrono_tz::UTC)))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Times every case `rounds` times over a catalog; returns per-utterance microseconds (sorted).
fn time_cases(catalog: &Catalog, cases: &[Case], now: DateTime<Utc>, tz: chrono_tz::Tz, rounds: usize) -> (Vec<f64>, f64) {
    let t0 = Instant::now();
    let nlu = Nlu::new(catalog);
    let grammar = Grammar::new(catalog);
    let build_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let ctx = Context { catalog, now, tz };
    let mut times = Vec::with_capacity(cases.len() * rounds);
    for _ in 0..rounds {
        for c in cases {
            let t = Instant::now();
            let e = explain(&grammar, catalog, Some(&nlu), &c.text, &ctx);
            std::hint::black_box(&e);
            times.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    times.sort_by(f64::total_cmp);
    (times, build_ms)
}

fn evaluate(catalog: &Catalog, file: &Path, jobs: Option<usize>, json_out: bool) -> Result<ExitCode> {
    let (cases, now, tz) = read_cases(file)?;
    let nlu = Nlu::new(catalog);
    let grammar = Grammar::new(catalog);
    let ctx = Context { catalog, now, tz };
    #[derive(Default, Clone, Copy)]
    struct Tally {
        n: u32,
        right: u32,
        asked_right: u32,
    }
    let (mut all, mut en, mut zh) = (Tally::default(), Tally::default(), Tally::default());
    let (mut must_not, mut violations, mut proposed) = (0u32, 0u32, 0u32);
    let mut bins = [(0u32, 0u32); 4];
    let mut failures = Vec::new();
    for c in &cases {
        let e = explain(&grammar, catalog, Some(&nlu), &c.text, &ctx);
        let got = e.candidates.first().map(|x| line(catalog, &x.command)).unwrap_or_default();
        let conf = e.candidates.first().map(|x| x.confidence).unwrap_or(0.0);
        let runs = would_run(catalog, &e);
        let lang = if c.text.chars().any(opsbot_core::understand::is_cjk) {
            &mut zh
        } else {
            &mut en
        };
        let (ok, asked_ok) = if c.expected == "none" {
            must_not += 1;
            let offers_run =
                matches!(e.verdict, Verdict::Confirm) && e.candidates.first().is_some_and(|x| matches!(x.command, Command::Run { .. }));
            if runs {
                violations += 1;
            } else if offers_run {
                proposed += 1;
            }
            (!runs && !offers_run, !runs)
        } else {
            let when_ok = match (&c.when, &e.when) {
                (None, None) => true,
                (Some(want), Some(w)) => w.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string() == *want,
                _ => false,
            };
            let same = got == c.expected && when_ok;
            let acted = e.verdict == Verdict::Proceed;
            (
                same && acted,
                same && matches!(e.verdict, Verdict::Proceed | Verdict::Confirm | Verdict::Choose),
            )
        };
        for t in [&mut all, lang] {
            t.n += 1;
            t.right += ok as u32;
            t.asked_right += asked_ok as u32;
        }
        if c.expected != "none" && !e.candidates.is_empty() {
            let b = if conf >= 0.8 {
                3
            } else if conf >= 0.5 {
                2
            } else if conf >= 0.25 {
                1
            } else {
                0
            };
            bins[b].0 += 1;
            bins[b].1 += (got == c.expected) as u32;
        }
        if !ok {
            failures.push(format!(
                "{}:{}\t{}\texpected `{}`{}\tgot `{}` ({}, {:.2}){}",
                file.display(),
                c.line,
                c.text,
                c.expected,
                c.when.as_deref().map(|w| format!(" at {w}")).unwrap_or_default(),
                got,
                verdict_name(&e.verdict).0,
                conf,
                e.when
                    .as_ref()
                    .map(|w| format!(" at {}", w.at.with_timezone(&tz).format("%Y-%m-%d %H:%M")))
                    .unwrap_or_default()
            ));
        }
    }
    let rounds = 20;
    let (times, _) = time_cases(catalog, &cases, now, tz, rounds);
    let big_n = jobs.unwrap_or(500);
    let big = opsbot_nlu::synthetic::catalog(catalog, big_n.saturating_sub(catalog.len()));
    let (big_times, big_build) = time_cases(&big, &cases, now, tz, rounds);
    let pct = |a: u32, b: u32| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "cases": all.n, "acted_right": all.right, "accuracy": pct(all.right, all.n) / 100.0,
                "right_incl_asked": all.asked_right,
                "en": {"cases": en.n, "acted_right": en.right}, "zh": {"cases": zh.n, "acted_right": zh.right},
                "must_not_run": must_not, "must_not_run_that_would_run": violations, "must_not_run_offered": proposed,
                "example_catalog": {"jobs": catalog.len(), "p50_us": percentile(&times, 0.5), "p99_us": percentile(&times, 0.99)},
                "large_catalog": {"jobs": big.len(), "build_ms": big_build, "p50_us": percentile(&big_times, 0.5), "p99_us": percentile(&big_times, 0.99)},
                "failures": failures,
            }))?
        );
    } else {
        println!(
            "evaluation of {} ({} utterances, now {}, {})",
            file.display(),
            all.n,
            now.with_timezone(&tz),
            tz
        );
        println!();
        println!("| set | utterances | acted on, right | right, incl. when asked first |");
        println!("|---|---:|---:|---:|");
        for (name, t) in [("all", all), ("English", en), ("Chinese", zh)] {
            println!(
                "| {name} | {} | {} ({:.1} %) | {} ({:.1} %) |",
                t.n,
                t.right,
                pct(t.right, t.n),
                t.asked_right,
                pct(t.asked_right, t.n)
            );
        }
        println!();
        println!("must-not-run utterances: {must_not}; that would run: {violations} (target 0); offered as \"Did you mean\": {proposed}");
        println!();
        println!("| confidence | readings | right |");
        println!("|---|---:|---:|");
        for (i, name) in ["< 0.25", "0.25–0.5 (choose)", "0.5–0.8 (confirm)", "≥ 0.8 (proceed)"]
            .iter()
            .enumerate()
        {
            println!("| {name} | {} | {} ({:.0} %) |", bins[i].0, bins[i].1, pct(bins[i].1, bins[i].0));
        }
        println!();
        println!("| catalog | jobs | p50 per utterance | p99 per utterance |");
        println!("|---|---:|---:|---:|");
        println!(
            "| example | {} | {:.1} µs | {:.1} µs |",
            catalog.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
        println!(
            "| generated (index built in {:.1} ms) | {} | {:.1} µs | {:.1} µs |",
            big_build,
            big.len(),
            percentile(&big_times, 0.5),
            percentile(&big_times, 0.99)
        );
        println!(
            "({} timings each: every utterance {rounds} times, grammar + natural language, one thread)",
            times.len()
        );
        if !failures.is_empty() {
            println!();
            println!("not right ({}):", failures.len());
            for f in &failures {
                println!("  {f}");
            }
        }
    }
    Ok(if violations > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
