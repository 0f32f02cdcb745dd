//! The seam between the engine and understanding layers (exact grammar, aliases, and later
//! natural language in `opsbot-nlu`).

use crate::job::Catalog;
use chrono::{DateTime, Utc};

/// Words that answer "yes" to a confirmation.
pub const YES: &[&str] = &["yes", "y", "yep", "confirm", "ok", "是", "是的", "确认", "好"];
/// Words that answer "no" to a confirmation (and abandon a question, unless they are a valid answer).
pub const NO: &[&str] = &["no", "n", "nope", "cancel", "abort", "stop", "否", "不", "取消"];

/// A request the engine can act on.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// `help [job]`
    Help(Option<String>),
    /// `list`
    List,
    /// Run a job. `params` holds named values; `positional` values fill params in declared order.
    Run {
        job: String,
        params: Vec<(String, String)>,
        positional: Vec<String>,
    },
    /// `status ID`
    Status(i64),
    /// `cancel ID`
    Cancel(i64),
    /// `logs ID [--all]`
    Logs { id: i64, all: bool },
    /// `history [job] [--mine] [--limit N]`
    History {
        job: Option<String>,
        mine: bool,
        limit: Option<u32>,
    },
    /// `whoami`
    Whoami,
    /// `ping`: is the bot there and hearing me? Answered `PONG` (no job named `ping` exists).
    Ping,
    /// `yes` outside a dialog
    Yes,
    /// `no` / `cancel` without an id, outside a dialog
    No,
    /// `approve ID`: a vote for an approval request
    Approve(i64),
    /// `deny ID [reason…]`: a vote against one (the requester's own `deny` withdraws it)
    Deny {
        /// The request.
        id: i64,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `approvals`: open approval requests
    Approvals,
    /// `lock [JOB] [key=value …] --reason "…"`
    Lock {
        /// The job, or `None` for every job.
        job: Option<String>,
        /// Parameter values the lock covers.
        params: Vec<(String, String)>,
        /// Why (required).
        reason: Option<String>,
    },
    /// `unlock [JOB] [key=value …]`
    Unlock {
        /// The job, or `None` for every job.
        job: Option<String>,
        /// Parameter values of the lock.
        params: Vec<(String, String)>,
    },
    /// `locks`: the locks in force
    Locks,
    /// `link` (get a code for this account) or `link CODE` (confirm it from a known account)
    Link(Option<String>),
    /// `unlink PLATFORM:ID`
    Unlink(String),
    /// `schedules`: runs waiting for their time
    Schedules,
    /// `unschedule ID`: drop a scheduled run
    Unschedule(i64),
}

/// A language opsbot understands and answers in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The language a text is written in, when it shows. A Chinese character weighs about a
    /// word, five Latin letters: `重启一下 db` and `restart 一下 web2 上的 worker` are Chinese,
    /// `deploy app=web env=预发` (a Chinese synonym in an English command) is English. Digits
    /// and punctuation alone say nothing.
    pub fn detect(text: &str) -> Option<Lang> {
        let cjk = text.chars().filter(|c| is_cjk(*c)).count();
        let latin = text.chars().filter(|c| c.is_ascii_alphabetic()).count();
        match (cjk, latin) {
            (0, 0) => None,
            (c, l) if c > 0 && c * 5 >= l => Some(Lang::Zh),
            _ => Some(Lang::En),
        }
    }

    /// The short code: `en` or `zh`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh",
        }
    }

    /// Reads a language setting: `en`, `english`, `zh`, `zh-CN`, `zh-Hans`, `chinese`, `中文`.
    pub fn parse(s: &str) -> Option<Lang> {
        match s.trim().to_lowercase().replace('_', "-").as_str() {
            "en" | "en-us" | "en-gb" | "english" => Some(Lang::En),
            "zh" | "zh-cn" | "zh-hans" | "zh-sg" | "chinese" | "中文" | "简体中文" => Some(Lang::Zh),
            _ => None,
        }
    }
}

/// Whether a character is a CJK ideograph (the Chinese script).
pub fn is_cjk(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '\u{F900}'..='\u{FAFF}' | '\u{20000}'..='\u{2A6DF}')
}

/// What an understanding layer is told besides the text.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The jobs.
    pub catalog: &'a Catalog,
    /// Now, for times such as `in 2 hours` or `tonight`.
    pub now: DateTime<Utc>,
    /// The team's time zone (`[bot] timezone`), in which `at 23:30` is read.
    pub tz: chrono_tz::Tz,
}

/// A time found in a request (`at 23:30`, `in 2 hours`, `后天下午3点`): when to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct When {
    /// The instant meant.
    pub at: DateTime<Utc>,
    /// Where the expression is in the text (byte offsets).
    pub span: std::ops::Range<usize>,
}

/// One reading of a text.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The command it would be.
    pub command: Command,
    /// 0.0..=1.0: how likely this reading is right (the explicit grammar is 1.0).
    pub confidence: f32,
    /// Why, for `opsbot understand` and the audit: the rule or the words that matched.
    pub why: String,
}

/// What to do with a reading, by its confidence.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Confident: act on the best candidate (confirmations and approvals still apply).
    Proceed,
    /// Fairly sure: ask "Did you mean …?" about the best candidate.
    Confirm,
    /// Unsure, or several readings are close: offer the candidates to choose from.
    Choose,
    /// Recognisably not something to act on (shell text, a job that does not exist); the reason
    /// is for the person.
    Refuse(String),
    /// No idea.
    Unknown,
}

/// At or above this confidence a reading is acted on.
pub const PROCEED_AT: f32 = 0.8;
/// At or above this (and below [`PROCEED_AT`]) the person is asked to confirm the reading.
pub const CONFIRM_AT: f32 = 0.5;
/// Readings below this are not offered at all.
pub const OFFER_AT: f32 = 0.25;

/// What an understanding layer concluded from a text.
#[derive(Clone, Debug, PartialEq)]
pub struct Understanding {
    /// The language the text is in.
    pub lang: Lang,
    /// What to do.
    pub verdict: Verdict,
    /// Readings, best first (at most a few).
    pub candidates: Vec<Candidate>,
    /// When to run it, if the text says.
    pub when: Option<When>,
}

impl Understanding {
    /// Nothing understood.
    pub fn unknown(lang: Lang) -> Self {
        Self {
            lang,
            verdict: Verdict::Unknown,
            candidates: Vec::new(),
            when: None,
        }
    }
}

/// An understanding layer that the engine consults after its exact grammar and aliases.
/// The natural-language crate implements this.
pub trait Understand: Send + Sync {
    /// Reads free text.
    fn understand(&self, text: &str, ctx: &Context<'_>) -> Understanding;
}
