//! Natural language for opsbot, English and Chinese, built from the job catalog itself.
//!
//! No model to train and nothing to download: the index is the catalog's own words (job names,
//! alias templates, descriptions, examples, parameter names, enum values and their synonyms)
//! joined to a small lexicon of operations words in both languages ([`lexicon`]). A request is
//! cut into words (Chinese with [jieba-rs](https://docs.rs/jieba-rs), its dictionary built from
//! the lexicon and the catalog only — small, and it never splits a job's words), entities are
//! found (execution ids, versions, hosts, numbers with units, times), and every job that one of
//! the words points at is scored by how much of the request it explains. The score is the
//! confidence the engine acts on: high proceeds, medium asks "Did you mean …?", low offers
//! choices, and some requests are refused outright (shell text, destructive words no job owns,
//! values a parameter does not accept). It never guesses a value for a free-text parameter.

pub mod lexicon;
pub mod llm;
pub mod synthetic;
pub mod time;

use jieba_rs::Jieba;
use lexicon::Builtin;
use opsbot_core::config::{AliasPart, alias_parts};
use opsbot_core::job::{Catalog, ParamKind, ParamSpec};
use opsbot_core::understand::{CONFIRM_AT, OFFER_AT, PROCEED_AT, is_cjk};
use opsbot_core::{Candidate, Command, Context, Lang, Understand, Understanding, Verdict};
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Words for the version `latest`.
const LATEST: &[&str] = &["latest", "最新", "最新版", "最新版本"];

/// Longest text read, in characters; the rest is ignored (chat commands are short).
pub const MAX_CHARS: usize = 500;

/// Why a request is refused outright.
pub mod refusal {
    /// The text contains shell syntax.
    pub const SHELL: &str = "shell";
    /// The text asks for something destructive that no job does.
    pub const DESTRUCTIVE: &str = "destructive";
    /// A value does not fit its parameter.
    pub const INVALID: &str = "invalid";
    /// The text says not to (`don't deploy …`, `不要重启`).
    pub const NEGATED: &str = "negated";
}

/// The natural-language layer over one catalog.
pub struct Nlu {
    catalog: Catalog,
    /// word → (job, weight) for words that point at a job.
    triggers: HashMap<String, Vec<(usize, f32)>>,
    /// lower-case enum value or synonym → (job, param, canonical value).
    values: HashMap<String, Vec<(usize, usize, String)>>,
    /// param names (and their plural/singular) and unit words → (job, param).
    param_words: HashMap<String, Vec<(usize, usize)>>,
    /// Every word worth correcting a typo towards, by length in characters.
    vocabulary: Vec<Vec<String>>,
    builtins: HashMap<&'static str, Builtin>,
    stop: HashSet<&'static str>,
    danger: HashSet<&'static str>,
    chitchat: HashSet<&'static str>,
    /// The Chinese words the segmenter is taught (lexicon and catalog), each once.
    chinese_words: Vec<String>,
    /// The segmenter, built from `chinese_words` at the first Chinese text: its tables take
    /// 0.5 MiB that an idle bot, or one only ever written to in English, does not need. Built
    /// from a few hundred words, it does not make the first Chinese reply noticeably slower
    /// (docs/benchmarks.md, idle RSS).
    jieba: OnceLock<Jieba>,
}

/// How a word of the request was read.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Word,
    /// `#23`, `run 31`, `任务23`
    Id(i64),
    Number(i64),
    Version,
    Host,
    /// `key=value`
    Pair(String, String),
}

#[derive(Clone, Debug)]
struct Tok {
    /// Lower case (a typo already corrected when `fuzzy`).
    text: String,
    /// As written.
    orig: String,
    kind: Kind,
    /// Similarity of a typo correction (1.0 when none).
    fuzzy: f32,
}

/// What one job makes of the request.
#[derive(Debug)]
struct JobReading {
    job: usize,
    confidence: f32,
    params: Vec<(String, String)>,
    invalid: Vec<String>,
    why: String,
}

