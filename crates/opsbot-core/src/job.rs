//! Jobs and their typed parameters, as the engine and runners see them after config loading.

use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

/// Parameter values of one execution, canonicalised (enum synonyms resolved), by name.
pub type Params = BTreeMap<String, String>;

/// Longest value any parameter accepts, in bytes.
pub const MAX_PARAM_LEN: usize = 4096;

/// One allowed value of an enum parameter and the words that also mean it.
#[derive(Clone, Debug)]
pub struct EnumValue {
    /// The canonical value passed to the job.
    pub value: String,
    /// Other words for it (`production`, `生产` → `prod`), matched case-insensitively.
    pub synonyms: Vec<String>,
}

/// A parameter's type.
#[derive(Clone, Debug)]
pub enum ParamKind {
    /// Free text, optionally constrained by a regex that must match the whole value.
    String { pattern: Option<Regex> },
    /// One of a fixed set of values.
    Enum { values: Vec<EnumValue> },
    /// An integer with optional inclusive bounds.
    Int { min: Option<i64>, max: Option<i64> },
    /// true/false (also yes/no, on/off, 1/0).
    Bool,
}

impl ParamKind {
    /// The type's name as written in config.
    pub fn name(&self) -> &'static str {
        match self {
            ParamKind::String { .. } => "string",
            ParamKind::Enum { .. } => "enum",
            ParamKind::Int { .. } => "int",
            ParamKind::Bool => "bool",
        }
    }

    /// A short human description of what is allowed, e.g. `one of api, web` or `integer 1..20`.
    pub fn describe(&self) -> String {
        match self {
            ParamKind::String { pattern: Some(p) } => {
                format!("text matching `{}`", strip_anchors(p.as_str()))
            }
            ParamKind::String { pattern: None } => "text".to_string(),
            ParamKind::Enum { values } => {
                let v: Vec<&str> = values.iter().map(|v| v.value.as_str()).collect();
                format!("one of {}", v.join(", "))
            }
            ParamKind::Int { min, max } => match (min, max) {
                (Some(a), Some(b)) => format!("integer {a}..{b}"),
                (Some(a), None) => format!("integer ≥ {a}"),
                (None, Some(b)) => format!("integer ≤ {b}"),
                (None, None) => "integer".to_string(),
            },
            ParamKind::Bool => "true or false".to_string(),
        }
    }
}

fn strip_anchors(p: &str) -> &str {
    p.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(p)
}

/// A declared parameter of a job.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// Name, used as `name=value` and in templates as `{{ name }}`.
    pub name: String,
    /// Type and constraints.
    pub kind: ParamKind,
    /// Whether a value must be given (a default makes a param not required).
    pub required: bool,
    /// Canonical default value.
    pub default: Option<String>,
    /// One line of help for people.
    pub help: Option<String>,
    /// Marks a value that must never be shown back (audit, history, status).
    pub secret: bool,
}

/// Why a value was refused by a parameter's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name.
    pub param: String,
    /// What is wrong, for a person.
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.param, self.message)
    }
}

impl ParamSpec {
    /// Checks a raw value against the type and returns its canonical form.
    pub fn normalize(&self, raw: &str) -> Result<String, ParamError> {
        let err = |message: String| ParamError {
            param: self.name.clone(),
            message,
        };
        if raw.len() > MAX_PARAM_LEN {
            return Err(err(format!(
                "the value is {} bytes long; at most {MAX_PARAM_LEN} are accepted",
                raw.len()
            )));
        }
        if let Some(c) = raw.chars().find(|c| c.is_control()) {
            return Err(err(format!(
                "the value contains a control character ({}); line breaks and control characters are not accepted",
                c.escape_default()
            )));
        }
        // A secret value is never repeated back (replies and the audit reason quote these errors).
        let shown = if self.secret {
            "••••".to_string()
        } else {
            shorten(raw, 60)
        };
        match &self.kind {
            ParamKind::String { pattern } => {
                if let Some(re) = pattern
                    && !re.is_match(raw)
                {
                    return Err(err(format!("`{shown}` is not allowed: expected {}", self.kind.describe())));
                }
                Ok(raw.to_string())
            }
            ParamKind::Enum { values } => {
                let lower = raw.to_lowercase();
                for v in values {
                    if v.value.to_lowercase() == lower || v.synonyms.iter().any(|s| s.to_lowercase() == lower) {
                        return Ok(v.value.clone());
                    }
                }
                let all: Vec<&str> = values
                    .iter()
                    .flat_map(|v| std::iter::once(v.value.as_str()).chain(v.synonyms.iter().map(String::as_str)))
                    .collect();
                let hint = match closest(raw, all.iter().copied()) {
                    Some(s) => format!(" Did you mean `{}`?", self.normalize(s).unwrap_or_else(|_| s.to_string())),
                    None => String::new(),
                };
                Err(err(format!("`{shown}` is not {}.{hint}", self.kind.describe())))
            }
            ParamKind::Int { min, max } => {
                let n: i64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("`{shown}` is not a whole number (expected {})", self.kind.describe())))?;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(err(format!("{n} is out of range (expected {})", self.kind.describe())));
                }
                Ok(n.to_string())
            }
            ParamKind::Bool => match raw.to_lowercase().as_str() {
                "true" | "yes" | "y" | "on" | "1" => Ok("true".into()),
                "false" | "no" | "n" | "off" | "0" => Ok("false".into()),
                _ => Err(err(format!("`{shown}` is not true or false"))),
            },
        }
    }

    /// Whether `raw` would be accepted (cheap check used by alias slots).
    pub fn accepts(&self, raw: &str) -> bool {
        self.normalize(raw).is_ok()
    }
}

