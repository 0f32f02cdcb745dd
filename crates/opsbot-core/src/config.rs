//! The configuration file (`opsbot.toml`): loading, checking, and positioned diagnostics.
//!
//! Loading never stops at the first problem: the file is parsed into a spanned tree, then each
//! section, job, parameter and runner is read on its own, so `opsbot check` can report every
//! problem at once, each with `file:line:col` and a hint.

use crate::job::{Catalog, EnumValue, JobSpec, ParamKind, ParamSpec, RunnerSpec};
use crate::secret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Built-in verbs no job may be named after. (`logs`, `status` and `cancel` take an id, so a
/// job may share those names: the argument's shape decides.)
pub const RESERVED_NAMES: &[&str] = &["help", "list", "jobs", "run", "history", "whoami"];

/// Whether a job name is taken by a built-in verb or a yes/no answer word.
pub fn is_reserved(name: &str) -> bool {
    let n = name.to_lowercase();
    RESERVED_NAMES.contains(&n.as_str()) || crate::understand::YES.contains(&n.as_str()) || crate::understand::NO.contains(&n.as_str())
}

/// Verbs an alias may not start with: the grammar reads them as built-ins first.
const ALIAS_BLOCKED_FIRST_WORDS: &[&str] = &["help", "list", "jobs", "run", "history", "whoami"];

/// The bot's own settings (`[bot]`).
#[derive(Clone, Debug)]
pub struct BotConfig {
    /// The name people mention (`opsbot: deploy …`, `@opsbot deploy …`).
    pub name: String,
    /// Prefixes that address the bot in a channel (`!deploy …`).
    pub prefixes: Vec<String>,
    /// How long a "reply yes to run" confirmation stays open.
    pub confirm_timeout: Duration,
    /// How long a question for a missing parameter stays open.
    pub dialog_timeout: Duration,
    /// How many output lines the end-of-run report shows.
    pub output_tail: usize,
}

/// Where records are kept (`[store]`).
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// SQLite file, relative to the config file's folder.
    pub path: PathBuf,
}

/// The in-process worker (`[worker]`).
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// How many executions run at once in this process.
    pub concurrency: usize,
}

/// The HTTP server of `opsbot serve` (`[web]`): REST API, health and metrics.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Whether `opsbot serve` starts it.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: std::net::SocketAddr,
}

/// A loaded, checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// That file's folder; relative paths are taken from here.
    pub dir: PathBuf,
    /// `[bot]`
    pub bot: BotConfig,
    /// `[store]`
    pub store: StoreConfig,
    /// `[worker]`
    pub worker: WorkerConfig,
    /// `[web]`
    pub web: WebConfig,
    /// `[jobs.*]`
    pub catalog: Catalog,
}

/// One problem in a config file, with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// The offending source line, for display.
    pub source_line: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}:{}:{}: error: {}", self.file.display(), self.line, self.col, self.message)?;
        if !self.source_line.is_empty() {
            writeln!(f, "  {:>4} | {}", self.line, self.source_line)?;
            writeln!(f, "       | {}^", " ".repeat(self.col.saturating_sub(1)))?;
        }
        if let Some(h) = &self.hint {
            writeln!(f, "  hint: {h}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed.
    #[error("{} problem(s) in the config file", .0.len())]
    Invalid(Vec<Diagnostic>),
}

/// Choices for loading.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Resolve `${env:…}` / `${file:…}` now (off for `opsbot check --no-secrets` in CI).
    pub resolve_secrets: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { resolve_secrets: true }
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        Self::load_with(path, LoadOptions::default())
    }

    /// Reads and checks a config file with options.
    pub fn load_with(path: &Path, opts: LoadOptions) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path, opts)
    }

    /// Checks config text as if read from `path`.
    pub fn parse(text: &str, path: &Path, opts: LoadOptions) -> Result<Config, LoadError> {
        let dir = path
            .parent()
            .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
            .unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut cx = Cx {
            text,
            file: path.to_path_buf(),
            dir: dir.clone(),
            diags: Vec::new(),
            opts,
        };
        let config = cx.build();
        if cx.diags.is_empty() {
            Ok(config)
        } else {
            cx.diags.sort_by_key(|d| (d.line, d.col));
            cx.diags.dedup();
            Err(LoadError::Invalid(cx.diags))
        }
    }
}

