//! Replies in the person's language: English or Simplified Chinese, with Project Fluent.
//!
//! The messages live in `locales/{en,zh}/{engine,core,lib,policy}.ftl`, embedded at build time. The
//! language of the message being handled is a task-local ([`scope`], [`sync_scope`]) that the
//! engine core sets around each message; [`current`] reads it (English outside any scope) and
//! the [`tr!`](crate::tr) macro formats a message in it. A message missing in Chinese falls
//! back to English; one missing in both comes out as its id (and a warning in the log).

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentError, FluentResource, FluentValue};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{LazyLock, Mutex};
use unic_langid::LanguageIdentifier;

pub use opsbot_core::Lang;

tokio::task_local! {
    /// The language replies are written in, for the message being handled.
    static LANG: Lang;
}

/// The language of the message being handled: the task-local set by [`scope`] or
/// [`sync_scope`], English outside any scope.
pub fn current() -> Lang {
    LANG.try_with(|l| *l).unwrap_or_default()
}

/// Runs `f` with replies in `lang` (nested scopes shadow outer ones).
pub async fn scope<F: Future>(lang: Lang, f: F) -> F::Output {
    LANG.scope(lang, f).await
}

/// Runs `f` synchronously with replies in `lang`.
pub fn sync_scope<R>(lang: Lang, f: impl FnOnce() -> R) -> R {
    LANG.sync_scope(lang, f)
}

/// A value for a placeable of a message: text, or a number (which plural selectors see).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Text, shown as it is.
    Str(String),
    /// A whole number: shown in plain digits, selectable by plural category.
    Num(i64),
}

/// Largest integer an `f64` (Fluent's number type) holds exactly.
const EXACT_F64: i64 = 1 << 53;

impl Arg {
    fn to_fluent(&self) -> FluentValue<'_> {
        match self {
            Arg::Str(s) => FluentValue::from(s.as_str()),
            Arg::Num(n) if n.abs() <= EXACT_F64 => FluentValue::from(*n),
            // Fluent numbers are f64: keep the digits of a larger one as text.
            Arg::Num(n) => FluentValue::from(n.to_string()),
        }
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Str(s.to_string())
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Str(s.clone())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Str(s)
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Arg::Num(n)
    }
}

impl From<u64> for Arg {
    fn from(n: u64) -> Self {
        i64::try_from(n).map(Arg::Num).unwrap_or_else(|_| Arg::Str(n.to_string()))
    }
}

impl From<usize> for Arg {
    fn from(n: usize) -> Self {
        i64::try_from(n).map(Arg::Num).unwrap_or_else(|_| Arg::Str(n.to_string()))
    }
}

impl From<u32> for Arg {
    fn from(n: u32) -> Self {
        Arg::Num(n.into())
    }
}

impl From<i32> for Arg {
    fn from(n: i32) -> Self {
        Arg::Num(n.into())
    }
}

/// The embedded message files: (name for logs, source), per language.
const EN_FILES: [(&str, &str); 4] = [
    ("en/engine.ftl", include_str!("../locales/en/engine.ftl")),
    ("en/core.ftl", include_str!("../locales/en/core.ftl")),
    ("en/lib.ftl", include_str!("../locales/en/lib.ftl")),
    ("en/policy.ftl", include_str!("../locales/en/policy.ftl")),
];
const ZH_FILES: [(&str, &str); 4] = [
    ("zh/engine.ftl", include_str!("../locales/zh/engine.ftl")),
    ("zh/core.ftl", include_str!("../locales/zh/core.ftl")),
    ("zh/lib.ftl", include_str!("../locales/zh/lib.ftl")),
    ("zh/policy.ftl", include_str!("../locales/zh/policy.ftl")),
];

type Bundle = FluentBundle<FluentResource>;

static EN: LazyLock<Bundle> = LazyLock::new(|| build("en", &EN_FILES));
static ZH: LazyLock<Bundle> = LazyLock::new(|| build("zh", &ZH_FILES));

/// Messages whose problems were already logged: each is logged once.
static WARNED: LazyLock<Mutex<HashSet<(Lang, String)>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// A bundle of the files for one language. Syntax errors and duplicate ids are logged; what
/// parsed is kept.
fn build(code: &str, files: &[(&str, &str)]) -> Bundle {
    let langid: LanguageIdentifier = code.parse().unwrap_or_default();
    let mut bundle = Bundle::new_concurrent(vec![langid]);
    bundle.set_use_isolating(false);
    for (name, source) in files {
        let resource = match FluentResource::try_new(source.to_string()) {
            Ok(r) => r,
            Err((r, errors)) => {
                tracing::warn!(file = name, ?errors, "syntax errors in a message file; the rest is used");
                r
            }
        };
        if let Err(errors) = bundle.add_resource(resource) {
            tracing::warn!(file = name, ?errors, "messages defined twice; the first definition is used");
        }
    }
    bundle
}

fn bundle(lang: Lang) -> &'static Bundle {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// Whether this problem with message `id` in `lang` is new (and so worth a log line).
fn first_time(lang: Lang, id: &str) -> bool {
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    warned.insert((lang, id.to_string()))
}