/// Cuts a string to at most `max` characters for display, marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// The closest candidate to `word` by edit similarity, if it is close enough to suggest.
/// Candidates far off in length are skipped before any distance is computed.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let w = word.to_lowercase();
    let wl = w.chars().count();
    let mut best: Option<(&str, f64)> = None;
    for c in candidates {
        let lc: std::borrow::Cow<str> = if c.bytes().all(|b| !b.is_ascii_uppercase()) {
            std::borrow::Cow::Borrowed(c)
        } else {
            std::borrow::Cow::Owned(c.to_lowercase())
        };
        let cl = lc.chars().count();
        // Jaro-Winkler is at most 0.8 + 0.2 × (shorter / longer), so it cannot reach 0.85 below a
        // length ratio of 0.25; an edit distance ≤ 2 needs lengths within 2.
        if wl.abs_diff(cl) > 2 && (wl.min(cl) as f64) < 0.25 * wl.max(cl) as f64 {
            continue;
        }
        let score = strsim::jaro_winkler(&w, &lc);
        let close = score >= 0.85
            || (wl >= 3 && wl.abs_diff(cl) <= 2 && {
                let dist = strsim::damerau_levenshtein(&w, &lc);
                dist <= 2 && dist < cl
            });
        if close && best.is_none_or(|(_, s)| score > s) {
            best = Some((c, score));
        }
    }
    best.map(|(c, _)| c)
}

/// Template variables for a job's argv: the params with their types (`int` as a number, `bool`
/// as a boolean, so `{% if force %}` means what it says), plus `execution_id`, `job` and
/// `requester`. Shared by the exec runner and by `opsbot check`'s trial render.
pub fn template_context(job: &str, specs: &[ParamSpec], params: &Params, execution_id: i64, requester: &str) -> minijinja::Value {
    let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
    ctx.insert("execution_id".into(), minijinja::Value::from(execution_id));
    ctx.insert("job".into(), minijinja::Value::from(job));
    ctx.insert("requester".into(), minijinja::Value::from(requester));
    for (name, raw) in params {
        let value = match specs.iter().find(|p| &p.name == name).map(|p| &p.kind) {
            Some(ParamKind::Int { .. }) => raw
                .parse::<i64>()
                .map(minijinja::Value::from)
                .unwrap_or_else(|_| minijinja::Value::from(raw.as_str())),
            Some(ParamKind::Bool) => minijinja::Value::from(raw == "true"),
            _ => minijinja::Value::from(raw.as_str()),
        };
        ctx.insert(name.clone(), value);
    }
    minijinja::Value::from(ctx)
}

/// The template environment argv elements are rendered in: no escaping (the result is one
/// argument, not HTML or shell), absent optional values render as "", and booleans print as
/// `true`/`false` (minijinja alone prints `True`/`False`) while staying booleans for `{% if %}`
/// and `==`.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.set_formatter(|out, state, value| {
        if value.kind() == minijinja::value::ValueKind::Bool {
            out.write_str(if value.is_true() { "true" } else { "false" })
                .map_err(minijinja::Error::from)
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env
}

/// A plausible value for a param, for trial renders: its default, first enum value, or a sample.
pub fn sample_value(p: &ParamSpec) -> String {
    if let Some(d) = &p.default {
        return d.clone();
    }
    match &p.kind {
        ParamKind::Enum { values } => values.first().map(|v| v.value.clone()).unwrap_or_default(),
        ParamKind::Int { min, max } => min.or(*max).unwrap_or(1).to_string(),
        ParamKind::Bool => "true".into(),
        ParamKind::String { .. } => "sample".into(),
    }
}