// ---- raw, spanned shapes as written in TOML -------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBot {
    name: Option<Spanned<String>>,
    prefixes: Option<Vec<Spanned<String>>>,
    confirm_timeout: Option<Spanned<String>>,
    dialog_timeout: Option<Spanned<String>>,
    output_tail: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    timeout: Option<Spanned<String>>,
    kill_grace: Option<Spanned<String>>,
    output_limit: Option<Spanned<SizeValue>>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    description: Option<String>,
    #[serde(default, rename = "params")]
    _params: serde::de::IgnoredAny,
    #[serde(default, rename = "runner")]
    _runner: serde::de::IgnoredAny,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    examples: Vec<String>,
    timeout: Option<Spanned<String>>,
    kill_grace: Option<Spanned<String>>,
    concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    sensitive: bool,
    output_limit: Option<Spanned<SizeValue>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: Spanned<String>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
    required: Option<Spanned<bool>>,
    default: Option<Spanned<toml::Value>>,
    help: Option<String>,
    pattern: Option<Spanned<String>>,
    values: Option<Spanned<Vec<Spanned<String>>>>,
    synonyms: Option<Spanned<BTreeMap<String, Vec<Spanned<String>>>>>,
    min: Option<Spanned<i64>>,
    max: Option<Spanned<i64>>,
    #[serde(default)]
    secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    #[serde(rename = "type")]
    _kind: String,
    argv: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    env: BTreeMap<String, Spanned<String>>,
    cwd: Option<Spanned<String>>,
}

/// Runner types this build knows, for messages.
const RUNNER_TYPES: &[&str] = &["exec"];

// ---- the checker ----------------------------------------------------------------------------

struct Cx<'a> {
    text: &'a str,
    file: PathBuf,
    dir: PathBuf,
    diags: Vec<Diagnostic>,
    opts: LoadOptions,
}

struct Defaults {
    timeout: Duration,
    kill_grace: Duration,
    output_limit: u64,
}

