//! The first understanding layer: addressing, tokens, the explicit command grammar and alias
//! templates. Natural language plugs in after this through [`opsbot_core::Understand`].

use opsbot_core::config::{AliasPart, alias_parts};
use opsbot_core::job::{Catalog, JobSpec, closest};
use opsbot_core::{Command, Envelope};
use std::collections::HashMap;

/// Built-in verbs, for help and suggestions.
pub const VERBS: &[&str] = &[
    "help",
    "list",
    "run",
    "status",
    "cancel",
    "logs",
    "history",
    "whoami",
    "approve",
    "deny",
    "approvals",
    "lock",
    "unlock",
    "locks",
    "link",
    "unlink",
    "reject",
    "schedules",
    "unschedule",
    "ping",
];

pub use opsbot_core::understand::{NO, YES};

/// Words that always abandon an open question, even where `no` would be a valid answer.
pub const ABANDON: &[&str] = &["cancel", "abort", "取消"];

/// Longest message the engine reads, in bytes; longer ones are refused with a clear answer.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// If the message is addressed to the bot, the text with the mention or prefix removed.
/// Direct messages are always addressed.
pub fn address<'a>(env: &'a Envelope, bot_name: &str, prefixes: &[String]) -> Option<&'a str> {
    let text = env.text.trim();
    if let Some(rest) = strip_mention(text, bot_name) {
        return Some(rest);
    }
    for p in prefixes {
        if let Some(rest) = text.strip_prefix(p.as_str())
            && !rest.is_empty()
            && !rest.starts_with(char::is_whitespace)
        {
            return Some(rest.trim());
        }
    }
    // A button press or a submitted form is meant for us wherever it happens.
    (env.direct || env.mentioned || env.button.is_some()).then_some(text)
}

fn strip_mention<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let t = text.strip_prefix('@').unwrap_or(text);
    if t.len() < name.len() || !t.is_char_boundary(name.len()) || !t[..name.len()].eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = &t[name.len()..];
    let had_at = t.len() != text.len();
    let rest2 = rest.strip_prefix([':', ',']).unwrap_or(rest);
    if rest2.len() != rest.len() || (had_at && (rest.is_empty() || rest.starts_with(char::is_whitespace))) {
        Some(rest2.trim())
    } else {
        None
    }
}

/// One word of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The text with quotes removed.
    pub text: String,
    /// Whether any part was quoted (a quoted `--all` is a value, not an option).
    pub quoted: bool,
    /// `key` when the token started with an unquoted `key=`.
    pub key: Option<String>,
}

/// Splits a message into words: whitespace separates; "…" and '…' quote (also the curly
/// quotes chat clients like to insert), backslash escapes inside double quotes. A quote opens
/// only at the start of a word, right after `key=`, or right after another quoted part, so an
/// apostrophe inside a word (`don't`) is just a character.
pub fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut tok = String::new();
        let mut quoted = false;
        let mut key: Option<String> = None;
        let mut may_open = true;
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            let closer: Option<&[char]> = match c {
                '"' | '\u{201C}' | '\u{201E}' | '\u{FF02}' => Some(&['"', '\u{201D}', '\u{201C}', '\u{FF02}']),
                '\'' | '\u{2018}' => Some(&['\'', '\u{2019}']),
                _ => None,
            };
            match closer {
                Some(closers) if may_open => {
                    quoted = true;
                    let double = closers[0] == '"';
                    let mut closed = false;
                    while let Some(q) = chars.next() {
                        if closers.contains(&q) {
                            closed = true;
                            break;
                        }
                        if q == '\\' && double {
                            match chars.next() {
                                Some(e) => tok.push(e),
                                None => break,
                            }
                        } else {
                            tok.push(q);
                        }
                    }
                    if !closed {
                        return Err(format!("a {} quote is not closed", if double { "double" } else { "single" }));
                    }
                    may_open = true;
                    continue;
                }
                _ => {}
            }
            match c {
                '=' if key.is_none() && !quoted && is_ident(&tok) => {
                    key = Some(tok.to_lowercase());
                    tok.push('=');
                    may_open = true;
                }
                c => {
                    tok.push(c);
                    may_open = false;
                }
            }
        }
        let text = match &key {
            Some(k) => tok[k.len() + 1..].to_string(),
            None => tok,
        };
        out.push(Token { text, quoted, key });
    }
    Ok(out)
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Quotes one argument so that [`tokenize`] reads it back as one literal value (never as a
/// `key=value` pair).
pub fn quote_arg(arg: &str) -> String {
    let special = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '\\' | '=' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{FF02}' | '\u{2018}' | '\u{2019}'
            )
    };
    if !arg.is_empty() && !arg.chars().any(special) {
        return arg.to_string();
    }
    let mut s = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '\\' | '\u{201D}' | '\u{201C}' | '\u{FF02}') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Turns one command-line argument into message text: `key=value` and `--key=value` keep the