/// How a job is carried out.
#[derive(Clone, Debug)]
pub enum RunnerSpec {
    /// Start a local process from an argv list of templates.
    Exec {
        /// Program and arguments; each element is a minijinja template over the params.
        argv: Vec<String>,
        /// Extra environment variables (values may come from `${env:…}` / `${file:…}`).
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: PathBuf,
        /// Names of the `env` variables whose values came from `${env:…}`/`${file:…}`
        /// references: secrets, scrubbed from the run's output.
        secret_env: std::collections::BTreeSet<String>,
    },
}

/// A job as the engine and the runners see it.
#[derive(Clone, Debug)]
pub struct JobSpec {
    /// Name, used in commands.
    pub name: String,
    /// One line for help and list.
    pub description: String,
    /// Parameters in declared order (positional arguments fill them in this order).
    pub params: Vec<ParamSpec>,
    /// Alias templates like `deploy {app} to {env}`.
    pub aliases: Vec<String>,
    /// Example commands shown in help.
    pub examples: Vec<String>,
    /// How to run it.
    pub runner: RunnerSpec,
    /// Wall-clock limit; the process group is terminated past it.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub kill_grace: Duration,
    /// Maximum parallel executions of this job (None: unlimited).
    pub concurrency: Option<u32>,
    /// Ask the requester to confirm before running.
    pub sensitive: bool,
    /// Maximum bytes of output kept.
    pub output_limit: u64,
}

impl JobSpec {
    /// The declared param of that name.
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// All jobs, by name, in config order.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    jobs: Vec<JobSpec>,
    by_name: HashMap<String, usize>,
}

impl Catalog {
    /// Builds a catalog from jobs (names must be unique; config loading guarantees it).
    pub fn new(jobs: Vec<JobSpec>) -> Self {
        let by_name = jobs.iter().enumerate().map(|(i, j)| (j.name.to_lowercase(), i)).collect();
        Self { jobs, by_name }
    }
    /// The job named `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&JobSpec> {
        self.by_name.get(&name.to_lowercase()).map(|&i| &self.jobs[i])
    }
    /// All jobs in config order.
    pub fn jobs(&self) -> &[JobSpec] {
        &self.jobs
    }
    /// Number of jobs.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }
    /// Whether there are no jobs.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ParamSpec {
        ParamSpec {
            name: "env".into(),
            kind: ParamKind::Enum {
                values: vec![
                    EnumValue {
                        value: "prod".into(),
                        synonyms: vec!["production".into(), "生产".into()],
                    },
                    EnumValue {
                        value: "staging".into(),
                        synonyms: vec![],
                    },
                ],
            },
            required: true,
            default: None,
            help: None,
            secret: false,
        }
    }

    #[test]
    fn enum_synonyms_and_suggestions() {
        let p = env();
        assert_eq!(p.normalize("PRODUCTION").unwrap(), "prod");
        assert_eq!(p.normalize("生产").unwrap(), "prod");
        let e = p.normalize("stagign").unwrap_err();
        assert!(e.message.contains("Did you mean `staging`"), "{}", e.message);
    }

    #[test]
    fn control_characters_and_length_refused() {
        let p = ParamSpec {
            kind: ParamKind::String { pattern: None },
            ..env()
        };
        assert!(p.normalize("a\nreboot").unwrap_err().message.contains("control character"));
        assert!(p.normalize(&"x".repeat(MAX_PARAM_LEN + 1)).is_err());
        assert_eq!(p.normalize("; rm -rf /").unwrap(), "; rm -rf /");
    }

    #[test]
    fn suggestions() {
        let c = ["deploy", "restart", "Rollback", "history"];
        assert_eq!(closest("deplyo", c), Some("deploy"));
        assert_eq!(closest("dep", c), Some("deploy"));
        assert_eq!(closest("ROLLBAK", c), Some("Rollback"));
        assert_eq!(closest("wipe", c), None);
        assert_eq!(closest("x", c), None);
    }

    #[test]
    fn int_bounds() {
        let p = ParamSpec {
            kind: ParamKind::Int {
                min: Some(1),
                max: Some(20),
            },
            ..env()
        };
        assert_eq!(p.normalize("3").unwrap(), "3");
        assert!(p.normalize("21").unwrap_err().message.contains("out of range"));
        assert!(p.normalize("3; reboot").unwrap_err().message.contains("not a whole number"));
    }
}