impl<'a> Cx<'a> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>, hint: Option<String>) {
        let start = span.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = self.text[line_start..start].chars().count() + 1;
        let source_line = self.text[line_start..].lines().next().unwrap_or("").to_string();
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
            hint,
            source_line,
        });
    }

    fn toml_err(&mut self, e: toml::de::Error, fallback: Range<usize>) {
        let span = e.span().unwrap_or(fallback);
        let msg = e.message().trim().to_string();
        let hint = unknown_field_hint(&msg);
        self.err(span, msg, hint);
    }

    fn section<T: for<'de> Deserialize<'de> + Default>(&mut self, value: Option<&Spanned<DeValue<'a>>>) -> T {
        match value {
            None => T::default(),
            Some(v) => match T::deserialize(ValueDeserializer::from(v.clone())) {
                Ok(t) => t,
                Err(e) => {
                    self.toml_err(e, v.span());
                    T::default()
                }
            },
        }
    }

    fn duration(&mut self, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if d > MAX_DURATION => {
                self.err(
                    v.span(),
                    format!("`{}` is longer than the 366 days opsbot accepts", v.get_ref()),
                    None,
                );
                default
            }
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(
                    v.span(),
                    "a duration of zero is not allowed",
                    Some("write e.g. \"30s\", \"5m\" or \"1h\"".into()),
                );
                default
            }
            Err(e) => {
                self.err(
                    v.span(),
                    format!("`{}` is not a duration: {e}", v.get_ref()),
                    Some("write e.g. \"30s\", \"5m\" or \"1h30m\"".into()),
                );
                default
            }
        }
    }

    fn size(&mut self, v: &Option<Spanned<SizeValue>>, default: u64) -> u64 {
        let Some(v) = v else { return default };
        let parsed = match v.get_ref() {
            SizeValue::Bytes(n) if *n > 0 => Some(*n as u64),
            SizeValue::Bytes(_) => None,
            SizeValue::Text(s) => parse_size(s),
        };
        parsed.unwrap_or_else(|| {
            self.err(
                v.span(),
                "not a size",
                Some("write a number of bytes or e.g. \"512KiB\", \"1MiB\", \"10MB\"".into()),
            );
            default
        })
    }

    fn build(&mut self) -> Config {
        let (root, syntax) = DeTable::parse_recoverable(self.text);
        for e in syntax {
            self.toml_err(e, 0..0);
        }
        let root = root.into_inner();
        let get = |k: &str| root.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v.clone());
        let (bot_v, store_v, worker_v, web_v, defaults_v, jobs_v) =
            (get("bot"), get("store"), get("worker"), get("web"), get("defaults"), get("jobs"));
        for (key, _) in root.iter() {
            let k = key.get_ref().as_ref();
            if !SECTIONS.contains(&k) {
                let hint = crate::job::closest(k, SECTIONS.iter().copied())
                    .map(|s| format!("did you mean `[{s}]`?"))
                    .unwrap_or_else(|| "known sections: [bot], [store], [worker], [web], [defaults], [jobs.NAME]".into());
                self.err(key.span(), format!("unknown section `{k}`"), Some(hint));
            }
        }

        let raw_bot: RawBot = self.section(bot_v.as_ref());
        let bot = BotConfig {
            name: raw_bot.name.map(|n| n.into_inner()).unwrap_or_else(|| "opsbot".into()),
            prefixes: match raw_bot.prefixes {
                Some(p) => {
                    let mut out = Vec::new();
                    for s in p {
                        if s.get_ref().is_empty() || s.get_ref().chars().any(char::is_whitespace) {
                            self.err(
                                s.span(),
                                "a prefix must be non-empty and without spaces",
                                Some("e.g. \"!\" or \".\"".into()),
                            );
                        } else {
                            out.push(s.into_inner());
                        }
                    }
                    out
                }
                None => vec!["!".into()],
            },
            confirm_timeout: self.duration(&raw_bot.confirm_timeout, Duration::from_secs(120)),
            dialog_timeout: self.duration(&raw_bot.dialog_timeout, Duration::from_secs(600)),
            output_tail: match raw_bot.output_tail {
                Some(n) if (1..=200).contains(n.get_ref()) => *n.get_ref() as usize,
                Some(n) => {
                    self.err(n.span(), "output_tail must be between 1 and 200", None);
                    15
                }
                None => 15,
            },
        };

        let raw_store: RawStore = self.section(store_v.as_ref());
        let store = StoreConfig {
            path: self
                .dir
                .join(raw_store.path.map(|p| p.into_inner()).unwrap_or_else(|| "opsbot.db".into())),
        };

        let raw_worker: RawWorker = self.section(worker_v.as_ref());
        let worker = WorkerConfig {
            concurrency: match raw_worker.concurrency {
                Some(n) if (1..=10_000).contains(n.get_ref()) => *n.get_ref() as usize,
                Some(n) => {
                    self.err(n.span(), "worker concurrency must be between 1 and 10000", None);
                    8
                }
                None => 8,
            },
        };

        let raw_web: RawWeb = self.section(web_v.as_ref());
        let web = WebConfig {
            enabled: raw_web.enabled.unwrap_or(true),
            listen: match &raw_web.listen {
                Some(l) => l.get_ref().parse().unwrap_or_else(|_| {
                    self.err(
                        l.span(),
                        format!("`{}` is not an address to listen on", l.get_ref()),
                        Some("write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"".into()),
                    );
                    DEFAULT_LISTEN.parse().expect("valid default")
                }),
                None => DEFAULT_LISTEN.parse().expect("valid default"),
            },
        };

        let raw_defaults: RawDefaults = self.section(defaults_v.as_ref());
        let defaults = Defaults {
            timeout: self.duration(&raw_defaults.timeout, Duration::from_secs(600)),
            kill_grace: self.duration(&raw_defaults.kill_grace, Duration::from_secs(5)),
            output_limit: self.size(&raw_defaults.output_limit, 1024 * 1024),
        };

        let mut jobs = Vec::new();
        match jobs_v.as_ref().map(|v| (v.span(), v.get_ref())) {
            Some((_, DeValue::Table(t))) => {
                for (name, value) in t.iter() {
                    if let Some(job) = self.job(name, value, &defaults) {
                        jobs.push(job);
                    }
                }
            }
            Some((span, _)) => self.err(span, "`jobs` must be a table of jobs", Some("write [jobs.deploy] …".into())),
            None => {}
        }
        if jobs.is_empty() && self.diags.is_empty() {
            self.err(
                0..0,
                "no jobs are defined",
                Some("add at least one [jobs.NAME] section with a runner".into()),
            );
        }

        Config {
            path: self.file.clone(),
            dir: self.dir.clone(),
            bot,
            store,
            worker,
            web,
            catalog: Catalog::new(jobs),
        }
    }

    fn job(&mut self, name: &Spanned<std::borrow::Cow<'a, str>>, value: &Spanned<DeValue<'a>>, d: &Defaults) -> Option<JobSpec> {
        let jname = name.get_ref().to_string();
        let mut ok = true;
        if !valid_name(&jname, true) {
            self.err(
                name.span(),
                format!("`{jname}` is not a valid job name"),
                Some("use lowercase letters, digits, `-` and `_`, starting with a letter".into()),
            );
            ok = false;
        }
        if is_reserved(&jname) {
            let words: Vec<&str> = crate::understand::YES.iter().chain(crate::understand::NO).copied().collect();
            self.err(
                name.span(),
                format!("`{jname}` is a built-in command or an answer word and cannot be a job name"),
                Some(format!(
                    "reserved: {}, and the answer words {}",
                    RESERVED_NAMES.join(", "),
                    words.join(", ")
                )),
            );
            ok = false;
        }
        let DeValue::Table(table) = value.get_ref() else {
            self.err(value.span(), format!("job `{jname}` must be a table"), None);
            return None;
        };
        let field = |k: &str| table.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v.clone());
        let raw: RawJob = match RawJob::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(r) => r,
            Err(e) => {
                self.toml_err(e, value.span());
                // Still look at params and runner so their problems are reported too.
                let _ = self.params(&jname, field("params").as_ref());
                return None;
            }
        };

        let (params, declared, params_ok) = self.params(&jname, field("params").as_ref());
        ok &= params_ok;
        let runner = self.runner(&jname, field("runner").as_ref(), value.span(), &declared, &params);

        // Aliases: words and {slots}; every slot a declared param, at least one literal word.
        for alias in &raw.aliases {
            if let Err(msg) = check_alias(alias.get_ref(), &declared) {
                self.err(
                    alias.span(),
                    format!("alias `{}`: {msg}", alias.get_ref()),
                    Some("an alias is words and {param} slots, e.g. \"deploy {app} to {env}\"".into()),
                );
                ok = false;
            }
        }
        let concurrency = match raw.concurrency {
            Some(c) if (1..=10_000).contains(c.get_ref()) => Some(*c.get_ref() as u32),
            Some(c) => {
                self.err(
                    c.span(),
                    "concurrency must be between 1 and 10000",
                    Some("leave it out for no limit".into()),
                );
                None
            }
            None => None,
        };
        // Read every field before giving up on a broken runner, so all problems are reported.
        let timeout = self.duration(&raw.timeout, d.timeout);
        let kill_grace = self.duration(&raw.kill_grace, d.kill_grace);
        let output_limit = self.size(&raw.output_limit, d.output_limit);
        let job = JobSpec {
            name: jname.clone(),
            description: raw.description.unwrap_or_default(),
            params,
            aliases: raw.aliases.into_iter().map(Spanned::into_inner).collect(),
            examples: raw.examples,
            runner: runner?,
            timeout,
            kill_grace,
            concurrency,
            sensitive: raw.sensitive,
            output_limit,
        };
        ok.then_some(job)
    }

    /// The params that are valid, the names of all declared ones, and whether all were valid.
    fn params(&mut self, job: &str, value: Option<&Spanned<DeValue<'a>>>) -> (Vec<ParamSpec>, Vec<String>, bool) {
        let Some(value) = value else {
            return (Vec::new(), Vec::new(), true);
        };
        let DeValue::Array(items) = value.get_ref() else {
            self.err(
                value.span(),
                format!("`jobs.{job}.params` must be a list"),
                Some(format!("write each parameter as [[jobs.{job}.params]]")),
            );
            return (Vec::new(), Vec::new(), false);
        };
        let mut out = Vec::new();
        let mut declared = Vec::new();
        let mut ok = true;
        let mut seen = HashSet::new();
        for item in items.iter() {
            let raw = match RawParam::deserialize(ValueDeserializer::from(item.clone())) {
                Ok(r) => r,
                Err(e) => {
                    self.toml_err(e, item.span());
                    ok = false;
                    // Still count its name as declared, so templates and aliases using it are not
                    // reported as wrong too.
                    if let Some(n) = item.get_ref().get("name").and_then(|n| n.get_ref().as_str()) {
                        declared.push(n.to_string());
                    }
                    continue;
                }
            };
            let name_span = raw.name.span();
            declared.push(raw.name.get_ref().clone());
            if !seen.insert(raw.name.get_ref().to_lowercase()) {
                self.err(
                    name_span.clone(),
                    format!("parameter `{}` is declared twice", raw.name.get_ref()),
                    None,
                );
                ok = false;
            }
            match self.param(raw) {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        (out, declared, ok)
    }

    fn param(&mut self, raw: RawParam) -> Option<ParamSpec> {
        let name = raw.name.get_ref().clone();
        let mut ok = true;
        if !valid_name(&name, false) {
            self.err(
                raw.name.span(),
                format!("`{name}` is not a valid parameter name"),
                Some("use lowercase letters, digits and `_`, starting with a letter".into()),
            );
            ok = false;
        }
        if TEMPLATE_BUILTINS.contains(&name.as_str()) {
            self.err(
                raw.name.span(),
                format!("`{name}` is a built-in template variable and cannot be a parameter name"),
                Some(format!("built-ins: {}", TEMPLATE_BUILTINS.join(", "))),
            );
            ok = false;
        }
        let kind_name = raw.kind.as_ref().map(|k| k.get_ref().as_str()).unwrap_or("string");
        let kind_span = raw.kind.as_ref().map(|k| k.span()).unwrap_or(raw.name.span());
        let misplaced = |field: &str, fits: &str| format!("`{field}` applies to {fits} parameters, not to `{kind_name}`");
        let check_only = |cx: &mut Self, present: Option<Range<usize>>, field: &str, fits: &str, allowed: bool| {
            if let (Some(span), false) = (present, allowed) {
                cx.err(span, misplaced(field, fits), None);
                false
            } else {
                true
            }
        };
        let is = |k: &str| kind_name == k;
        ok &= check_only(self, raw.pattern.as_ref().map(|p| p.span()), "pattern", "string", is("string"));
        ok &= check_only(self, raw.values.as_ref().map(|p| p.span()), "values", "enum", is("enum"));
        ok &= check_only(self, raw.synonyms.as_ref().map(|p| p.span()), "synonyms", "enum", is("enum"));
        ok &= check_only(self, raw.min.as_ref().map(|p| p.span()), "min", "int", is("int"));
        ok &= check_only(self, raw.max.as_ref().map(|p| p.span()), "max", "int", is("int"));

        let kind = match kind_name {
            "string" => {
                let pattern = match &raw.pattern {
                    Some(p) => match regex::Regex::new(&format!("^(?:{})$", p.get_ref())) {
                        Ok(re) => Some(re),
                        Err(e) => {
                            let first = e.to_string().lines().last().unwrap_or("").trim().to_string();
                            self.err(
                                p.span(),
                                format!("the pattern is not a valid regular expression: {first}"),
                                Some("patterns use Rust regex syntax and must match the whole value".into()),
                            );
                            ok = false;
                            None
                        }
                    },
                    None => None,
                };
                ParamKind::String { pattern }
            }
            "enum" => {
                let mut values: Vec<EnumValue> = Vec::new();
                match &raw.values {
                    Some(vs) if !vs.get_ref().is_empty() => {
                        for v in vs.get_ref() {
                            if v.get_ref().trim().is_empty() || values.iter().any(|e| e.value.eq_ignore_ascii_case(v.get_ref())) {
                                self.err(v.span(), format!("enum value `{}` is empty or repeated", v.get_ref()), None);
                                ok = false;
                            } else {
                                values.push(EnumValue {
                                    value: v.get_ref().clone(),
                                    synonyms: Vec::new(),
                                });
                            }
                        }
                    }
                    Some(vs) => {
                        self.err(vs.span(), "an enum needs at least one value", None);
                        ok = false;
                    }
                    None => {
                        self.err(
                            kind_span.clone(),
                            format!("enum parameter `{name}` has no `values`"),
                            Some("add values = [\"a\", \"b\"]".into()),
                        );
                        ok = false;
                    }
                }
                if let Some(syn) = &raw.synonyms {
                    let mut taken: HashSet<String> = values.iter().map(|v| v.value.to_lowercase()).collect();
                    for (target, words) in syn.get_ref() {
                        let Some(idx) = values.iter().position(|v| &v.value == target) else {
                            self.err(
                                syn.span(),
                                format!("synonyms are given for `{target}`, which is not one of the values"),
                                Some(format!(
                                    "values: {}",
                                    values.iter().map(|v| v.value.as_str()).collect::<Vec<_>>().join(", ")
                                )),
                            );
                            ok = false;
                            continue;
                        };
                        for w in words {
                            if !taken.insert(w.get_ref().to_lowercase()) {
                                self.err(
                                    w.span(),
                                    format!("synonym `{}` is already a value or a synonym of another value", w.get_ref()),
                                    None,
                                );
                                ok = false;
                            } else {
                                values[idx].synonyms.push(w.get_ref().clone());
                            }
                        }
                    }
                }
                ParamKind::Enum { values }
            }
            "int" => {
                let (min, max) = (raw.min.as_ref().map(|m| *m.get_ref()), raw.max.as_ref().map(|m| *m.get_ref()));
                if let (Some(a), Some(b), Some(span)) = (min, max, raw.max.as_ref().map(|m| m.span()))
                    && a > b
                {
                    self.err(span, format!("max ({b}) is below min ({a})"), None);
                    ok = false;
                }
                ParamKind::Int { min, max }
            }
            "bool" => ParamKind::Bool,
            other => {
                let hint = crate::job::closest(other, ["string", "enum", "int", "bool"]).map(|s| format!("did you mean `{s}`?"));
                self.err(
                    kind_span,
                    format!("unknown parameter type `{other}`"),
                    Some(hint.unwrap_or_else(|| "types: string, enum, int, bool".into())),
                );
                return None;
            }
        };
        let mut spec = ParamSpec {
            name: name.clone(),
            kind,
            required: false,
            default: None,
            help: raw.help,
            secret: raw.secret,
        };
        if let Some(d) = &raw.default {
            let text = match d.get_ref() {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    self.err(
                        d.span(),
                        format!("a default must be a string, integer or boolean, not {}", other.type_str()),
                        None,
                    );
                    ok = false;
                    String::new()
                }
            };
            match spec.normalize(&text) {
                Ok(v) => spec.default = Some(v),
                Err(e) => {
                    self.err(d.span(), format!("the default does not fit the parameter: {}", e.message), None);
                    ok = false;
                }
            }
        }
        match (&raw.required, &spec.default) {
            (Some(r), Some(_)) if *r.get_ref() => {
                self.err(
                    r.span(),
                    format!("`{name}` is required and has a default"),
                    Some("a parameter with a default is never missing: drop `required` or the default".into()),
                );
                ok = false;
            }
            (Some(r), None) => spec.required = *r.get_ref(),
            _ => {}
        }
        ok.then_some(spec)
    }

    fn runner(
        &mut self,
        job: &str,
        value: Option<&Spanned<DeValue<'a>>>,
        job_span: Range<usize>,
        params: &[String],
        specs: &[ParamSpec],
    ) -> Option<RunnerSpec> {
        let Some(value) = value else {
            self.err(
                job_span,
                format!("job `{job}` has no runner"),
                Some("add runner = { type = \"exec\", argv = [\"/path/to/program\", \"{{ param }}\"] }".into()),
            );
            return None;
        };
        let DeValue::Table(t) = value.get_ref() else {
            self.err(
                value.span(),
                "a runner must be a table",
                Some("runner = { type = \"exec\", argv = [...] }".into()),
            );
            return None;
        };
        let kind = t
            .iter()
            .find(|(k, _)| k.get_ref() == "type")
            .and_then(|(_, v)| v.get_ref().as_str().map(|s| (s.to_string(), v.span())));
        match kind {
            Some((k, _)) if k == "exec" => {}
            Some((k, span)) => {
                self.err(
                    span,
                    format!("unknown runner type `{k}`"),
                    Some(format!("runner types in this build: {}", RUNNER_TYPES.join(", "))),
                );
                return None;
            }
            None => {
                self.err(value.span(), "the runner has no `type`", Some("add type = \"exec\"".into()));
                return None;
            }
        }
        let raw = match RawExec::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(r) => r,
            Err(e) => {
                self.toml_err(e, value.span());
                return None;
            }
        };
        let mut ok = true;
        if raw.argv.get_ref().is_empty() {
            self.err(
                raw.argv.span(),
                "argv is empty",
                Some("the first element is the program to run".into()),
            );
            return None;
        }
        let known: HashSet<&str> = params.iter().map(String::as_str).chain(TEMPLATE_BUILTINS.iter().copied()).collect();
        let env = crate::job::template_env();
        // A trial render with plausible values finds unknown filters and functions now, not at run time.
        let samples: crate::job::Params = specs.iter().map(|p| (p.name.clone(), crate::job::sample_value(p))).collect();
        let sample_ctx = crate::job::template_context(job, specs, &samples, 1, "check:opsbot");
        let all_declared = params.len() == specs.len();
        for el in raw.argv.get_ref() {
            if secret::has_named_reference(el.get_ref()) {
                self.err(
                    el.span(),
                    "`${env:…}`/`${file:…}` references are not resolved in argv",
                    Some("put the secret in the runner's env (API_TOKEN = \"${env:API_TOKEN}\") and read it from there".into()),
                );
                ok = false;
            }
            match env.template_from_str(el.get_ref()) {
                Ok(tmpl) => {
                    if all_declared && let Err(e) = tmpl.render(&sample_ctx) {
                        self.err(
                            el.span(),
                            format!("argv template fails to render: {}", e.detail().unwrap_or(&e.to_string())),
                            Some("check filter and function names; see the minijinja docs".into()),
                        );
                        ok = false;
                    }
                    for var in tmpl.undeclared_variables(false) {
                        if !known.contains(var.as_str()) {
                            let hint = crate::job::closest(&var, known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                            self.err(
                                el.span(),
                                format!("the template uses `{var}`, which is not a parameter of `{job}`"),
                                Some(
                                    hint.unwrap_or_else(|| format!("available: {}", known.iter().copied().collect::<Vec<_>>().join(", "))),
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Err(e) => {
                    self.err(
                        el.span(),
                        format!("argv template error: {}", e.detail().unwrap_or(&e.to_string())),
                        Some("argv elements are minijinja templates, e.g. \"{{ app }}\"".into()),
                    );
                    ok = false;
                }
            }
        }
        let mut envs = BTreeMap::new();
        for (k, v) in raw.env {
            let upper = k.to_uppercase();
            if looks_secret(&upper) && !secret::has_reference(v.get_ref()) {
                self.err(
                    v.span(),
                    format!("`{k}` looks like a secret written into the config"),
                    Some(format!(
                        "secrets only by reference: {k} = \"${{env:{upper}}}\" or \"${{file:/run/secrets/{}}}\"",
                        k.to_lowercase()
                    )),
                );
                ok = false;
                continue;
            }
            if self.opts.resolve_secrets {
                match secret::resolve(v.get_ref(), &self.dir) {
                    Ok(val) => {
                        envs.insert(k, val);
                    }
                    Err(msg) => {
                        self.err(
                            v.span(),
                            msg,
                            Some("set it before starting opsbot, or run `opsbot check --no-secrets` where secrets are absent".into()),
                        );
                        ok = false;
                    }
                }
            } else {
                if let Err(msg) = secret::check_syntax(v.get_ref()) {
                    self.err(v.span(), msg, None);
                    ok = false;
                }
                envs.insert(k, v.into_inner());
            }
        }
        let argv0_span = raw.argv.get_ref()[0].span();
        let mut argv: Vec<String> = raw.argv.into_inner().into_iter().map(Spanned::into_inner).collect();
        // A relative program path with a slash is taken from the config file's folder.
        if argv[0].contains('/') && !argv[0].contains("{{") && Path::new(&argv[0]).is_relative() {
            let rel: PathBuf = Path::new(&argv[0])
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            argv[0] = self.dir.join(rel).to_string_lossy().into_owned();
        }
        if argv[0].contains('/') && !argv[0].contains("{{") {
            use std::os::unix::fs::PermissionsExt;
            match std::fs::metadata(&argv[0]) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                Ok(_) => {
                    self.err(
                        argv0_span.clone(),
                        format!("`{}` is not an executable file", argv[0]),
                        Some(format!("chmod +x {}", argv[0])),
                    );
                    ok = false;
                }
                Err(e) => {
                    self.err(
                        argv0_span.clone(),
                        format!("program `{}` cannot be found: {e}", argv[0]),
                        Some("relative paths are taken from the config file's folder".into()),
                    );
                    ok = false;
                }
            }
        }
        let cwd = match raw.cwd {
            Some(c) => {
                let dir = self.dir.join(c.get_ref());
                if !dir.is_dir() {
                    self.err(c.span(), format!("working directory `{}` does not exist", dir.display()), None);
                    ok = false;
                }
                dir
            }
            None => self.dir.clone(),
        };
        ok.then_some(RunnerSpec::Exec { argv, env: envs, cwd })
    }
}

/// Longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Top-level sections of the config file.
const SECTIONS: &[&str] = &["bot", "store", "worker", "web", "defaults", "jobs"];

/// Where `opsbot serve`'s HTTP server listens unless `[web] listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Variables available to argv templates besides the params.
pub const TEMPLATE_BUILTINS: &[&str] = &["execution_id", "job", "requester"];

/// Words of an env var name (split at `_`) that mark a secret.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "TOKENS",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "SECRET",
    "SECRETS",
    "APIKEY",
    "CREDENTIALS",
];

/// `DEPLOY_TOKEN`, `DB_PASSWORD`, `API_KEY`, `PRIVATE_KEY` look secret; `TOKENIZER` does not.
fn looks_secret(upper: &str) -> bool {
    let words: Vec<&str> = upper.split(|c: char| !c.is_ascii_alphanumeric()).collect();
    words.iter().any(|w| SECRET_WORDS.contains(w))
        || words
            .windows(2)
            .any(|p| matches!(p, ["API" | "PRIVATE" | "ACCESS" | "SECRET", "KEY"]))
}

fn valid_name(s: &str, allow_dash: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_dash && c == '-'))
}

fn unknown_field_hint(msg: &str) -> Option<String> {
    // toml/serde say: unknown field `x`, expected one of `a`, `b`
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(match crate::job::closest(field, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("allowed here: {}", names.join(", ")),
    })
}

/// Parses sizes like `1MiB`, `512KiB`, `10MB`, `2048`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&v| v > 0)
}

