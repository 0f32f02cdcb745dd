//! Chat text → the command grammar: addressing, tokens, quoting, alias templates and param types,
//! over a fixed catalog (fuzz_targets/catalog.toml). Besides "no panic" it checks what
//! crates/opsbot-engine/src/grammar.rs and opsbot-core's job.rs promise in their docs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::job::{Catalog, ParamKind, ParamSpec};
use opsbot_core::{Command, Envelope, Place, UserId};
use opsbot_engine::grammar::{Grammar, address, cli_arg, parse_id, quote_arg, tokenize};
use std::path::Path;
use std::sync::LazyLock;

const CATALOG: &str = include_str!("catalog.toml");

struct Fixture {
    catalog: Catalog,
    grammar: Grammar,
    prefixes: Vec<String>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let config =
        Config::parse(CATALOG, Path::new("/tmp/fuzz/opsbot.toml"), LoadOptions { resolve_secrets: false }).unwrap_or_else(|e| match e {
            opsbot_core::LoadError::Invalid(d) => panic!("fixture config is invalid: {d:#?}"),
            e => panic!("{e}"),
        });
    let catalog = config.catalog;
    assert_eq!(catalog.len(), 5, "fixture catalog");
    let grammar = Grammar::new(&catalog);
    Fixture {
        catalog,
        grammar,
        prefixes: config.bot.prefixes,
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let fx = &*FIXTURE;

    check_address(text, &fx.prefixes);
    let tokens = check_tokenize(text);
    check_quoting(text);
    for t in tokens.iter().flatten() {
        check_quoting(&t.text);
    }
    check_parse(text, fx, tokens.as_deref());
    for job in fx.catalog.jobs() {
        for p in &job.params {
            check_normalize(p, text);
            if let Some(toks) = &tokens {
                for t in toks.iter().take(4) {
                    check_normalize(p, &t.text);
                }
            }
        }
    }
    if let Some(first) = tokens.as_ref().and_then(|t| t.first()) {
        let _ = fx.grammar.knows(&first.text);
        let _ = fx.grammar.suggest(&first.text);
    }
    if let Some(id) = parse_id(text) {
        assert!(id > 0, "parse_id({text:?}) = {id}");
    }
});

fn is_subslice(inner: &str, outer: &str) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

/// `address`: the result is a piece of the message (the mention or prefix removed, trimmed);
/// "Direct messages are always addressed".
fn check_address(text: &str, prefixes: &[String]) {
    let mut env = Envelope::direct(UserId::new("fuzz", "u1"), Place::new("fuzz", "c1"), text);
    for (direct, mentioned) in [(false, false), (false, true), (true, false)] {
        env.direct = direct;
        env.mentioned = mentioned;
        let got = address(&env, "opsbot", prefixes);
        if let Some(rest) = got {
            assert!(is_subslice(rest, &env.text), "address({text:?}) is not part of the text: {rest:?}");
            assert_eq!(rest, rest.trim(), "address({text:?}) is not trimmed");
        }
        if direct || mentioned {
            assert!(got.is_some(), "a direct/mentioned message must be addressed: {text:?}");
        }
    }
}

/// `tokenize`: whitespace separates words, so an unquoted word has none; `key` is the
/// identifier before an unquoted `=`.
fn check_tokenize(text: &str) -> Option<Vec<opsbot_engine::grammar::Token>> {
    let toks = tokenize(text).ok()?;
    if text.trim().is_empty() {
        assert!(toks.is_empty(), "blank text gave tokens: {toks:?}");
    }
    for t in &toks {
        if !t.quoted {
            assert!(
                !t.text.contains(char::is_whitespace),
                "unquoted token with whitespace: {t:?} from {text:?}"
            );
        }
        if let Some(k) = &t.key {
            let mut c = k.chars();
            assert!(
                c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "key is not an identifier: {t:?} from {text:?}"
            );
        }
    }
    Some(toks)
}