impl Nlu {
    /// Builds the index of a catalog (cheap: a few ms for 500 jobs).
    pub fn new(catalog: &Catalog) -> Nlu {
        let mut triggers: HashMap<String, Vec<(usize, f32)>> = HashMap::new();
        let mut values: HashMap<String, Vec<(usize, usize, String)>> = HashMap::new();
        let mut param_words: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let stop: HashSet<&'static str> = lexicon::STOPWORDS.iter().copied().collect();
        let add = |map: &mut HashMap<String, Vec<(usize, f32)>>, word: &str, job: usize, w: f32| {
            let word = word.to_lowercase();
            if word.is_empty() || word.chars().count() < 2 && !word.chars().any(is_cjk) {
                return;
            }
            let e = map.entry(word).or_default();
            match e.iter_mut().find(|(j, _)| *j == job) {
                Some((_, old)) if *old < w => *old = w,
                Some(_) => {}
                None => e.push((job, w)),
            }
        };
        for (ji, job) in catalog.jobs().iter().enumerate() {
            // The job's own words, by how strongly each says "this job".
            let mut own: Vec<(String, f32)> = Vec::new();
            own.push((job.name.to_lowercase(), 1.0));
            for part in job.name.to_lowercase().split(['-', '_', '.']) {
                if part != job.name.to_lowercase() && !stop.contains(part) {
                    own.push((part.to_string(), 0.85));
                }
            }
            for alias in &job.aliases {
                let parts = alias_parts(alias);
                let mut first = true;
                for p in &parts {
                    if let AliasPart::Word(w) = p {
                        if !stop.contains(w.as_str()) {
                            own.push((w.clone(), if first { 0.95 } else { 0.75 }));
                        }
                        first = false;
                    }
                }
            }
            for ex in &job.examples {
                let first = ex.trim_start_matches(['!', '.', '/']).split_whitespace().next().unwrap_or("");
                if first != "run" && !first.contains('=') && !stop.contains(first.to_lowercase().as_str()) {
                    own.push((first.to_lowercase(), 0.95));
                }
            }
            for w in words_of(&job.description) {
                if !stop.contains(w.as_str()) && w.chars().count() >= 3 {
                    own.push((w, 0.6));
                }
            }
            for (w, weight) in &own {
                add(&mut triggers, w, ji, *weight);
            }
            // A concept reaches the job through one of its strong words.
            for concept in lexicon::CONCEPTS {
                let via = own
                    .iter()
                    .filter(|(w, weight)| *weight >= 0.75 && concept.contains(&w.as_str()))
                    .map(|(_, weight)| *weight)
                    .fold(0.0f32, f32::max);
                if via > 0.0 {
                    for w in concept.iter() {
                        add(&mut triggers, w, ji, via.min(0.9));
                    }
                }
            }
            for (pi, p) in job.params.iter().enumerate() {
                let name = p.name.to_lowercase();
                for w in [name.clone(), format!("{name}s"), name.trim_end_matches('s').to_string()] {
                    let e = param_words.entry(w).or_default();
                    if !e.contains(&(ji, pi)) {
                        e.push((ji, pi));
                    }
                }
                for (unit_param, words) in lexicon::UNITS {
                    if *unit_param == name {
                        for w in *words {
                            param_words.entry(w.to_string()).or_default().push((ji, pi));
                        }
                    }
                }
                if let ParamKind::Enum { values: vs } = &p.kind {
                    for v in vs {
                        let common = lexicon::VALUE_SYNONYMS
                            .iter()
                            .filter(|(k, _)| k.eq_ignore_ascii_case(&v.value))
                            .flat_map(|(_, w)| w.iter().map(|s| s.to_string()));
                        for s in std::iter::once(v.value.clone()).chain(v.synonyms.iter().cloned()).chain(common) {
                            let e = values.entry(s.to_lowercase()).or_default();
                            if !e.iter().any(|(j, p, _)| *j == ji && *p == pi) {
                                e.push((ji, pi, v.value.clone()));
                            }
                        }
                    }
                }
            }
        }
        let mut vocabulary: Vec<Vec<String>> = Vec::new();
        for w in triggers
            .keys()
            .chain(values.keys())
            .chain(lexicon::BUILTIN_WORDS.iter().map(|(w, _)| w.to_string()).collect::<Vec<_>>().iter())
        {
            if w.chars().all(|c| c.is_ascii_alphabetic() || c == '-') && w.len() >= 4 {
                let n = w.chars().count();
                if vocabulary.len() <= n {
                    vocabulary.resize(n + 1, Vec::new());
                }
                if !vocabulary[n].contains(w) {
                    vocabulary[n].push(w.clone());
                }
            }
        }
        let mut taught = HashSet::new();
        let chinese_words = lexicon::chinese_words()
            .map(str::to_string)
            .chain(triggers.keys().cloned())
            .chain(values.keys().cloned())
            .chain(param_words.keys().cloned())
            .filter(|w| w.chars().any(is_cjk) && taught.insert(w.clone()))
            .collect();
        Nlu {
            catalog: catalog.clone(),
            triggers,
            values,
            param_words,
            vocabulary,
            builtins: lexicon::BUILTIN_WORDS.iter().copied().collect(),
            stop,
            danger: lexicon::DANGER.iter().copied().collect(),
            chitchat: lexicon::CHITCHAT.iter().copied().collect(),
            chinese_words,
            jieba: OnceLock::new(),
        }
    }

    /// The Chinese segmenter, its dictionary the lexicon's and the catalog's Chinese words
    /// (built at the first call).
    fn jieba(&self) -> &Jieba {
        self.jieba.get_or_init(|| {
            let mut jieba = Jieba::empty();
            for w in &self.chinese_words {
                jieba.add_word(w, Some(100_000 * w.chars().count()), None);
            }
            jieba
        })
    }

    /// Reads a text: the time in it (if any) is taken out first, then the rest is matched.
    pub fn analyse(&self, text: &str, ctx: &Context<'_>) -> Understanding {
        let text: String = text.chars().take(MAX_CHARS).collect();
        let text = normalize(&text);
        let lang = Lang::detect(&text).unwrap_or_default();
        let when = time::find(&text, ctx.now, ctx.tz).filter(|w| time::outside_values(&text, &w.span));
        let rest = match &when {
            Some(w) => format!("{} {}", &text[..w.span.start], &text[w.span.end..]),
            None => text.clone(),
        };
        let mut u = self.read(&rest, lang);
        if u.candidates.first().is_some_and(|c| matches!(c.command, Command::Run { .. })) {
            u.when = when;
        }
        u
    }