/// key and quote the value; anything else is quoted as one positional value.
pub fn cli_arg(arg: &str) -> String {
    match arg.split_once('=') {
        Some((k, v)) if is_ident(k) => format!("{k}={}", quote_arg(v)),
        // `--key=value` means `key=value` for a job.
        Some((k, v)) if k.strip_prefix("--").is_some_and(is_ident) => format!("{}={}", &k[2..], quote_arg(v)),
        _ => quote_arg(arg),
    }
}

/// Why a message could not be read as a command; shown to the person as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

/// Reads an id like `12` or `#12`.
pub fn parse_id(s: &str) -> Option<i64> {
    let s = s.strip_prefix('#').unwrap_or(s);
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|&n| n > 0)
}

fn parse_with(text: &str, catalog: &Catalog, grammar: &Grammar) -> Result<Option<Command>, ParseError> {
    let toks = tokenize(text).map_err(|e| ParseError(format!("I could not read that: {e}.")))?;
    let Some(first) = toks.first() else {
        return Ok(Some(Command::Help(None)));
    };
    let verb = first.text.to_lowercase();
    let args = &toks[1..];
    let bare = |t: &Token| !t.quoted && t.key.is_none();
    let job_named = |n: &str| catalog.get(n).is_some();
    if first.quoted || first.key.is_some() {
        return Ok(None);
    }
    match verb.as_str() {
        "help" | "?" | "帮助" => {
            if args.len() > 1 {
                return Err(ParseError("`help` takes at most one word: `help` or `help JOB`.".into()));
            }
            return Ok(Some(Command::Help(args.first().map(|t| t.text.clone()))));
        }
        "list" | "jobs" if args.is_empty() => return Ok(Some(Command::List)),
        "whoami" if args.is_empty() => return Ok(Some(Command::Whoami)),
        // A job or an alias of the catalog named `ping` keeps the word.
        "ping" if args.is_empty() && !job_named("ping") && grammar.match_alias(&toks, catalog).is_none() => {
            return Ok(Some(Command::Ping));
        }
        "run" => {
            let Some(job) = args.first() else {
                return Err(ParseError(
                    "`run` needs a job: `run JOB key=value …`. `list` shows the jobs.".into(),
                ));
            };
            return job_args(&job.text, &args[1..]).map(Some);
        }
        "status" | "cancel" | "logs" => {
            let id = args.first().filter(|t| bare(t)).and_then(|t| parse_id(&t.text));
            match id {
                Some(id) => {
                    let rest = &args[1..];
                    return match verb.as_str() {
                        "logs" => {
                            let mut all = false;
                            for t in rest {
                                match (bare(t), t.text.as_str()) {
                                    (true, "--all" | "-a" | "all") => all = true,
                                    _ => {
                                        return Err(ParseError(format!(
                                            "`logs` does not understand `{}`: use `logs ID` or `logs ID --all`.",
                                            t.text
                                        )));
                                    }
                                }
                            }
                            Ok(Some(Command::Logs { id, all }))
                        }
                        v if rest.is_empty() => Ok(Some(if v == "status" { Command::Status(id) } else { Command::Cancel(id) })),
                        v => Err(ParseError(format!("`{v}` takes one execution id, e.g. `{v} {id}`."))),
                    };
                }
                None if job_named(&verb) => {}
                None if args.is_empty() && verb == "cancel" => return Ok(Some(Command::No)),
                None if let Some(cmd) = grammar.match_alias(&toks, catalog) => return Ok(Some(cmd)),
                None => {
                    let got = args.first().map(|t| format!(" (got `{}`)", t.text)).unwrap_or_default();
                    return Err(ParseError(format!(
                        "`{verb}` needs an execution id, e.g. `{verb} 12`{got}. `history` lists recent runs."
                    )));
                }
            }
        }
        "history" => {
            let (mut job, mut mine, mut limit) = (None, false, None);
            let mut i = 0;
            while i < args.len() {
                let t = &args[i];
                match (bare(t), t.text.as_str()) {
                    (true, "--mine" | "mine") => mine = true,
                    (true, "--limit" | "-n") => {
                        i += 1;
                        let n = args.get(i).and_then(|t| t.text.parse::<u32>().ok()).filter(|&n| n > 0);
                        limit = Some(n.ok_or_else(|| ParseError("`--limit` needs a number, e.g. `history --limit 20`.".into()))?);
                    }
                    (true, s) if s.starts_with("--limit=") => {
                        let n = s["--limit=".len()..].parse::<u32>().ok().filter(|&n| n > 0);
                        limit = Some(n.ok_or_else(|| ParseError("`--limit` needs a number, e.g. `history --limit 20`.".into()))?);
                    }
                    (true, s) if s.starts_with('-') => {
                        return Err(ParseError(format!(
                            "`history` does not know `{s}`: use `history [JOB] [--mine] [--limit N]`."
                        )));
                    }
                    _ if job.is_none() => job = Some(t.text.clone()),
                    _ => {
                        return Err(ParseError(format!("`history` takes one job name; `{}` is extra.", t.text)));
                    }
                }
                i += 1;
            }
            return Ok(Some(Command::History { job, mine, limit }));
        }
        "approve" | "deny" | "reject" if args.first().is_some_and(|t| bare(t) && parse_id(&t.text).is_some()) => {
            let id = parse_id(&args[0].text).expect("checked");
            let rest: Vec<String> = args[1..].iter().map(|t| t.text.clone()).collect();
            return match verb.as_str() {
                "approve" if rest.is_empty() => Ok(Some(Command::Approve(id))),
                "approve" => Err(ParseError(format!("`approve` takes one request id, e.g. `approve {id}`."))),
                _ => Ok(Some(Command::Deny {
                    id,
                    reason: (!rest.is_empty()).then(|| rest.join(" ")),
                })),
            };
        }
        "approve" | "deny" | "reject" if !job_named(&verb) => {
            return Err(ParseError(format!(
                "`{verb}` needs an approval request id, e.g. `{verb} 7`. `approvals` lists the open requests."
            )));
        }
        "approvals" if args.is_empty() => return Ok(Some(Command::Approvals)),
        "schedules" if args.is_empty() => return Ok(Some(Command::Schedules)),
        "unschedule" => {
            return match (args, args.first().filter(|t| bare(t)).and_then(|t| parse_id(&t.text))) {
                ([_], Some(id)) => Ok(Some(Command::Unschedule(id))),
                _ => Err(ParseError(
                    "`unschedule` takes one scheduled run's id, e.g. `unschedule 3`. `schedules` lists them.".into(),
                )),
            };
        }
        "locks" if args.is_empty() => return Ok(Some(Command::Locks)),
        "lock" | "unlock" => return lock_args(&verb, args).map(Some),
        "link" if args.len() <= 1 => return Ok(Some(Command::Link(args.first().map(|t| t.text.clone())))),
        "unlink" if args.len() == 1 => return Ok(Some(Command::Unlink(args[0].text.clone()))),
        "link" | "unlink" => {
            return Err(ParseError(
                "Use `link` (to get a code for this account), `link CODE` (from an account I know), or `unlink PLATFORM:ID`.".into(),
            ));
        }
        w if args.is_empty() && YES.contains(&w) => return Ok(Some(Command::Yes)),
        w if args.is_empty() && NO.contains(&w) => return Ok(Some(Command::No)),
        // A confirmation button's `yes NONCE` with no question open.
        "yes" if args.len() == 1 && is_nonce(&args[0].text) => return Ok(Some(Command::Yes)),
        "no" if args.len() == 1 && is_nonce(&args[0].text) => return Ok(Some(Command::No)),
        _ => {}
    }
    if let Some(cmd) = grammar.match_alias(&toks, catalog) {
        return Ok(Some(cmd));
    }
    if let Some(msg) = grammar.alias_leftover(&toks, catalog) {
        return Err(ParseError(msg));
    }
    if job_named(&verb) {
        return job_args(&verb, args).map(Some);
    }
    Ok(None)
}