/// Message `id` in `lang` with these arguments. A message missing in Chinese is taken from
/// English; missing in both, the result is `id` itself. Formatting errors (a missing argument,
/// say) are logged once per message, and the text is returned all the same.
pub fn text(lang: Lang, id: &str, args: &[(&str, Arg)]) -> String {
    let tried: &[Lang] = match lang {
        Lang::En => &[Lang::En],
        Lang::Zh => &[Lang::Zh, Lang::En],
    };
    for &l in tried {
        let b = bundle(l);
        let Some(pattern) = b.get_message(id).and_then(|m| m.value()) else {
            continue;
        };
        let mut fluent_args = FluentArgs::with_capacity(args.len());
        for (name, value) in args {
            fluent_args.set(*name, value.to_fluent());
        }
        let mut errors: Vec<FluentError> = Vec::new();
        let out = b.format_pattern(pattern, Some(&fluent_args), &mut errors).into_owned();
        if !errors.is_empty() && first_time(l, id) {
            tracing::warn!(id, lang = l.code(), ?errors, "error formatting a message");
        }
        return out;
    }
    if first_time(lang, id) {
        tracing::warn!(id, lang = lang.code(), "no such message in any language");
    }
    id.to_string()
}

/// The message with this id in the current language ([`current`]), with named arguments:
/// `tr!("lock-none")`, `tr!("vote-recorded", id = id, missing = text)`. Each argument converts
/// into an [`Arg`](crate::i18n::Arg).
#[macro_export]
macro_rules! tr {
    ($id:literal $(,)?) => {
        $crate::i18n::text($crate::i18n::current(), $id, &[])
    };
    ($id:literal $(, $name:ident = $value:expr)+ $(,)?) => {
        $crate::i18n::text(
            $crate::i18n::current(),
            $id,
            &[$((::core::stringify!($name), $crate::i18n::Arg::from($value))),+],
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message ids a Fluent file defines: entries starting at the first column (terms,
    /// starting with `-`, are not messages).
    fn ids(source: &str) -> Vec<String> {
        source
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
            .filter_map(|l| l.split_once('=').map(|(id, _)| id.trim().to_string()))
            .collect()
    }

    fn all_ids(files: &[(&str, &str)]) -> HashSet<String> {
        files.iter().flat_map(|(_, s)| ids(s)).collect()
    }

    #[test]
    fn the_files_parse_without_errors() {
        for (name, source) in EN_FILES.iter().chain(ZH_FILES.iter()) {
            if let Err((_, errors)) = FluentResource::try_new(source.to_string()) {
                panic!("{name}: {errors:?}");
            }
        }
        for (code, files) in [("en", &EN_FILES), ("zh", &ZH_FILES)] {
            let mut b = Bundle::new_concurrent(vec![code.parse().unwrap()]);
            for (name, source) in files {
                let r = FluentResource::try_new(source.to_string()).unwrap();
                assert!(b.add_resource(r).is_ok(), "{name} redefines a message");
            }
        }
    }

    #[test]
    fn every_id_exists_in_both_languages() {
        let en = all_ids(&EN_FILES);
        let zh = all_ids(&ZH_FILES);
        assert!(en.len() > 50, "only {} English messages", en.len());
        let mut only_en: Vec<&String> = en.difference(&zh).collect();
        let mut only_zh: Vec<&String> = zh.difference(&en).collect();
        only_en.sort();
        only_zh.sort();
        assert!(only_en.is_empty(), "missing in zh: {only_en:?}");
        assert!(only_zh.is_empty(), "missing in en: {only_zh:?}");
        for id in &en {
            assert!(EN.has_message(id), "{id} not in the English bundle");
            assert!(ZH.has_message(id), "{id} not in the Chinese bundle");
        }
    }

    /// The ids of `tr!("…")` calls in a Rust source (the id may be on the next line), skipping
    /// comment lines.
    fn used_ids(source: &str) -> Vec<String> {
        let code: String = source
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = Vec::new();
        let mut rest = code.as_str();
        while let Some(at) = rest.find("tr!(") {
            rest = &rest[at + 4..];
            if let Some(quoted) = rest.trim_start().strip_prefix('"') {
                let id: String = quoted
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
                    .collect();
                if !id.is_empty() && quoted[id.len()..].starts_with('"') {
                    out.push(id);
                }
            }
        }
        out
    }

    #[test]
    fn every_id_used_in_the_sources_exists_in_english() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let en = all_ids(&EN_FILES);
        let mut used = 0;
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("i18n.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for id in used_ids(&source) {
                used += 1;
                if !en.contains(&id) {
                    missing.push(format!("{}: {id}", path.display()));
                }
            }
        }
        assert!(used > 50, "only {used} tr! calls found");
        assert!(missing.is_empty(), "ids used but not in en: {missing:?}");
    }

    #[test]
    fn the_id_scanner_finds_ids() {
        let src = "let a = tr!(\"one-1\");\n// tr!(\"comment\")\nlet b = (tr!( \"two\", x = 1), tr!(\"three\"));\nlet c = tr!(\n    \"four\",\n    x = 1\n);\n";
        assert_eq!(used_ids(src), ["one-1", "two", "three", "four"]);
    }

    #[test]
    fn english_renders_exactly() {
        let en = |id: &str, args: &[(&str, Arg)]| text(Lang::En, id, args);
        assert_eq!(en("list-footer", &[]), "`help JOB` shows a job's parameters and examples.");
        assert_eq!(
            en("queued-para", &[("run", "deploy app=web".into()), ("id", 12.into())]),
            "deploy app=web — I'll report here when it ends. `status 12` · `logs 12` · `cancel 12`"
        );
        assert_eq!(
            en("finished-more", &[("n", 3u64.into()), ("id", 7i64.into())]),
            "… 3 earlier line(s) not shown: `logs 7 --all`"
        );
        assert_eq!(
            en("lock-needs-reason", &[("scope", "deploy env=prod".into())]),
            "A lock needs a reason for whoever it stops: `lock deploy env=prod --reason \"why\"`."
        );
        assert_eq!(en("whoami-here-direct", &[]), " (direct)");
        assert_eq!(en("list-or", &[]), " or ");
        assert_eq!(en("list-semicolon", &[]), "; ");
        assert_eq!(en("state-failed-exit", &[("code", (-1i32).into())]), "failed (exit -1)");
        assert_eq!(en("list-heading", &[("n", 1usize.into())]), "1 jobs");
        assert_eq!(
            en("link-turned-off", &[]),
            "Linking accounts is turned off here ([access] self_link = false); ask an admin to add your account to the config."
        );
    }

    #[test]
    fn big_numbers_keep_their_digits() {
        let id = 9_007_199_254_740_993i64; // 2^53 + 1: not exact as an f64
        assert_eq!(
            text(Lang::En, "state-failed-exit", &[("code", id.into())]),
            format!("failed (exit {id})")
        );
        assert_eq!(
            text(Lang::En, "state-failed-exit", &[("code", u64::MAX.into())]),
            format!("failed (exit {})", u64::MAX)
        );
    }

    #[test]
    fn chinese_renders_chinese() {
        let is_cjk = |s: &str| s.chars().any(opsbot_core::understand::is_cjk);
        let samples: [(&str, Vec<(&str, Arg)>); 6] = [
            ("list-footer", vec![]),
            ("queued-para", vec![("run", "deploy".into()), ("id", 12.into())]),
            ("lock-none", vec![]),
            ("nothing-runnable-roles", vec![]),
            ("vote-no-request", vec![("id", 4.into())]),
            ("field-requested-by", vec![]),
        ];
        for (id, args) in &samples {
            let zh = text(Lang::Zh, id, args);
            assert!(is_cjk(&zh), "{id}: {zh}");
            assert_ne!(zh, text(Lang::En, id, args));
        }
        // Command words stay English, in backticks.
        let q = text(Lang::Zh, "queued-para", &[("run", "deploy".into()), ("id", 12.into())]);
        assert!(q.contains("`status 12`") && q.contains("`cancel 12`"), "{q}");
    }

    #[test]
    fn missing_messages_fall_back() {
        assert_eq!(text(Lang::En, "no-such-message-anywhere", &[]), "no-such-message-anywhere");
        assert_eq!(text(Lang::Zh, "no-such-message-anywhere", &[]), "no-such-message-anywhere");
        // A missing argument still gives the text around it.
        let out = text(Lang::En, "vote-no-request", &[]);
        assert!(out.starts_with("There is no approval request "), "{out}");
    }

    #[test]
    fn the_macro_uses_the_current_language() {
        assert_eq!(tr!("lock-none"), "Nothing is locked.");
        let zh = sync_scope(Lang::Zh, || tr!("vote-no-request", id = 5));
        assert!(zh.contains('5') && zh.chars().any(opsbot_core::understand::is_cjk), "{zh}");
        let en = sync_scope(Lang::En, || tr!("vote-no-request", id = 5i64,));
        assert_eq!(en, "There is no approval request 5. `approvals` lists the open ones.");
    }

    #[test]
    fn current_defaults_to_english_and_scopes_nest() {
        assert_eq!(current(), Lang::En);
        sync_scope(Lang::Zh, || {
            assert_eq!(current(), Lang::Zh);
            sync_scope(Lang::En, || assert_eq!(current(), Lang::En));
            assert_eq!(current(), Lang::Zh);
        });
        assert_eq!(current(), Lang::En);
    }

    #[tokio::test]
    async fn async_scopes_nest_and_cross_awaits() {
        assert_eq!(current(), Lang::En);
        let seen = scope(Lang::Zh, async {
            let outer = current();
            tokio::task::yield_now().await;
            let inner = scope(Lang::En, async {
                tokio::task::yield_now().await;
                current()
            })
            .await;
            (outer, inner, current())
        })
        .await;
        assert_eq!(seen, (Lang::Zh, Lang::En, Lang::Zh));
        assert_eq!(current(), Lang::En);
        // A spawned task does not inherit the scope.
        let spawned = scope(Lang::Zh, async { tokio::spawn(async { current() }).await.unwrap() }).await;
        assert_eq!(spawned, Lang::En);
    }
}