    fn read(&self, text: &str, lang: Lang) -> Understanding {
        let mut u = Understanding::unknown(lang);
        if let Some(sign) = shell_sign(text) {
            u.verdict = Verdict::Refuse(format!("{}:{sign}", refusal::SHELL));
            return u;
        }
        let text = chinese_numerals(text);
        let toks = self.tokens(&text);
        if toks.is_empty() {
            return u;
        }
        let lower = text.to_lowercase();
        if let Some(n) = toks
            .iter()
            .map(|t| t.text.as_str())
            .chain(lower.contains("do not").then_some("do not"))
            .find(|t| lexicon::NEGATIONS.contains(t))
        {
            u.verdict = Verdict::Refuse(format!("{}:{n}", refusal::NEGATED));
            return u;
        }
        let mut cands: Vec<Candidate> = Vec::new();
        cands.extend(self.builtin(&toks));
        let mut readings: Vec<JobReading> = self.jobs_for(&toks);
        // `how do I deploy` asks about the job, it does not ask to run it.
        if cands.iter().any(|c| matches!(c.command, Command::Help(Some(_)))) {
            for r in &mut readings {
                r.confidence *= 0.4;
            }
        }
        readings.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        // A destructive word no candidate job owns: refuse rather than offer anything.
        let best_job = readings.first().map(|r| r.job);
        if let Some(d) = toks.iter().find(|t| {
            self.danger.contains(t.text.as_str())
                && !best_job.is_some_and(|j| self.triggers.get(&t.text).is_some_and(|v| v.iter().any(|(x, _)| *x == j)))
        }) && !cands.iter().any(|c| c.confidence >= PROCEED_AT)
        {
            u.verdict = Verdict::Refuse(format!("{}:{}", refusal::DESTRUCTIVE, d.orig));
            return u;
        }
        if let Some(r) = readings.first()
            && !r.invalid.is_empty()
            && r.confidence >= CONFIRM_AT
            && cands.iter().all(|c| c.confidence < r.confidence)
        {
            u.verdict = Verdict::Refuse(format!("{}:{}", refusal::INVALID, r.invalid.join(" ")));
            u.candidates.push(self.candidate(r));
            return u;
        }
        for r in readings.iter().filter(|r| r.invalid.is_empty()) {
            cands.push(self.candidate(r));
        }
        cands.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        cands.retain(|c| c.confidence >= OFFER_AT);
        cands.truncate(4);
        // Chit-chat with nothing else in it.
        if cands.is_empty() && toks.iter().any(|t| self.chitchat.contains(t.text.as_str())) {
            return u;
        }
        u.verdict = match cands.as_slice() {
            [] => Verdict::Unknown,
            [best, rest @ ..] => {
                let close = rest.first().is_some_and(|second| best.confidence - second.confidence < 0.12);
                if best.confidence >= PROCEED_AT && !close {
                    Verdict::Proceed
                } else if best.confidence >= CONFIRM_AT && !close {
                    Verdict::Confirm
                } else {
                    Verdict::Choose
                }
            }
        };
        u.candidates = cands;
        u
    }

    fn candidate(&self, r: &JobReading) -> Candidate {
        let job = &self.catalog.jobs()[r.job];
        Candidate {
            command: Command::Run {
                job: job.name.clone(),
                params: r.params.clone(),
                positional: Vec::new(),
            },
            confidence: r.confidence,
            why: r.why.clone(),
        }
    }

    /// Words, ids, numbers, versions, hosts and `key=value` pairs; phrases joined; typos fixed.
    fn tokens(&self, text: &str) -> Vec<Tok> {
        let mut raw: Vec<String> = Vec::new();
        let mut run = String::new();
        let mut cjk = false;
        let flush = |run: &mut String, cjk: bool, raw: &mut Vec<String>| {
            if run.is_empty() {
                return;
            }
            if cjk {
                for t in self.jieba().cut(run, true) {
                    let w = t.word.trim();
                    if !w.is_empty() {
                        raw.push(w.to_string());
                    }
                }
            } else {
                raw.extend(split_latin(run));
            }
            run.clear();
        };
        for c in text.chars() {
            let is_c = is_cjk(c);
            if is_c != cjk {
                flush(&mut run, cjk, &mut raw);
                cjk = is_c;
            }
            run.push(c);
        }
        flush(&mut run, cjk, &mut raw);

        // Phrases (`roll back`, `who am i`) become one word.
        let lower: Vec<String> = raw.iter().map(|w| w.to_lowercase()).collect();
        let mut joined: Vec<(String, String)> = Vec::new();
        let mut i = 0;
        'outer: while i < lower.len() {
            for (phrase, word) in lexicon::PHRASES {
                let n = phrase.split(' ').count();
                if n > 1 && i + n <= lower.len() && lower[i..i + n].join(" ") == *phrase {
                    joined.push((word.to_string(), raw[i..i + n].join(" ")));
                    i += n;
                    continue 'outer;
                }
                if n == 1 && lower[i] == *phrase {
                    joined.push((word.to_string(), raw[i].clone()));
                    i += 1;
                    continue 'outer;
                }
            }
            joined.push((lower[i].clone(), raw[i].clone()));
            i += 1;
        }