/// `lock [JOB] [key=value …] --reason "…"` / `unlock [JOB] [key=value …]`; `*` or no job = every job.
fn lock_args(verb: &str, args: &[Token]) -> Result<Command, ParseError> {
    let Command::Run { params, positional, .. } = job_args(verb, args)? else {
        unreachable!("job_args returns a run")
    };
    if positional.len() > 1 {
        return Err(ParseError(format!(
            "`{verb}` takes at most one job name, then key=value pairs: e.g. `lock env=prod --reason \"incident 42\"` or `lock deploy`."
        )));
    }
    let job = positional.into_iter().next().filter(|j| j != "*");
    let mut reason = None;
    let mut pairs = Vec::new();
    for (k, v) in params {
        if k == "reason" {
            reason = Some(v);
        } else {
            pairs.push((k, v));
        }
    }
    if job.is_none() && pairs.is_empty() {
        return Err(ParseError(format!(
            "`{verb}` needs what to lock: a job, key=value pairs or both, e.g. `{verb} env=prod` or `{verb} deploy env=prod`."
        )));
    }
    Ok(if verb == "lock" {
        Command::Lock {
            job,
            params: pairs,
            reason,
        }
    } else {
        if reason.is_some() {
            return Err(ParseError("`unlock` takes no reason.".into()));
        }
        Command::Unlock { job, params: pairs }
    })
}