/// `quote_arg`: "Quotes one argument so that tokenize reads it back as one literal value (never
/// as a key=value pair)". `cli_arg`: `key=value` / `--key=value` keep the key and quote the
/// value; anything else is one positional value.
fn check_quoting(s: &str) {
    let q = quote_arg(s);
    let t = tokenize(&q).unwrap_or_else(|e| panic!("quote_arg({s:?}) = {q:?} does not tokenize: {e}"));
    assert_eq!(t.len(), 1, "quote_arg({s:?}) = {q:?} gave {t:?}");
    assert_eq!(t[0].text, s, "quote_arg({s:?}) = {q:?} read back differently");
    assert_eq!(t[0].key, None, "quote_arg({s:?}) = {q:?} read as key=value");

    let c = cli_arg(s);
    let t = tokenize(&c).unwrap_or_else(|e| panic!("cli_arg({s:?}) = {c:?} does not tokenize: {e}"));
    assert_eq!(t.len(), 1, "cli_arg({s:?}) = {c:?} gave {t:?}");
    let ident = |k: &str| {
        let mut c = k.chars();
        c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let expect = match s.split_once('=') {
        Some((k, v)) if ident(k) => (Some(k.to_lowercase()), v),
        Some((k, v)) if k.strip_prefix("--").is_some_and(ident) => (Some(k[2..].to_lowercase()), v),
        _ => (None, s),
    };
    assert_eq!((t[0].key.clone(), t[0].text.as_str()), expect, "cli_arg({s:?}) = {c:?}");
}

/// `Grammar::parse`: ids are positive; a `Run` reached any other way than `run JOB …` names a
/// job of the catalog (a job name or an alias), and `run JOB` names the word after `run`.
/// Alias-built runs only carry params the job declares or `key=value` extras from the text.
fn check_parse(text: &str, fx: &Fixture, toks: Option<&[opsbot_engine::grammar::Token]>) {
    let got = fx.grammar.parse(text, &fx.catalog);
    let again = fx.grammar.parse(text, &fx.catalog);
    assert_eq!(got, again, "parse is not deterministic for {text:?}");
    let Ok(Some(cmd)) = got else { return };
    let toks = toks.expect("parsed text must tokenize");
    match &cmd {
        Command::Run { job, params, .. } => {
            let first = &toks[0];
            if first.text.to_lowercase() == "run" {
                assert_eq!(
                    Some(job),
                    toks.get(1).map(|t| &t.text),
                    "`run JOB` names another job: {text:?} → {cmd:?}"
                );
            } else {
                let spec = fx
                    .catalog
                    .get(job)
                    .unwrap_or_else(|| panic!("{text:?} → {cmd:?}: job `{job}` is not in the catalog"));
                for (k, _) in params {
                    let declared = spec.param(k).is_some();
                    // `key=value` extras, or `--key value` when the job's name came first.
                    let extra = toks.iter().any(|t| t.key.as_deref() == Some(k.as_str()))
                        || toks.iter().any(|t| !t.quoted && t.text.starts_with("--"));
                    assert!(declared || extra, "{text:?} → {cmd:?}: param `{k}` came from nowhere");
                }
            }
        }
        Command::Status(id) | Command::Cancel(id) | Command::Logs { id, .. } => assert!(*id > 0, "{text:?} → {cmd:?}"),
        Command::History { limit, .. } => assert!(limit.is_none_or(|n| n > 0), "{text:?} → {cmd:?}"),
        Command::Approve(id) | Command::Deny { id, .. } => assert!(*id > 0, "{text:?} → {cmd:?}"),
        Command::Lock { job, params, .. } | Command::Unlock { job, params } => {
            assert!(job.is_some() || !params.is_empty(), "{text:?} → {cmd:?}: a lock of nothing");
            assert!(job.as_deref() != Some("*"), "{text:?} → {cmd:?}: `*` is every job, not a job");
        }
        Command::Unlink(account) => assert!(!account.is_empty(), "{text:?} → {cmd:?}"),
        Command::Help(_)
        | Command::List
        | Command::Whoami
        | Command::Yes
        | Command::No
        | Command::Approvals
        | Command::Locks
        | Command::Link(_) => {}
    }
}

/// `ParamSpec::normalize` "returns its canonical form", so normalising that again changes
/// nothing; `accepts` agrees with it; a secret value is never repeated back in the error.
fn check_normalize(p: &ParamSpec, raw: &str) {
    let r = p.normalize(raw);
    assert_eq!(p.accepts(raw), r.is_ok(), "accepts/normalize disagree on {raw:?} for `{}`", p.name);
    match r {
        Ok(v) => {
            let again = p.normalize(&v);
            assert_eq!(again.as_ref(), Ok(&v), "`{}`: {raw:?} → {v:?} is not canonical", p.name);
            if let ParamKind::Enum { values } = &p.kind {
                assert!(values.iter().any(|e| e.value == v), "`{}`: {v:?} is not one of the values", p.name);
            }
        }
        Err(e) => {
            assert_eq!(e.param, p.name);
            if p.secret && !raw.is_empty() && e.message.contains(raw) {
                // Only the fixed wording of the message may contain it, never the value itself.
                let fixed = format!("`••••` is not allowed: expected {}", p.kind.describe());
                assert!(fixed.contains(raw), "secret `{}` repeated back: {:?}", p.name, e.message);
            }
        }
    }
}