        let mut toks: Vec<Tok> = Vec::with_capacity(joined.len());
        for (low, orig) in &joined {
            let kind = self.kind_of(low, orig);
            // `最新版` is the version `latest`.
            let orig = if kind == Kind::Version && LATEST.contains(&low.as_str()) {
                "latest".to_string()
            } else {
                orig.clone()
            };
            toks.push(Tok {
                text: low.clone(),
                orig,
                kind,
                fuzzy: 1.0,
            });
        }
        // A number right after `run`/`任务`, or before `号`, is an execution id.
        for i in 0..toks.len() {
            if let Kind::Number(n) = toks[i].kind
                && n > 0
                && ((i > 0 && lexicon::RUN_WORDS.contains(&toks[i - 1].text.as_str()))
                    || toks.get(i + 1).is_some_and(|t| t.text.starts_with('号')))
            {
                toks[i].kind = Kind::Id(n);
            }
        }
        // Typos: a word nothing knows, close to one that something knows.
        for t in &mut toks {
            if t.kind == Kind::Word
                && !self.known(&t.text)
                && t.text.len() >= 4
                && t.text.chars().all(|c| c.is_ascii_alphabetic())
                && let Some((w, sim)) = self.correct(&t.text)
            {
                t.text = w;
                t.fuzzy = 0.8 * sim;
            }
        }
        toks
    }

    fn kind_of(&self, low: &str, orig: &str) -> Kind {
        if let Some((k, v)) = orig.split_once('=')
            && !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Kind::Pair(k.to_lowercase(), v.trim_matches(['"', '\'']).to_string());
        }
        if let Some(id) = low.strip_prefix('#').and_then(|s| s.parse::<i64>().ok()).filter(|&n| n > 0) {
            return Kind::Id(id);
        }
        if let Ok(n) = low.parse::<i64>() {
            return Kind::Number(n);
        }
        if let Some(n) = chinese_number(low).or_else(|| english_number(low)) {
            return Kind::Number(n);
        }
        if is_version(low) || LATEST.contains(&low) {
            return Kind::Version;
        }
        if (is_host(low) || low == "localhost") && !self.values.contains_key(low) && !self.triggers.contains_key(low) {
            return Kind::Host;
        }
        Kind::Word
    }

    fn known(&self, w: &str) -> bool {
        self.triggers.contains_key(w)
            || self.values.contains_key(w)
            || self.param_words.contains_key(w)
            || self.stop.contains(w)
            || self.builtins.contains_key(w)
            || self.danger.contains(w)
            || self.chitchat.contains(w)
            || lexicon::RUN_WORDS.contains(&w)
            || lexicon::HOW_TO.contains(&w)
    }

    /// The known word a typo most likely meant, with its similarity.
    fn correct(&self, w: &str) -> Option<(String, f32)> {
        let n = w.chars().count();
        let mut best: Option<(&String, f64)> = None;
        for len in n.saturating_sub(2)..=n + 2 {
            for c in self.vocabulary.get(len).into_iter().flatten() {
                let d = strsim::damerau_levenshtein(w, c);
                let allowed = if n >= 7 { 2 } else { 1 };
                if d > allowed {
                    continue;
                }
                let jw = strsim::jaro_winkler(w, c);
                if jw >= 0.85 && best.is_none_or(|(_, s)| jw > s) {
                    best = Some((c, jw));
                }
            }
        }
        best.map(|(c, s)| (c.clone(), s as f32))
    }

    /// Built-in verbs said in natural form.
    fn builtin(&self, toks: &[Tok]) -> Option<Candidate> {
        let words: Vec<Builtin> = toks.iter().filter_map(|t| self.builtins.get(t.text.as_str()).copied()).collect();
        let id = toks.iter().find_map(|t| match t.kind {
            Kind::Id(n) => Some(n),
            _ => None,
        });
        let number = toks.iter().find_map(|t| match t.kind {
            Kind::Number(n) if n > 0 => Some(n),
            _ => None,
        });
        let has_value = toks.iter().any(|t| self.values.contains_key(&t.text));
        let job_named = toks.iter().find_map(|t| {
            self.catalog
                .get(&t.text)
                .map(|j| j.name.clone())
                .or_else(|| self.trigger_job(&t.text))
        });
        let content = toks
            .iter()
            .filter(|t| !self.stop.contains(t.text.as_str()) && !matches!(t.kind, Kind::Id(_)))
            .count()
            .max(1);
        let how = toks.windows(2).any(|w| {
            lexicon::HOW_TO.contains(&w[0].text.as_str())
                && (["do", "to", "can", "should"].contains(&w[1].text.as_str()) || w[0].text.chars().any(is_cjk))
        });
        // Of several built-in words, the most specific: one that takes an id when there is
        // one (`审批 9 通过` is `approve 9`), `schedules` over `list`, and so on.
        let has_id = id.is_some() || number.is_some_and(|_| !has_value);
        const ORDER: &[Builtin] = &[
            Builtin::Unschedule,
            Builtin::Approve,
            Builtin::Deny,
            Builtin::Cancel,
            Builtin::Status,
            Builtin::Logs,
            Builtin::Schedules,
            Builtin::Approvals,
            Builtin::History,
            Builtin::Whoami,
            Builtin::Help,
            Builtin::List,
        ];
        let takes_id = |b: &Builtin| {
            matches!(
                b,
                Builtin::Unschedule | Builtin::Approve | Builtin::Deny | Builtin::Cancel | Builtin::Status | Builtin::Logs
            )
        };
        let first = ORDER
            .iter()
            .copied()
            .find(|b| words.contains(b) && (has_id || !takes_id(b)))
            .or_else(|| words.first().copied());
        let kinds: HashSet<Builtin> = words.iter().copied().collect();
        let why = |s: &str| s.to_string();
        let (command, mut confidence, reason) = match (first, id.or(number.filter(|_| !has_value))) {
            (
                Some(b @ (Builtin::Status | Builtin::Cancel | Builtin::Logs | Builtin::Approve | Builtin::Deny | Builtin::Unschedule)),
                Some(n),
            ) if id.is_some()
                || matches!(
                    b,
                    Builtin::Approve | Builtin::Deny | Builtin::Unschedule | Builtin::Status | Builtin::Cancel
                ) =>
            {
                let c = match b {
                    Builtin::Status => Command::Status(n),
                    Builtin::Cancel => Command::Cancel(n),
                    Builtin::Logs => Command::Logs { id: n, all: false },
                    Builtin::Approve => Command::Approve(n),
                    Builtin::Deny => Command::Deny { id: n, reason: None },
                    _ => Command::Unschedule(n),
                };
                // A bare number next to an action may be a count (`cancel 2 deploys`,
                // `approve all 3`): asked about unless it is marked as an id.
                let action = matches!(b, Builtin::Cancel | Builtin::Approve | Builtin::Deny | Builtin::Unschedule);
                (c, if id.is_none() && action { 0.6 } else { 0.92 }, why("a built-in verb and an id"))
            }
            (None, Some(n)) if id.is_some() && job_named.is_none() => (Command::Status(n), 0.6, why("an execution id alone")),
            (_, _) if how && job_named.is_some() => (Command::Help(job_named.clone()), 0.85, why("`how do I …` about a job")),
            (Some(Builtin::Help), _) => (Command::Help(job_named.clone()), 0.9, why("asks for help")),
            (Some(Builtin::List), _) if job_named.is_none() || kinds.len() == 1 => (Command::List, 0.9, why("asks for the jobs")),
            (Some(Builtin::Whoami), _) => (Command::Whoami, 0.92, why("asks who they are")),
            (Some(Builtin::Approvals), None) => (Command::Approvals, 0.88, why("asks for approvals")),
            (Some(Builtin::Schedules), None) => (Command::Schedules, 0.88, why("asks for scheduled runs")),
            (Some(Builtin::History), _) => (
                Command::History {
                    job: job_named.clone(),
                    mine: toks.iter().any(|t| ["my", "mine", "i", "我", "我的"].contains(&t.text.as_str())),
                    limit: None,
                },
                0.88,
                why("asks for history"),
            ),
            _ => return None,
        };
        // Words nobody explains lower it.
        let explained = toks
            .iter()
            .filter(|t| !self.stop.contains(t.text.as_str()) && !matches!(t.kind, Kind::Id(_)))
            .filter(|t| {
                self.builtins.contains_key(t.text.as_str())
                    || matches!(t.kind, Kind::Number(_))
                    || self.catalog.get(&t.text).is_some()
                    || self.triggers.contains_key(&t.text)
                    || lexicon::RUN_WORDS.contains(&t.text.as_str())
                    || lexicon::HOW_TO.contains(&t.text.as_str())
                    || ["my", "mine", "我的", "do", "should"].contains(&t.text.as_str())
            })
            .count();
        confidence *= (explained as f32 / content as f32).powf(1.5).max(0.3);
        Some(Candidate {
            command,
            confidence,
            why: reason,
        })
    }

    fn trigger_job(&self, w: &str) -> Option<String> {
        let list = self.triggers.get(w)?;
        let best = list.iter().copied().fold(None::<(usize, f32)>, |b, (j, x)| match b {
            Some((_, y)) if y >= x => b,
            _ => Some((j, x)),
        })?;
        (best.1 >= 0.9).then(|| self.catalog.jobs()[best.0].name.clone())
    }

    /// Every job a word points at, each scored by how much of the request it explains.
    fn jobs_for(&self, toks: &[Tok]) -> Vec<JobReading> {
        let mut jobs: Vec<usize> = Vec::new();
        for t in toks {
            if let Some(list) = self.triggers.get(&t.text) {
                for (j, _) in list {
                    if !jobs.contains(j) {
                        jobs.push(*j);
                    }
                }
            }
        }
        jobs.into_iter().map(|j| self.read_job(j, toks)).collect()
    }

    fn read_job(&self, ji: usize, toks: &[Tok]) -> JobReading {
        let job = &self.catalog.jobs()[ji];
        let mut trig = 0.0f32;
        let mut trig_word = String::new();
        let mut content = 0.0f32;
        let mut explained = 0.0f32;
        let mut assigned: Vec<Option<(String, f32)>> = vec![None; job.params.len()];
        let mut conflict = false;
        let mut unexplained: Vec<&str> = Vec::new();
        let mut invalid: Vec<String> = Vec::new();
        let mut pending_numbers: Vec<(usize, i64)> = Vec::new();
        let mut used_unit = vec![false; toks.len()];

        // Numbers with a unit word next to them go to that unit's param.
        for (i, t) in toks.iter().enumerate() {
            let Kind::Number(n) = t.kind else { continue };
            let unit = toks[i + 1..]
                .iter()
                .enumerate()
                .take(2)
                .find(|(_, u)| !["个", "a", "of"].contains(&u.text.as_str()))
                .and_then(|(k, u)| self.unit_param(ji, &u.text).map(|p| (i + 1 + k, p)))
                .or_else(|| {
                    // `80 行` reads forwards; `lines 80` / `副本数 5` backwards.
                    i.checked_sub(1).and_then(|k| self.unit_param(ji, &toks[k].text).map(|p| (k, p)))
                });
            match unit {
                Some((k, p)) => {
                    used_unit[k] = true;
                    self.assign(job, p, &n.to_string(), 1.0, &mut assigned, &mut invalid, &mut conflict);
                }
                None => pending_numbers.push((i, n)),
            }
        }
        for (i, t) in toks.iter().enumerate() {
            let is_stop = self.stop.contains(t.text.as_str());
            let trig_w = self
                .triggers
                .get(&t.text)
                .and_then(|v| v.iter().find(|(j, _)| *j == ji).map(|(_, w)| *w * t.fuzzy));
            let value = self
                .values
                .get(&t.text)
                .and_then(|v| v.iter().find(|(j, _, _)| *j == ji).map(|(_, p, canon)| (*p, canon.clone())));
            if is_stop && trig_w.is_none() && value.is_none() && t.kind == Kind::Word {
                continue;
            }
            match &t.kind {
                Kind::Id(_) => {
                    // An execution id means a built-in, not a job.
                    content += 1.0;
                    unexplained.push(&t.orig);
                    continue;
                }
                Kind::Number(_) => {
                    content += 1.0;
                    if pending_numbers.iter().any(|(k, _)| *k == i) {
                        // Decided below.
                    } else {
                        explained += 1.0;
                    }
                    continue;
                }
                Kind::Pair(k, v) => {
                    content += 1.0;
                    match job.param(k) {
                        Some(_) => {
                            let p = job.params.iter().position(|p| p.name.eq_ignore_ascii_case(k)).unwrap_or(0);
                            self.assign(job, p, v, 1.0, &mut assigned, &mut invalid, &mut conflict);
                            explained += 1.0;
                        }
                        None => unexplained.push(&t.orig),
                    }
                    continue;
                }
                Kind::Version | Kind::Host => {
                    content += 1.0;
                    let fit = job
                        .params
                        .iter()
                        .enumerate()
                        .filter(|(p, spec)| assigned[*p].is_none() && fits_entity(spec, &t.kind, &t.orig))
                        .map(|(p, _)| p)
                        .next();
                    match fit {
                        Some(p) => {
                            self.assign(job, p, &t.orig, 1.0, &mut assigned, &mut invalid, &mut conflict);
                            explained += 1.0;
                        }
                        None => unexplained.push(&t.orig),
                    }
                    continue;
                }
                Kind::Word => {}
            }
            content += 1.0;
            if used_unit[i] {
                explained += 1.0;
                continue;
            }
            if let Some((p, canon)) = value {
                // A value that is also the job's own word (`logs` in `logs web`) counts once.
                self.assign(job, p, &canon, t.fuzzy, &mut assigned, &mut invalid, &mut conflict);
                explained += t.fuzzy;
                if let Some(w) = trig_w
                    && w > trig
                {
                    trig = w;
                    trig_word = t.orig.clone();
                }
                continue;
            }
            if let Some(w) = trig_w {
                explained += t.fuzzy;
                if w > trig {
                    trig = w;
                    trig_word = t.orig.clone();
                }
                continue;
            }
            if self.param_words.get(&t.text).is_some_and(|v| v.iter().any(|(j, _)| *j == ji))
                || lexicon::RUN_WORDS.contains(&t.text.as_str())
                || lexicon::GENERIC.contains(&t.text.as_str())
            {
                explained += 1.0;
                continue;
            }
            // Chinese runs on with particles and fillers the segmenter cannot know: an unknown
            // Chinese word weighs half as much as an unknown English one.
            if t.text.chars().all(is_cjk) && !self.known(&t.text) {
                content -= 0.5;
            }
            unexplained.push(&t.orig);
        }
        // Bare numbers fill the int params still free, in declared order.
        for (i, n) in pending_numbers {
            let free = job
                .params
                .iter()
                .enumerate()
                .find(|(p, spec)| assigned[*p].is_none() && matches!(spec.kind, ParamKind::Int { .. }))
                .map(|(p, _)| p);
            match free {
                Some(p) => {
                    self.assign(job, p, &n.to_string(), 1.0, &mut assigned, &mut invalid, &mut conflict);
                    explained += 1.0;
                }
                None => unexplained.push(&toks[i].orig),
            }
        }
        let coverage = if content > 0.0 { (explained / content).min(1.0) } else { 0.0 };
        let mut confidence = trig * coverage.powf(1.5);
        // A word of the lexicon alone (`free`, `kick`, `问题`) is not enough to act: the job's
        // own name, alias or example word, or a value of its params, must be there too.
        if trig < 0.95 && assigned.iter().all(Option::is_none) {
            confidence = confidence.min(0.6);
        }
        // A word read through a typo correction is always asked about, never acted on.
        if toks.iter().any(|t| t.fuzzy < 1.0) {
            confidence = confidence.min(0.75);
        }
        if conflict {
            confidence *= 0.6;
        }
        let params: Vec<(String, String)> = job
            .params
            .iter()
            .zip(&assigned)
            .filter_map(|(p, a)| a.as_ref().map(|(v, _)| (p.name.clone(), v.clone())))
            .collect();
        let mut why = format!("`{trig_word}` → {} ({:.2})", job.name, trig);
        if !params.is_empty() {
            let shown: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    let secret = job.param(k).is_some_and(|p| p.secret);
                    format!("{k}={}", if secret { "••••" } else { v })
                })
                .collect();
            why.push_str(&format!("; {}", shown.join(" ")));
        }
        why.push_str(&format!("; explains {explained:.1} of {content:.0} words"));
        if !unexplained.is_empty() {
            why.push_str(&format!(" (not: {})", unexplained.join(", ")));
        }
        if conflict {
            why.push_str("; two values for one parameter");
        }
        JobReading {
            job: ji,
            confidence,
            params,
            invalid,
            why,
        }
    }

    fn unit_param(&self, ji: usize, w: &str) -> Option<usize> {
        let job = &self.catalog.jobs()[ji];
        self.param_words
            .get(w)?
            .iter()
            .find(|(j, p)| *j == ji && matches!(job.params[*p].kind, ParamKind::Int { .. }))
            .map(|(_, p)| *p)
    }

    #[allow(clippy::too_many_arguments)]
    fn assign(
        &self,
        job: &opsbot_core::JobSpec,
        p: usize,
        raw: &str,
        sim: f32,
        assigned: &mut [Option<(String, f32)>],
        invalid: &mut Vec<String>,
        conflict: &mut bool,
    ) {
        let spec = &job.params[p];
        // A second value of the same enum goes to the next free param with those values
        // (`from staging to prod`), else it is a conflict.
        let slot = if assigned[p].is_some() {
            let same = job
                .params
                .iter()
                .enumerate()
                .find(|(i, s)| assigned[*i].is_none() && *i != p && same_kind(s, spec) && s.normalize(raw).is_ok());
            match same {
                Some((i, _)) => {
                    // Which of two same-kind params gets which value is a guess by word order:
                    // ask rather than act (`sync db to prod from dev`).
                    *conflict = true;
                    i
                }
                None => {
                    if assigned[p].as_ref().is_some_and(|(v, _)| v != raw) {
                        *conflict = true;
                    }
                    return;
                }
            }
        } else {
            p
        };
        match job.params[slot].normalize(raw) {
            Ok(v) => assigned[slot] = Some((v, sim)),
            Err(e) => {
                invalid.push(e.to_string());
                assigned[slot] = Some((raw.to_string(), 0.0));
            }
        }
    }
}