/// `JOB` arguments: `key=value`, `--key=value`, `--key value`, positional values, `--` ends options.
fn job_args(job: &str, args: &[Token]) -> Result<Command, ParseError> {
    let mut params = Vec::new();
    let mut positional = Vec::new();
    let mut options_done = false;
    let mut i = 0;
    while i < args.len() {
        let t = &args[i];
        i += 1;
        if options_done {
            // After `--`, every word is a value, even `a=b`.
            let text = match &t.key {
                Some(k) => format!("{k}={}", t.text),
                None => t.text.clone(),
            };
            positional.push(text);
            continue;
        }
        if let Some(k) = &t.key {
            params.push((k.clone(), t.text.clone()));
        } else if !t.quoted && t.text == "--" {
            options_done = true;
        } else if !t.quoted && t.text.starts_with("--") && t.text.len() > 2 {
            let opt = &t.text[2..];
            match opt.split_once('=') {
                Some((k, v)) => params.push((k.to_lowercase(), v.to_string())),
                None => match args.get(i) {
                    Some(next) if next.key.is_none() && (next.quoted || !next.text.starts_with("--")) => {
                        params.push((opt.to_lowercase(), next.text.clone()));
                        i += 1;
                    }
                    _ => params.push((opt.to_lowercase(), "true".into())),
                },
            }
        } else {
            positional.push(t.text.clone());
        }
    }
    Ok(Command::Run {
        job: job.to_string(),
        params,
        positional,
    })
}

/// The catalog's alias templates and suggestion words, prepared once per catalog so that a
/// message only looks at the templates that start with its first word.
pub struct Grammar {
    by_first_word: HashMap<String, Vec<CompiledAlias>>,
    slot_first: Vec<CompiledAlias>,
    /// Lower-case, de-duplicated words for "did you mean": verbs, job names, alias first words.
    suggestions: Vec<String>,
}

struct CompiledAlias {
    job: usize,
    parts: Vec<AliasPart>,
    words: usize,
}

impl Grammar {
    /// Compiles a catalog's aliases.
    pub fn new(catalog: &Catalog) -> Self {
        let mut by_first_word: HashMap<String, Vec<CompiledAlias>> = HashMap::new();
        let mut slot_first = Vec::new();
        let mut suggestions: Vec<String> = VERBS.iter().map(|v| v.to_string()).collect();
        for (i, job) in catalog.jobs().iter().enumerate() {
            suggestions.push(job.name.to_lowercase());
            for alias in &job.aliases {
                let parts = alias_parts(alias);
                let words = parts.iter().filter(|p| matches!(p, AliasPart::Word(_))).count();
                let first = match parts.first() {
                    Some(AliasPart::Word(w)) => Some(w.clone()),
                    _ => None,
                };
                let compiled = CompiledAlias { job: i, parts, words };
                match first {
                    Some(w) => {
                        suggestions.push(w.clone());
                        by_first_word.entry(w).or_default().push(compiled);
                    }
                    None => slot_first.push(compiled),
                }
            }
        }
        suggestions.sort();
        suggestions.dedup();
        Self {
            by_first_word,
            slot_first,
            suggestions,
        }
    }