/// Splits an alias template into words; `{name}` words are slots.
pub fn alias_parts(alias: &str) -> Vec<AliasPart> {
    alias
        .split_whitespace()
        .map(|w| match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(slot) => AliasPart::Slot(slot.to_string()),
            None => AliasPart::Word(w.to_lowercase()),
        })
        .collect()
}

/// One word of an alias template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AliasPart {
    /// A literal word, matched case-insensitively.
    Word(String),
    /// A slot filled by one value of the named param.
    Slot(String),
}

fn check_alias(alias: &str, params: &[String]) -> Result<(), String> {
    let parts = alias_parts(alias);
    if !parts.iter().any(|p| matches!(p, AliasPart::Word(_))) {
        return Err("it has no literal word, so it would match anything".into());
    }
    if let Some(AliasPart::Word(w)) = parts.first()
        && ALIAS_BLOCKED_FIRST_WORDS.contains(&w.as_str())
    {
        return Err(format!("it starts with the built-in command `{w}`, so it could never match"));
    }
    let mut seen = HashSet::new();
    for p in &parts {
        match p {
            AliasPart::Slot(s) => {
                if !params.iter().any(|q| q == s) {
                    return Err(format!("`{{{s}}}` is not a parameter of this job"));
                }
                if !seen.insert(s.clone()) {
                    return Err(format!("`{{{s}}}` appears twice"));
                }
            }
            AliasPart::Word(w) if w.contains('{') || w.contains('}') => {
                return Err(format!("`{w}` has a stray brace; slots are whole words like {{env}}"));
            }
            AliasPart::Word(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<Diagnostic> {
        match Config::parse(text, Path::new("t.toml"), LoadOptions::default()) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(d)) => d,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn every_problem_with_position() {
        let text = r#"
[bot]
nmae = "x"

[jobs.deploy]
runner = { type = "exec", argv = ["echo", "{{ ap }}"] }
aliases = ["deploy {app} to {nope}"]

[[jobs.deploy.params]]
name = "app"
type = "enum"
values = ["a", "b"]
default = "c"

[jobs.scale]
runner = { type = "exec", argv = ["echo"] }
[[jobs.scale.params]]
name = "replicas"
type = "int"
min = 5
max = 1
pattern = "x"
"#;
        let d = check(text);
        let msgs: Vec<String> = d.iter().map(|d| format!("{}:{} {}", d.line, d.col, d.message)).collect();
        let joined = msgs.join("\n");
        assert!(joined.contains("3:1 unknown field `nmae`"), "{joined}");
        assert!(d.iter().any(|d| d.hint.as_deref() == Some("did you mean `name`?")), "{joined}");
        assert!(joined.contains("6:43 the template uses `ap`"), "{joined}");
        assert!(joined.contains("7:12 alias `deploy {app} to {nope}`"), "{joined}");
        assert!(joined.contains("13:11 the default does not fit"), "{joined}");
        assert!(joined.contains("max (1) is below min (5)"), "{joined}");
        assert!(joined.contains("`pattern` applies to string parameters"), "{joined}");
        assert!(d.len() >= 6, "{joined}");
    }

    #[test]
    fn syntax_error_has_position() {
        let d = check("[jobs.x]\nrunner = { type = \"exec\", argv = [\"a\" }\n");
        assert_eq!(d[0].line, 2, "{:?}", d);
    }

    #[test]
    fn literal_secret_refused() {
        let d = check("[jobs.x]\nrunner = { type = \"exec\", argv = [\"a\"], env = { API_TOKEN = \"hunter2\" } }\n");
        assert!(d[0].message.contains("looks like a secret"), "{:?}", d);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("10 kb"), Some(10_000));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("0"), None);
    }
}