impl Understand for Nlu {
    fn understand(&self, text: &str, ctx: &Context<'_>) -> Understanding {
        self.analyse(text, ctx)
    }
}

fn same_kind(a: &ParamSpec, b: &ParamSpec) -> bool {
    std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind)
}

/// Whether a version or host entity may fill this param: a string param that accepts it, whose
/// name says what it holds (a free-text param is never filled with a guess).
fn fits_entity(spec: &ParamSpec, kind: &Kind, raw: &str) -> bool {
    // Only a param with a pattern (never free text, never a secret), whose name says what it
    // holds as a whole word (`host`, `target_host`; not `description`, which contains `ip`).
    let ParamKind::String { pattern: Some(_) } = &spec.kind else {
        return false;
    };
    if spec.secret {
        return false;
    }
    let name = spec.name.to_lowercase();
    let words: Vec<&str> = name.split(['_', '-', '.']).collect();
    let named = match kind {
        Kind::Version => words.iter().any(|w| ["version", "ver", "tag", "release", "image"].contains(w)),
        Kind::Host => words
            .iter()
            .any(|w| ["host", "hostname", "server", "node", "machine", "ip", "addr", "address"].contains(w)),
        _ => false,
    };
    named && spec.normalize(raw).is_ok()
}

/// Full-width letters and digits to ASCII, Chinese punctuation to spaces (the segmenter and
/// the entity rules then see `ｄｂ１` as `db1`).
fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => {
                let a = char::from_u32(c as u32 - 0xFEE0).unwrap_or(c);
                if a.is_ascii_alphanumeric() || a == '#' || a == '=' || a == '.' || a == '-' || a == ':' {
                    a
                } else {
                    ' '
                }
            }
            '\u{3000}' | '。' | '、' | '“' | '”' | '‘' | '’' | '《' | '》' | '【' | '】' => ' ',
            c => c,
        })
        .collect()
}