    /// The explicit grammar and alias templates. `Ok(None)` means "not a command I know" — the
    /// caller then asks the next understanding layer and finally suggests.
    pub fn parse(&self, text: &str, catalog: &Catalog) -> Result<Option<Command>, ParseError> {
        parse_with(text, catalog, self)
    }

    /// Whether `word` is a verb, a job name, an alias's first word or an answer word.
    pub fn knows(&self, word: &str) -> bool {
        let w = word.to_lowercase();
        self.suggestions.binary_search(&w).is_ok() || YES.contains(&w.as_str()) || NO.contains(&w.as_str())
    }

    /// "Did you mean …?" for an unknown first word, from verbs, job names and alias words.
    pub fn suggest(&self, word: &str) -> Option<String> {
        closest(word, self.suggestions.iter().map(String::as_str)).map(str::to_string)
    }

    /// Tries the alias templates that can match; the match with the most literal words wins.
    /// When no template matches with well-typed slots, one whose words match but whose slot
    /// values do not fit is taken, so the person hears what is wrong with the value
    /// (`deploy web to qa`).
    fn match_alias(&self, toks: &[Token], catalog: &Catalog) -> Option<Command> {
        let lower: Vec<String> = toks.iter().map(|t| t.text.to_lowercase()).collect();
        let first = lower.first()?;
        let candidates: Vec<&CompiledAlias> = self
            .by_first_word
            .get(first)
            .into_iter()
            .flatten()
            .chain(&self.slot_first)
            .collect();
        for typed in [true, false] {
            let mut best: Option<(usize, Command)> = None;
            for c in &candidates {
                let job = &catalog.jobs()[c.job];
                if let Some(cmd) = match_one(&c.parts, toks, &lower, job, typed)
                    && best.as_ref().is_none_or(|(w, _)| c.words > *w)
                {
                    best = Some((c.words, cmd));
                }
            }
            if best.is_some() {
                return best.map(|(_, c)| c);
            }
        }
        None
    }

    /// When a template matches the start of the message but words that are not `key=value`
    /// follow it (`deploy web to staging please`), says so — rather than letting the words be
    /// read as positional values and producing nonsense errors.
    fn alias_leftover(&self, toks: &[Token], catalog: &Catalog) -> Option<String> {
        let lower: Vec<String> = toks.iter().map(|t| t.text.to_lowercase()).collect();
        let candidates = self.by_first_word.get(lower.first()?).into_iter().flatten().chain(&self.slot_first);
        for c in candidates {
            let n = c.parts.len();
            if toks.len() <= n || match_one(&c.parts, &toks[..n], &lower[..n], &catalog.jobs()[c.job], true).is_none() {
                continue;
            }
            let stray: Vec<&str> = toks[n..].iter().filter(|t| t.key.is_none()).map(|t| t.text.as_str()).collect();
            if !stray.is_empty() {
                let said: Vec<&str> = toks[..n].iter().map(|t| t.text.as_str()).collect();
                return Some(format!(
                    "I understood `{}` but not `{}` after it. More values go as key=value (e.g. `version=1.4.2`); `help {}` lists them.",
                    said.join(" "),
                    stray.join(" "),
                    catalog.jobs()[c.job].name
                ));
            }
        }
        None
    }
}