/// Splits Latin text into words, keeping `db1.internal`, `v2.0.1`, `#23`, `key=value` and
/// quoted text whole; trailing punctuation (`alive?`) goes.
fn split_latin(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match quote {
            Some(q) if c == q => {
                quote = None;
            }
            Some(_) => cur.push(c),
            None if (c == '"' || c == '\'') && (cur.is_empty() || cur.ends_with('=')) => quote = Some(c),
            None if c.is_whitespace() || c == ',' || c == '!' || c == '?' || c == '(' || c == ')' => {
                push_word(&mut out, &mut cur);
            }
            None => cur.push(c),
        }
    }
    push_word(&mut out, &mut cur);
    out
}

fn push_word(out: &mut Vec<String>, cur: &mut String) {
    let w = cur.trim_end_matches(['.', ':', ';']).trim_start_matches(['@']);
    let w = w.strip_suffix("'s").unwrap_or(w);
    if !w.is_empty() {
        out.push(w.to_string());
    }
    cur.clear();
}

/// Words of a description, lower case.
fn words_of(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

fn is_version(w: &str) -> bool {
    let w = w.strip_prefix('v').unwrap_or(w);
    let core = w.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_host(w: &str) -> bool {
    if w.len() > 253 || w.starts_with(['.', '-']) || w.ends_with(['.', '-']) {
        return false;
    }
    let labels: Vec<&str> = w.split('.').collect();
    let ok = labels
        .iter()
        .all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !ok {
        return false;
    }
    let has_alpha = w.bytes().any(|b| b.is_ascii_alphabetic());
    let ip = labels.len() == 4 && labels.iter().all(|l| l.parse::<u8>().is_ok());
    ip || (labels.len() >= 2 && has_alpha)
        || (has_alpha && w.bytes().any(|b| b.is_ascii_digit()) && w.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()))
}

/// `五` → 5, `十二` → 12, `二十三` → 23, `两` → 2, `一百` → 100, `五百二十` → 520: the reading
/// of [`time::cn_num`] (below a hundred), with hundreds.
fn chinese_number(s: &str) -> Option<i64> {
    let Some((h, rest)) = s.split_once('百') else {
        return time::cn_num(s).filter(|_| !s.bytes().all(|b| b.is_ascii_digit())).map(i64::from);
    };
    let hundreds = if h.is_empty() {
        1
    } else {
        i64::from(time::cn_num(h).filter(|n| (1..10).contains(n))?)
    };
    let rest = rest.trim_start_matches('零');
    let tail = match rest.chars().count() {
        0 => 0,
        // `一百五` is 150: a lone digit after the hundreds counts tens.
        1 if !s.contains('零') && rest != "十" => i64::from(time::cn_num(rest)?) * 10,
        _ => i64::from(time::cn_num(rest)?),
    };
    Some(hundreds * 100 + tail)
}

/// `one` … `twenty`, `thirty` … `hundred`.
fn english_number(s: &str) -> Option<i64> {
    const SMALL: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    if let Some(i) = SMALL.iter().position(|w| *w == s) {
        return Some(i as i64);
    }
    match s {
        "thirty" => Some(30),
        "forty" => Some(40),
        "fifty" => Some(50),
        "hundred" | "a hundred" => Some(100),
        _ => None,
    }
}

/// Chinese numerals before a counter (`三个副本`, `一百行`, `负 3 个`) as digits, so the
/// segmenter and the number rules see `3个副本`, `100行`.
fn chinese_numerals(text: &str) -> String {
    const DIGITS: &str = "零一二两三四五六七八九十百千";
    const COUNTERS: &str = "个行条台份副实号次";
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if DIGITS.contains(chars[i]) {
            let start = i;
            while i < chars.len() && DIGITS.contains(chars[i]) {
                i += 1;
            }
            let run: String = chars[start..i].iter().collect();
            match (chars.get(i), chinese_number(&run)) {
                (Some(c), Some(n)) if COUNTERS.contains(*c) => out.push_str(&format!(" {n}")),
                _ => out.push_str(&run),
            }
            continue;
        }
        if chars[i] == '负'
            && chars
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_digit() || c.is_whitespace() || DIGITS.contains(*c))
        {
            out.push_str(" -");
            i += 1;
            while chars.get(i).is_some_and(|c| c.is_whitespace()) {
                i += 1;
            }
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// A sign of shell syntax, if the text has one: such text is never turned into a run.
fn shell_sign(text: &str) -> Option<&'static str> {
    const SIGNS: &[&str] = &[
        "$(", "`", "&&", "||", ";", "|", ">", "<", "${", "rm -", "sudo ", "/bin/", "bash -c", "sh -c", "curl ", "wget ", "\\x",
    ];
    let t = text.to_lowercase();
    SIGNS.iter().copied().find(|s| t.contains(s))
}

#[cfg(test)]
mod tests;