fn match_one(parts: &[AliasPart], toks: &[Token], lower: &[String], job: &JobSpec, typed: bool) -> Option<Command> {
    if toks.len() < parts.len() {
        return None;
    }
    let mut params = Vec::new();
    for ((part, tok), low) in parts.iter().zip(toks).zip(lower) {
        if tok.key.is_some() {
            return None;
        }
        match part {
            AliasPart::Word(w) => {
                if tok.quoted || low != w {
                    return None;
                }
            }
            AliasPart::Slot(s) => {
                let spec = job.param(s)?;
                if typed && !spec.accepts(&tok.text) {
                    return None;
                }
                params.push((s.clone(), tok.text.clone()));
            }
        }
    }
    // Anything after the template must be `key=value` extras.
    for extra in &toks[parts.len()..] {
        params.push((extra.key.clone()?, extra.text.clone()));
    }
    Some(Command::Run {
        job: job.name.clone(),
        params,
        positional: Vec::new(),
    })
}

/// A confirmation's nonce: 8 lower-case hex digits, carried by its Yes/No buttons.
pub fn new_nonce() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random number generator is unavailable");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_nonce(s: &str) -> bool {
    s.len() == 8 && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// `yes NONCE` / `no NONCE` (a confirmation button's command): the word and the nonce.
pub fn nonce_answer(lower: &str) -> Option<(String, String)> {
    let (word, nonce) = lower.split_once(' ')?;
    ((word == "yes" || word == "no") && is_nonce(nonce.trim())).then(|| (word.to_string(), nonce.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::{Place, UserId};

    #[test]
    fn tokens_quotes_and_keys() {
        let t = tokenize(r#"run deploy app=web msg="hello world" 'a b' “smart quotes” k="x\"y""#).unwrap();
        let texts: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["run", "deploy", "web", "hello world", "a b", "smart quotes", "x\"y"]);
        assert_eq!(t[2].key.as_deref(), Some("app"));
        assert_eq!(t[3].key.as_deref(), Some("msg"));
        assert!(t[4].key.is_none() && t[4].quoted);
        assert!(tokenize("say \"unclosed").unwrap_err().contains("not closed"));
        let t = tokenize("don't restart v='it''s' x=“a b”").unwrap();
        let texts: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["don't", "restart", "its", "a b"]);
        assert_eq!(tokenize("  ").unwrap(), vec![]);
    }

    #[test]
    fn cli_args_keep_keys() {
        let t = tokenize(&cli_arg("v=; rm -rf /")).unwrap();
        assert_eq!((t[0].key.as_deref(), t[0].text.as_str()), (Some("v"), "; rm -rf /"));
        let t = tokenize(&cli_arg("v=a=b")).unwrap();
        assert_eq!((t[0].key.as_deref(), t[0].text.as_str()), (Some("v"), "a=b"));
        let t = tokenize(&cli_arg("--x=a b")).unwrap();
        assert_eq!((t[0].key.as_deref(), t[0].text.as_str()), (Some("x"), "a b"));
        let t = tokenize(&cli_arg("--=x")).unwrap();
        assert_eq!(t[0].text, "--=x");
    }

    #[test]
    fn quote_round_trip() {
        for s in [
            "plain",
            "a b",
            "x\"y\\z",
            "",
            "; rm -rf /",
            "$(reboot)",
            "部署 ✓",
            "a=b",
            "“q”",
            "--",
        ] {
            let t = tokenize(&quote_arg(s)).unwrap();
            assert_eq!(t.len(), 1, "{s}");
            assert_eq!(t[0].text, s);
            assert_eq!(t[0].key, None);
        }
    }

    #[test]
    fn addressing() {
        let mut env = Envelope::direct(UserId::new("t", "u"), Place::new("t", "c"), "");
        env.direct = false;
        let cases = [
            ("opsbot: list", Some("list")),
            ("@opsbot list", Some("list")),
            ("OpsBot, list", Some("list")),
            ("!deploy web", Some("deploy web")),
            ("! deploy", None),
            ("opsbotx list", None),
            ("hello all", None),
        ];
        for (text, want) in cases {
            env.text = text.into();
            assert_eq!(address(&env, "opsbot", &["!".to_string()]), want, "{text}");
        }
        env.direct = true;
        env.text = "hello".into();
        assert_eq!(address(&env, "opsbot", &[]), Some("hello"));
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id("#12"), Some(12));
        assert_eq!(parse_id("12"), Some(12));
        assert_eq!(parse_id("0"), None);
        assert_eq!(parse_id("1x"), None);
        assert_eq!(parse_id("99999999999999999999999"), None);
    }
}
