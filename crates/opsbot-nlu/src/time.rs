//! Times people write when they want something done later: `at 23:30`, `in 2 hours`,
//! `next monday 8am`, `后天下午3点`, `今晚`.
//!
//! [`find`] returns the first expression in a text that names a future instant, read in
//! the team's zone. The readings chosen where language is ambiguous:
//!
//! - A clock time alone (`at 23:30`, `下午3点`) is the next time the clock shows it: today
//!   if still ahead, else tomorrow. `HH:MM` without `am`/`pm` is a 24-hour clock.
//! - A bare Chinese hour (`3点`, `3点半`) with no day and no part of day is whichever of
//!   03:00 and 15:00 comes first. With a day (`明天3点`) it is read as a 24-hour clock.
//!   `一点` alone is not read as a time (it usually means "a little").
//! - A day without a time is 09:00 (`tomorrow`, `明天`, `monday`, `下周一`); `today`/`今天`
//!   alone is not a time. Parts of the day without a time: morning 09:00, noon 12:00,
//!   afternoon 15:00, evening 19:00, `tonight`/`今晚`/`晚上` 20:00; a part of today that
//!   is already over is not a time (`tonight` at 21:00 gives `None`).
//! - Hours 1–11 with an afternoon/evening part of day (`tonight at 11:30`, `晚上11点`)
//!   are afternoon/evening hours; evening hours before 06:00 (`晚上1点`) are the next
//!   morning.
//! - `monday` (no time) is the first Monday strictly after today; `monday 8am` /
//!   `周一上午9点` is the nearest future instant on a Monday (today if still ahead).
//!   `next monday` is the first Monday strictly after today. `下周一` is the Monday of
//!   the next calendar week (weeks start on Monday), `这周五`/`本周五` this week's.
//! - A local time skipped by a DST change moves forward by the gap (02:30 → 03:30); a
//!   repeated one takes the earlier instant.
//! - Results must be strictly after `now` and at most 366 days ahead; out-of-range clock
//!   values (`25:00`, `at 13pm`, `23点70分`) and past dates are not times.

use std::ops::Range;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc, Weekday};
use opsbot_core::When;
use regex::{Captures, Regex};

/// The first expression in `text` naming a future instant, read in `tz` relative to `now`.
pub fn find(text: &str, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<When> {
    if !worth_looking(text) {
        return None;
    }
    let mut found: Vec<(Range<usize>, DateTime<Utc>)> = Vec::new();
    let has_cjk = !text.is_ascii();
    for caps in EN_ABS.captures_iter(text) {
        let Some(m) = caps.get(0) else { continue };
        if !edges_ok(text, m.start(), m.end()) {
            continue;
        }
        if let Some(at) = en_abs(&caps).and_then(|a| resolve(&a, now, tz)) {
            found.push((m.range(), at));
        }
    }
    for m in EN_REL.find_iter(text) {
        if !edges_ok(text, m.start(), m.end()) {
            continue;
        }
        if let Some(at) = en_rel(m.as_str()).and_then(|s| after(now, s)) {
            found.push((m.range(), at));
        }
    }
    if has_cjk {
        for m in CN_ABS_FIND.find_iter(text) {
            let span = trimmed(text, m.range());
            if span.is_empty() || !edges_ok(text, span.start, span.end) {
                continue;
            }
            let Some(caps) = CN_ABS.captures(&text[span.clone()]) else {
                continue;
            };
            if let Some(at) = cn_abs(&caps).and_then(|a| resolve(&a, now, tz)) {
                found.push((span, at));
            }
        }
        for caps in CN_REL.captures_iter(text) {
            let Some(m) = caps.get(0) else { continue };
            if !edges_ok(text, m.start(), m.end()) {
                continue;
            }
            if let Some(at) = cn_rel(&caps).and_then(|s| after(now, s)) {
                found.push((m.range(), at));
            }
        }
    }
    found
        .into_iter()
        .min_by_key(|(span, _)| (span.start, std::cmp::Reverse(span.end)))
        .map(|(span, at)| When { at, span })
}

/// Whether a time found at `span` may be taken out of `text`: not inside a quoted value and not
/// part of a `key=value` word (`message="back at 5pm"`, `note=tomorrow` are values, not times).
/// Quotes open where the command grammar opens them: at the start of a word or after `=`.
pub fn outside_values(text: &str, span: &Range<usize>) -> bool {
    let mut open: Option<(usize, char)> = None;
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        match open {
            Some((start, closer)) if c == closer || (closer == '"' && c == '\u{201D}') || (closer == '\'' && c == '\u{2019}') => {
                if span.start < i && span.end > start {
                    return false;
                }
                open = None;
            }
            Some(_) => {}
            None if matches!(c, '"' | '\'' | '\u{201C}' | '\u{2018}') && prev.is_none_or(|p| p.is_whitespace() || p == '=') => {
                let closer = match c {
                    '\u{201C}' => '"',
                    '\u{2018}' => '\'',
                    c => c,
                };
                open = Some((i, closer));
            }
            None => {}
        }
        prev = Some(c);
    }
    if let Some((start, _)) = open
        && span.end > start
    {
        return false;
    }
    // The word the time starts in: a `key=` before it makes the time that key's value.
    let word_start = text[..span.start].rfind(char::is_whitespace).map(|i| i + 1).unwrap_or(0);
    !text[word_start..span.start].contains('=') && !text[..span.start].trim_end().ends_with('=')
}

/// The same instant written for people in the team's zone, e.g. `2026-11-24 23:30 CET`.
pub fn show(at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// How far ahead a time may be.
const MAX_AHEAD_DAYS: i64 = 366;

/// Characters that can start or make up a Chinese time expression.
const CN_MARKS: &[char] = &[
    '今', '明', '后', '周', '星', '礼', '点', '时', '晚', '早', '午', '凌', '夜', '半', '分', '天', '：',
];

/// English words that can make up a time expression without a digit.
const EN_MARKS: &[&str] = &[
    "day",
    "tomorrow",
    "tonight",
    "noon",
    "midnight",
    "evening",
    "morning",
    "afternoon",
    "in a",
    "in half",
];

/// The cheap pre-check: a digit, a Chinese time character, or an English time word.
fn worth_looking(text: &str) -> bool {
    let mut ascii_letters = false;
    for c in text.chars() {
        if c.is_ascii_digit() || CN_MARKS.contains(&c) {
            return true;
        }
        ascii_letters |= c.is_ascii_alphabetic();
    }
    ascii_letters && EN_MARKS.iter().any(|w| contains_ignore_case(text.as_bytes(), w.as_bytes()))
}

/// Whether `hay` contains the lowercase ASCII `needle`, ignoring ASCII case.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Whether the match `start..end` stands on its own: not part of a version, an id, a
/// number or a longer word.
fn edges_ok(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let first = bytes.get(start).copied().unwrap_or(b' ');
    let last = if end > 0 {
        bytes.get(end - 1).copied().unwrap_or(b' ')
    } else {
        b' '
    };
    if first.is_ascii_alphanumeric() && start > 0 {
        let prev = bytes[start - 1];
        if prev.is_ascii_alphanumeric() || b".#:/_@$-".contains(&prev) {
            return false;
        }
    }
    if last.is_ascii_alphanumeric()
        && let Some(&next) = bytes.get(end)
    {
        if next.is_ascii_alphanumeric() || next == b':' || next == b'/' || next == b'_' {
            return false;
        }
        if next == b'.' && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            return false;
        }
    }
    true
}

/// `range` without leading and trailing whitespace.
fn trimmed(text: &str, range: Range<usize>) -> Range<usize> {
    let s = &text[range.clone()];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead + trail >= s.len() {
        return range.start..range.start;
    }
    range.start + lead..range.end - trail
}

/// `now` plus `seconds`, if that is ahead and not too far.
fn after(now: DateTime<Utc>, seconds: i64) -> Option<DateTime<Utc>> {
    if seconds <= 0 || seconds > MAX_AHEAD_DAYS * 86_400 {
        return None;
    }
    now.checked_add_signed(Duration::seconds(seconds))
}

// ---------------------------------------------------------------------------------------
// What an absolute expression says, in either language.

/// Which day.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Day {
    /// Today plus so many days.
    Offset(i64),
    /// A day of the week.
    Weekday(Weekday, WeekdayMode),
    /// A calendar date.
    Date(NaiveDate),
    /// A month and day without a year (`3月10日`, `March 10`): this year's, or next year's
    /// when this year's has passed.
    MonthAndDate(u32, u32),
}

/// How a weekday is read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum WeekdayMode {
    /// `monday`, `周一`: strictly after today without a time, else the nearest future instant.
    Nearest,
    /// `next monday`: the first such day strictly after today.
    StrictNext,
    /// `这周一` (0), `下周一` (1), `下下周一` (2): in that calendar week (weeks start Monday).
    Week(i64),
}

/// Part of the day.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Period {
    /// 凌晨: small hours.
    Small,
    /// Morning, 早上, 上午.
    Morning,
    /// 中午.
    Noon,
    /// Afternoon, 下午.
    Afternoon,
    /// Evening, 傍晚.
    Evening,
    /// Tonight, night, 晚上, 今晚.
    Night,
}

impl Period {
    /// The time meant when only the part of the day is given, in minutes.
    fn default_minutes(self) -> Option<u32> {
        match self {
            Period::Small => None,
            Period::Morning => Some(9 * 60),
            Period::Noon => Some(12 * 60),
            Period::Afternoon => Some(15 * 60),
            Period::Evening => Some(19 * 60),
            Period::Night => Some(20 * 60),
        }
    }
}

/// A clock reading as written.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Clock {
    hour: u32,
    minute: u32,
    /// `Some(true)` for pm, `Some(false)` for am.
    pm: Option<bool>,
    /// Written `N点` (may be 03:00 or 15:00 when nothing else says which).
    dian: bool,
    /// `noon`/`midnight`: minutes since the day began, final.
    fixed: Option<u32>,
}

impl Clock {
    fn hm(hour: u32, minute: u32) -> Self {
        Self {
            hour,
            minute,
            pm: None,
            dian: false,
            fixed: None,
        }
    }

    /// Minutes since the start of the day (possibly ≥ 1440 for the next day) meant by this
    /// clock in `period`; two readings when ambiguous (`3点` alone).
    fn minutes(self, period: Option<Period>, alone: bool) -> Option<Vec<u32>> {
        if let Some(fixed) = self.fixed {
            return Some(vec![fixed]);
        }
        if self.minute > 59 {
            return None;
        }
        let m = self.minute;
        let (h, definite) = match self.pm {
            Some(pm) => {
                if self.hour == 0 || self.hour > 12 {
                    return None;
                }
                (self.hour % 12 + if pm { 12 } else { 0 }, true)
            }
            None => {
                if self.hour > 23 {
                    return None;
                }
                (self.hour, self.hour == 0 || self.hour >= 13)
            }
        };
        let Some(period) = period else {
            if self.dian && alone && (1..=12).contains(&h) {
                let h = h % 12;
                return Some(vec![h * 60 + m, (h + 12) * 60 + m]);
            }
            return Some(vec![h * 60 + m]);
        };
        let h = if definite {
            match period {
                Period::Small | Period::Morning if self.pm.is_none() && h >= 13 => return None,
                Period::Evening | Period::Night if h < 6 => h + 24,
                _ => h,
            }
        } else {
            match period {
                Period::Small => h % 12,
                Period::Morning => h,
                Period::Noon if h <= 5 => h + 12,
                Period::Noon => h,
                Period::Afternoon if h == 12 => 12,
                Period::Afternoon => h + 12,
                Period::Evening | Period::Night if h == 12 => 24,
                Period::Evening | Period::Night if h < 6 => h + 24,
                Period::Evening | Period::Night => h + 12,
            }
        };
        Some(vec![h * 60 + m])
    }
}

/// An absolute expression: any of a day, a part of the day and a clock.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Abs {
    day: Option<Day>,
    period: Option<Period>,
    clock: Option<Clock>,
}

/// The instant `abs` means, strictly after `now` and not too far ahead.
fn resolve(abs: &Abs, now: DateTime<Utc>, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let today = now.with_timezone(&tz).date_naive();
    let minutes = match (abs.clock, abs.period) {
        (Some(clock), period) => clock.minutes(period, abs.day.is_none())?,
        (None, Some(period)) => vec![period.default_minutes()?],
        (None, None) => match abs.day? {
            Day::Offset(0) => return None,
            _ => vec![9 * 60],
        },
    };
    let days = |d: NaiveDate, n: i64| d.checked_add_signed(Duration::days(n));
    let dates: Vec<NaiveDate> = match abs.day {
        None if abs.clock.is_some() => [-1, 0, 1].iter().filter_map(|&n| days(today, n)).collect(),
        None => vec![today],
        Some(Day::Offset(n)) => vec![days(today, n)?],
        Some(Day::Date(d)) => vec![d],
        Some(Day::MonthAndDate(m, d)) => {
            let this = NaiveDate::from_ymd_opt(today.year(), m, d)?;
            if this >= today {
                vec![this]
            } else {
                vec![NaiveDate::from_ymd_opt(today.year() + 1, m, d)?]
            }
        }
        Some(Day::Weekday(wd, mode)) => {
            let ahead = (i64::from(wd.num_days_from_monday()) - i64::from(today.weekday().num_days_from_monday())).rem_euclid(7);
            match mode {
                WeekdayMode::Nearest if abs.clock.is_some() => {
                    vec![days(today, ahead)?, days(today, ahead + 7)?]
                }
                WeekdayMode::Nearest | WeekdayMode::StrictNext => {
                    vec![days(today, if ahead == 0 { 7 } else { ahead })?]
                }
                WeekdayMode::Week(k) => {
                    let monday = days(today, -i64::from(today.weekday().num_days_from_monday()))?;
                    vec![days(monday, 7 * k + i64::from(wd.num_days_from_monday()))?]
                }
            }
        }
    };
    let at = dates
        .iter()
        .flat_map(|d| minutes.iter().filter_map(move |&m| localize(*d, m, tz)))
        .filter(|at| *at > now)
        .min()?;
    (at - now <= Duration::days(MAX_AHEAD_DAYS)).then_some(at)
}

/// `minutes` after the start of `date` on the wall clock in `tz`. A time skipped by DST
/// moves forward by the gap; a repeated one takes the earlier instant.
fn localize(date: NaiveDate, minutes: u32, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    let date = date.checked_add_signed(Duration::days(i64::from(minutes / 1440)))?;
    let time = NaiveTime::from_hms_opt((minutes % 1440) / 60, minutes % 60, 0)?;
    let naive = NaiveDateTime::new(date, time);
    if let Some(at) = tz.from_local_datetime(&naive).earliest() {
        return Some(at.with_timezone(&Utc));
    }
    // In a gap: read the wall time with the offset in force just before it.
    let mut probe = naive;
    for _ in 0..96 {
        probe -= Duration::minutes(15);
        if let Some(before) = tz.from_local_datetime(&probe).earliest() {
            let offset = before.offset().fix().local_minus_utc();
            let utc = naive - Duration::seconds(i64::from(offset));
            return Some(DateTime::from_naive_utc_and_offset(utc, Utc));
        }
    }
    None
}

// ---------------------------------------------------------------------------------------
// English.

const WEEKDAYS: &str = "monday|tuesday|wednesday|thursday|friday|saturday|sunday";
const MONTHS: &str = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec";

static EN_ABS: LazyLock<Regex> = LazyLock::new(|| {
    let parts = "morning|afternoon|evening|night";
    let day = format!(
        r"day\s+after\s+tomorrow|tomorrow(?:\s+(?:{parts}))?|tonight|today|this\s+(?:morning|afternoon|evening)|(?:next\s+|this\s+)?(?:{WEEKDAYS})(?:\s+(?:{parts}))?|\d{{4}}-\d{{2}}-\d{{2}}|(?:{MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?"
    );
    let time = r"\d{1,2}(?::\d{2})?\s*(?:am|pm)|\d{1,2}:\d{2}|noon|midday|midnight";
    let pattern = format!(
        r"(?i)\b(?:(?:on|at)\s+)?(?P<day>{day})(?:(?:\s*,\s*|\s+)(?:at\s+)?(?P<t1>{time}))?\b|\b(?:at\s+)?(?P<t2>{time})(?:\s+(?:on\s+)?(?P<day2>{day}))?\b"
    );
    Regex::new(&pattern).expect("EN_ABS is a valid regex")
});

static EN_REL: LazyLock<Regex> = LazyLock::new(|| {
    let unit = r"(?:weeks|week|wks|wk|w|days|day|d|hours|hour|hrs|hr|h|minutes|minute|mins|min|m|seconds|second|secs|sec|s)";
    let num = r"\d{1,4}(?:\.\d{1,2})?";
    let pattern = format!(
        r"(?i)\bin\s+(?:half\s+an?\s+hour|(?:(?:an?|one)\s+|{num}\s*){unit}(?:\s+and\s+a\s+half)?(?:\s*(?:and\s+)?{num}\s*{unit})*)\b"
    );
    Regex::new(&pattern).expect("EN_REL is a valid regex")
});

static EN_REL_PART: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:(\d+(?:\.\d+)?)|\b(an?|one)\b)\s*([a-z]+)").expect("EN_REL_PART is a valid regex"));

/// What an English absolute match says.
fn en_abs(caps: &Captures<'_>) -> Option<Abs> {
    let day = caps.name("day").or_else(|| caps.name("day2"));
    let time = caps.name("t1").or_else(|| caps.name("t2"));
    let (day, period) = match day {
        Some(d) => {
            let (day, period) = en_day(&d.as_str().to_ascii_lowercase())?;
            (Some(day), period)
        }
        None => (None, None),
    };
    let clock = match time {
        Some(t) => Some(en_time(&t.as_str().to_ascii_lowercase())?),
        None => None,
    };
    Some(Abs { day, period, clock })
}

/// An English day phrase (lowercase), with the part of the day it names.
fn en_day(s: &str) -> Option<(Day, Option<Period>)> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let period = match words.last().copied() {
        Some("morning") => Some(Period::Morning),
        Some("afternoon") => Some(Period::Afternoon),
        Some("evening") => Some(Period::Evening),
        Some("night" | "tonight") => Some(Period::Night),
        _ => None,
    };
    let first = words.first().copied()?;
    let day = match first {
        "day" => Day::Offset(2),
        "tomorrow" => Day::Offset(1),
        "today" | "tonight" => Day::Offset(0),
        "this" if period.is_some() => Day::Offset(0),
        _ if first.len() == 10 && first.as_bytes()[4] == b'-' => Day::Date(NaiveDate::parse_from_str(first, "%Y-%m-%d").ok()?),
        _ if MONTHS.split('|').any(|m| m == first) && words.len() == 2 => {
            let month = MONTHS.split('|').position(|m| m == first)?;
            // The list is the twelve names, then their short forms (no `may`), in order.
            let month = match month {
                0..=11 => month as u32 + 1,
                12..=15 => month as u32 - 11,
                16..=17 => month as u32 - 10,
                18..=19 => 8 + (month as u32 - 18),
                20 => 9,
                21..=23 => month as u32 - 11,
                _ => return None,
            };
            let d: u32 = words[1].trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse().ok()?;
            Day::MonthAndDate(month, d)
        }
        _ => {
            let (mode, name) = match first {
                "next" => (WeekdayMode::StrictNext, words.get(1).copied()?),
                "this" => (WeekdayMode::Week(0), words.get(1).copied()?),
                _ => (WeekdayMode::Nearest, first),
            };
            Day::Weekday(name.parse::<Weekday>().ok()?, mode)
        }
    };
    Some((day, period))
}

/// An English clock phrase (lowercase): `23:30`, `11pm`, `11:30 pm`, `noon`, `midnight`.
fn en_time(s: &str) -> Option<Clock> {
    match s {
        "noon" | "midday" => {
            return Some(Clock {
                fixed: Some(12 * 60),
                ..Clock::hm(12, 0)
            });
        }
        "midnight" => {
            return Some(Clock {
                fixed: Some(24 * 60),
                ..Clock::hm(0, 0)
            });
        }
        _ => {}
    }
    let (digits, pm) = if let Some(rest) = s.strip_suffix("pm") {
        (rest.trim_end(), Some(true))
    } else if let Some(rest) = s.strip_suffix("am") {
        (rest.trim_end(), Some(false))
    } else {
        (s, None)
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h.parse().ok()?, m.parse().ok()?),
        None => (digits.parse().ok()?, 0),
    };
    Some(Clock { pm, ..Clock::hm(h, m) })
}

/// Seconds from now an English relative match (`in 2h30m`, `in half an hour`) means.
fn en_rel(s: &str) -> Option<i64> {
    let s = s.to_ascii_lowercase();
    let rest = s.get(2..)?.trim_start();
    if rest.starts_with("half") {
        return Some(1800);
    }
    let mut total = 0.0_f64;
    let mut last_unit = 0.0_f64;
    for caps in EN_REL_PART.captures_iter(rest) {
        let word = caps.get(3)?.as_str();
        let n = match (caps.get(1), caps.get(2)) {
            (Some(d), _) => d.as_str().parse::<f64>().ok()?,
            (None, Some(_)) => 1.0,
            (None, None) => return None,
        };
        if word == "half" {
            total += last_unit / 2.0;
            continue;
        }
        let unit = match word {
            "w" | "wk" | "wks" | "week" | "weeks" => 604_800.0,
            "d" | "day" | "days" => 86_400.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            _ => return None,
        };
        last_unit = unit;
        total += n * unit;
    }
    if !total.is_finite() || total > (MAX_AHEAD_DAYS * 86_400) as f64 {
        return None;
    }
    Some(total.round() as i64)
}

// ---------------------------------------------------------------------------------------
// Chinese.

const CN_NUM: &str = r"(?:\d{1,2}|[零〇一二两三四五六七八九十]{1,3})";

const CN_DAY: &str = r"\d{1,2}月\d{1,2}[日号]|大后天|后天|明天|明日|明早|明晚|今天|今日|今早|今晚|今夜|(?:下下|下|这|本)?(?:周|星期|礼拜)[一二三四五六日天1-7]";
const CN_PERIOD: &str = r"凌晨|清晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里|夜间|半夜";

/// A Chinese clock reading: `23:30`, `23点30分`, `十一点半`.
fn cn_clock_pattern() -> String {
    format!(r"\d{{1,2}}[:：]\d{{2}}|{CN_NUM}(?:点钟?|时)(?:半|一刻|三刻|整|\d{{1,2}}分?|[零〇一二两三四五六七八九十]{{1,3}}分?)?")
}

/// Finds Chinese absolute expressions (never empty); [`CN_ABS`] then reads one.
static CN_ABS_FIND: LazyLock<Regex> = LazyLock::new(|| {
    let clock = cn_clock_pattern();
    let pattern = format!(r"(?:{CN_DAY})(?:\s*(?:{CN_PERIOD}))?(?:\s*(?:{clock}))?|(?:{CN_PERIOD})(?:\s*(?:{clock}))?|(?:{clock})");
    Regex::new(&pattern).expect("CN_ABS_FIND is a valid regex")
});

/// Reads the parts of one match of [`CN_ABS_FIND`].
static CN_ABS: LazyLock<Regex> = LazyLock::new(|| {
    let clock = cn_clock_pattern();
    let pattern = format!(r"^(?P<day>{CN_DAY})?(?:\s*(?P<per>{CN_PERIOD}))?(?:\s*(?P<clock>{clock}))?$");
    Regex::new(&pattern).expect("CN_ABS is a valid regex")
});

static CN_REL: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        r"(?P<n>{CN_NUM}|半)个?(?P<half>半)?(?P<unit>小时|钟头|分钟|分|秒钟|秒|天|周|星期|礼拜)(?:(?P<n2>{CN_NUM})(?:分钟|分))?\s*(?:以后|之后|后)"
    );
    Regex::new(&pattern).expect("CN_REL is a valid regex")
});

/// A number in ASCII digits or Chinese numerals (up to 99: `十一`, `二十三`, `两`).
pub(crate) fn cn_num(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    fn digit(c: char) -> Option<u32> {
        Some(match c {
            '零' | '〇' => 0,
            '一' => 1,
            '二' | '两' => 2,
            '三' => 3,
            '四' => 4,
            '五' => 5,
            '六' => 6,
            '七' => 7,
            '八' => 8,
            '九' => 9,
            _ => return None,
        })
    }
    let chars: Vec<char> = s.chars().collect();
    match chars.iter().position(|&c| c == '十') {
        None if chars.len() == 1 => digit(chars[0]),
        None => None,
        Some(i) => {
            let tens = match i {
                0 => 1,
                1 => digit(chars[0]).filter(|&d| d > 0)?,
                _ => return None,
            };
            let ones = match &chars[i + 1..] {
                [] => 0,
                [c] => digit(*c).filter(|&d| d > 0)?,
                _ => return None,
            };
            Some(tens * 10 + ones)
        }
    }
}

/// What a Chinese absolute match says.
fn cn_abs(caps: &Captures<'_>) -> Option<Abs> {
    let day_text = caps.name("day").map(|m| m.as_str());
    let period_text = caps.name("per").map(|m| m.as_str());
    let clock_text = caps.name("clock").map(|m| m.as_str());
    let (day, implied) = match day_text {
        Some(d) => {
            let (day, period) = cn_day(d)?;
            (Some(day), period)
        }
        None => (None, None),
    };
    let period = match period_text {
        Some(p) => Some(cn_period(p)?),
        None => implied,
    };
    let clock = match clock_text {
        Some(c) => {
            if day.is_none() && period.is_none() && (c == "一点" || c == "一点钟") {
                return None;
            }
            Some(cn_clock(c)?)
        }
        None => None,
    };
    if day.is_none() && period.is_none() && clock.is_none() {
        return None;
    }
    Some(Abs { day, period, clock })
}

/// A Chinese day word, with the part of the day it implies (`今晚`, `明早`).
fn cn_day(s: &str) -> Option<(Day, Option<Period>)> {
    if let Some((m, d)) = s.split_once('月') {
        let d = d.trim_end_matches(['日', '号']);
        let (m, d) = (m.parse::<u32>().ok()?, d.parse::<u32>().ok()?);
        return Some((Day::MonthAndDate(m, d), None));
    }
    Some(match s {
        "今天" | "今日" => (Day::Offset(0), None),
        "今早" => (Day::Offset(0), Some(Period::Morning)),
        "今晚" | "今夜" => (Day::Offset(0), Some(Period::Night)),
        "明天" | "明日" => (Day::Offset(1), None),
        "明早" => (Day::Offset(1), Some(Period::Morning)),
        "明晚" => (Day::Offset(1), Some(Period::Night)),
        "后天" => (Day::Offset(2), None),
        "大后天" => (Day::Offset(3), None),
        _ => {
            let (mode, rest) = if let Some(r) = s.strip_prefix("下下") {
                (WeekdayMode::Week(2), r)
            } else if let Some(r) = s.strip_prefix('下') {
                (WeekdayMode::Week(1), r)
            } else if let Some(r) = s.strip_prefix('这').or_else(|| s.strip_prefix('本')) {
                (WeekdayMode::Week(0), r)
            } else {
                (WeekdayMode::Nearest, s)
            };
            let wd = match rest.chars().last()? {
                '一' | '1' => Weekday::Mon,
                '二' | '2' => Weekday::Tue,
                '三' | '3' => Weekday::Wed,
                '四' | '4' => Weekday::Thu,
                '五' | '5' => Weekday::Fri,
                '六' | '6' => Weekday::Sat,
                '日' | '天' | '7' => Weekday::Sun,
                _ => return None,
            };
            (Day::Weekday(wd, mode), None)
        }
    })
}

/// A Chinese part-of-day word.
fn cn_period(s: &str) -> Option<Period> {
    Some(match s {
        "凌晨" | "半夜" => Period::Small,
        "清晨" | "早上" | "早晨" | "上午" => Period::Morning,
        "中午" => Period::Noon,
        "下午" => Period::Afternoon,
        "傍晚" => Period::Evening,
        "晚上" | "夜里" | "夜间" => Period::Night,
        _ => return None,
    })
}

/// A Chinese clock: `23:30`, `23点30`, `23点半`, `十一点`, `3点一刻`, `8点整`.
fn cn_clock(s: &str) -> Option<Clock> {
    if let Some((h, m)) = s.split_once(':').or_else(|| s.split_once('：')) {
        return Some(Clock::hm(h.parse().ok()?, m.parse().ok()?));
    }
    let (h, rest) = s.split_once('点').or_else(|| s.split_once('时'))?;
    let hour = cn_num(h)?;
    let rest = rest.strip_prefix('钟').unwrap_or(rest);
    let minute = match rest {
        "" | "整" => 0,
        "半" => 30,
        "一刻" => 15,
        "三刻" => 45,
        _ => cn_num(rest.strip_suffix('分').unwrap_or(rest))?,
    };
    Some(Clock {
        dian: true,
        ..Clock::hm(hour, minute)
    })
}

/// Seconds from now a Chinese relative match (`2小时后`, `一个半小时后`) means.
fn cn_rel(caps: &Captures<'_>) -> Option<i64> {
    let n = caps.name("n")?.as_str();
    let unit: i64 = match caps.name("unit")?.as_str() {
        "小时" | "钟头" => 3600,
        "分钟" | "分" => 60,
        "秒钟" | "秒" => 1,
        "天" => 86_400,
        "周" | "星期" | "礼拜" => 604_800,
        _ => return None,
    };
    let mut seconds = if n == "半" { unit / 2 } else { i64::from(cn_num(n)?) * unit };
    if caps.name("half").is_some() {
        seconds += unit / 2;
    }
    if let Some(n2) = caps.name("n2") {
        if unit != 3600 {
            return None;
        }
        let minutes = cn_num(n2.as_str())?;
        if minutes > 59 {
            return None;
        }
        seconds += i64::from(minutes) * 60;
    }
    Some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    const BERLIN: Tz = chrono_tz::Europe::Berlin;
    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;
    const NEW_YORK: Tz = chrono_tz::America::New_York;

    /// `local` ("2026-11-24 23:50") on the wall clock in `tz`, as UTC.
    fn local(s: &str, tz: Tz) -> DateTime<Utc> {
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("test time");
        tz.from_local_datetime(&naive)
            .earliest()
            .expect("test time exists")
            .with_timezone(&Utc)
    }

    /// Finds a time in `text` at `now` (local in `tz`) and returns it as local wall time and
    /// the matched text.
    fn get(text: &str, now: &str, tz: Tz) -> Option<(String, String)> {
        let when = find(text, local(now, tz), tz)?;
        let shown = when.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
        Some((shown, text[when.span].to_string()))
    }

    #[track_caller]
    fn check(text: &str, now: &str, tz: Tz, want: &str, span: &str) {
        assert_eq!(get(text, now, tz), Some((want.to_string(), span.to_string())), "text: {text}");
    }

    #[track_caller]
    fn none(text: &str, now: &str, tz: Tz) {
        assert_eq!(get(text, now, tz), None, "text: {text}");
    }

    // 2026-11-24 is a Tuesday.
    const NOW: &str = "2026-11-24 10:00";

    #[test]
    fn english_clock_times() {
        check("deploy api to dev at 23:30", NOW, BERLIN, "2026-11-24 23:30", "at 23:30");
        check("at 11pm restart web", NOW, BERLIN, "2026-11-24 23:00", "at 11pm");
        check("restart web at 11:30 pm", NOW, BERLIN, "2026-11-24 23:30", "at 11:30 pm");
        check("restart web at 8am", NOW, BERLIN, "2026-11-25 08:00", "at 8am");
        check("restart web 23:30", NOW, BERLIN, "2026-11-24 23:30", "23:30");
        check("restart web At 9:15 AM please", NOW, BERLIN, "2026-11-25 09:15", "At 9:15 AM");
        check("at noon restart web", NOW, BERLIN, "2026-11-24 12:00", "at noon");
        check("restart web at midnight", NOW, BERLIN, "2026-11-25 00:00", "at midnight");
        check("restart web at 10:00", NOW, BERLIN, "2026-11-25 10:00", "at 10:00");
    }

    #[test]
    fn across_midnight() {
        check("deploy at 00:10", "2026-11-24 23:50", BERLIN, "2026-11-25 00:10", "at 00:10");
        check("deploy at 23:55", "2026-11-24 23:50", BERLIN, "2026-11-24 23:55", "at 23:55");
        check(
            "restart web in 2 hours",
            "2026-11-24 23:00",
            BERLIN,
            "2026-11-25 01:00",
            "in 2 hours",
        );
        check("restart at 12am", "2026-11-24 23:50", BERLIN, "2026-11-25 00:00", "at 12am");
    }

    #[test]
    fn english_relative() {
        check("restart web in 90 minutes", NOW, BERLIN, "2026-11-24 11:30", "in 90 minutes");
        check("restart web in 30 min now", NOW, BERLIN, "2026-11-24 10:30", "in 30 min");
        check("restart web in 1h", NOW, BERLIN, "2026-11-24 11:00", "in 1h");
        check("restart web in 2h30m", NOW, BERLIN, "2026-11-24 12:30", "in 2h30m");
        check("restart web in a minute", NOW, BERLIN, "2026-11-24 10:01", "in a minute");
        check("restart web in an hour", NOW, BERLIN, "2026-11-24 11:00", "in an hour");
        check("restart web in half an hour", NOW, BERLIN, "2026-11-24 10:30", "in half an hour");
        check("restart web in 2 days", NOW, BERLIN, "2026-11-26 10:00", "in 2 days");
        check(
            "restart web in an hour and a half",
            NOW,
            BERLIN,
            "2026-11-24 11:30",
            "in an hour and a half",
        );
        none("restart web in 400 days", NOW, BERLIN);
        none("restart web in 0 minutes", NOW, BERLIN);
    }

    #[test]
    fn english_days() {
        check("tomorrow restart web", NOW, BERLIN, "2026-11-25 09:00", "tomorrow");
        check("restart web tomorrow 8am", NOW, BERLIN, "2026-11-25 08:00", "tomorrow 8am");
        check("restart web tomorrow at 9:15", NOW, BERLIN, "2026-11-25 09:15", "tomorrow at 9:15");
        check("restart web tomorrow morning", NOW, BERLIN, "2026-11-25 09:00", "tomorrow morning");
        check("restart web tonight", NOW, BERLIN, "2026-11-24 20:00", "tonight");
        none("restart web tonight", "2026-11-24 20:30", BERLIN);
        check(
            "restart web tonight at 23:30",
            "2026-11-24 20:30",
            BERLIN,
            "2026-11-24 23:30",
            "tonight at 23:30",
        );
        check("restart web tonight at 11:30", NOW, BERLIN, "2026-11-24 23:30", "tonight at 11:30");
        check("restart web this evening", NOW, BERLIN, "2026-11-24 19:00", "this evening");
        check("next monday 8am scale web to 3", NOW, BERLIN, "2026-11-30 08:00", "next monday 8am");
        check("deploy on friday at 17:00", NOW, BERLIN, "2026-11-27 17:00", "on friday at 17:00");
        check("deploy monday", NOW, BERLIN, "2026-11-30 09:00", "monday");
        check("deploy at 8am tomorrow", NOW, BERLIN, "2026-11-25 08:00", "at 8am tomorrow");
        check(
            "deploy on 2026-12-01 10:00 ok",
            NOW,
            BERLIN,
            "2026-12-01 10:00",
            "on 2026-12-01 10:00",
        );
        check("deploy 2026-12-01 10:00", NOW, BERLIN, "2026-12-01 10:00", "2026-12-01 10:00");
        check(
            "deploy the day after tomorrow",
            NOW,
            BERLIN,
            "2026-11-26 09:00",
            "day after tomorrow",
        );
        none("deploy 2020-01-01 10:00", NOW, BERLIN);
        none("deploy 2028-01-01 10:00", NOW, BERLIN);
        none("deploy today", NOW, BERLIN);
    }

    #[test]
    fn weekday_on_the_same_weekday() {
        // Tuesday 10:00.
        check("deploy tuesday", NOW, BERLIN, "2026-12-01 09:00", "tuesday");
        check("deploy tuesday 3pm", NOW, BERLIN, "2026-11-24 15:00", "tuesday 3pm");
        check("deploy tuesday 8am", NOW, BERLIN, "2026-12-01 08:00", "tuesday 8am");
        check("deploy next tuesday 3pm", NOW, BERLIN, "2026-12-01 15:00", "next tuesday 3pm");
        check("周二下午3点 部署", NOW, SHANGHAI, "2026-11-24 15:00", "周二下午3点");
        check("周二 部署", NOW, SHANGHAI, "2026-12-01 09:00", "周二");
    }

    #[test]
    fn out_of_range_clocks() {
        none("deploy at 25:00", NOW, BERLIN);
        none("deploy at 13pm", NOW, BERLIN);
        none("23点70分 部署", NOW, SHANGHAI);
        none("deploy at 12:60", NOW, BERLIN);
    }

    #[test]
    fn zones_give_different_instants() {
        let now = Utc.with_ymd_and_hms(2026, 11, 24, 3, 0, 0).single().expect("now");
        let text = "deploy at 23:30";
        let sh = find(text, now, SHANGHAI).expect("shanghai").at;
        let be = find(text, now, BERLIN).expect("berlin").at;
        let ny = find(text, now, NEW_YORK).expect("new york").at;
        assert_eq!(sh, Utc.with_ymd_and_hms(2026, 11, 24, 15, 30, 0).single().expect("t"));
        assert_eq!(be, Utc.with_ymd_and_hms(2026, 11, 24, 22, 30, 0).single().expect("t"));
        // 03:00 UTC is 22:00 on the 23rd in New York: 23:30 is still ahead that evening.
        assert_eq!(ny, Utc.with_ymd_and_hms(2026, 11, 24, 4, 30, 0).single().expect("t"));
        assert_eq!(show(be, BERLIN), "2026-11-24 23:30 CET");
        assert_eq!(show(sh, SHANGHAI), "2026-11-24 23:30 CST");
        assert_eq!(show(ny, NEW_YORK), "2026-11-23 23:30 EST");
    }

    #[test]
    fn dst_gap_moves_forward() {
        // 2026-03-29 02:00 → 03:00 in Berlin: 02:30 does not exist.
        let now = local("2026-03-29 00:00", BERLIN);
        let when = find("deploy at 02:30", now, BERLIN).expect("found");
        assert_eq!(when.at, Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).single().expect("t"));
        assert_eq!(show(when.at, BERLIN), "2026-03-29 03:30 CEST");
    }

    #[test]
    fn dst_overlap_takes_earlier() {
        // 2026-10-25 03:00 → 02:00 in Berlin: 02:30 happens twice (CEST, then CET).
        let now = local("2026-10-25 00:00", BERLIN);
        let when = find("deploy at 02:30", now, BERLIN).expect("found");
        assert_eq!(when.at, Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).single().expect("t"));
        assert_eq!(show(when.at, BERLIN), "2026-10-25 02:30 CEST");
    }

    #[test]
    fn chinese_clock_times() {
        check("23:30 重启 db", NOW, SHANGHAI, "2026-11-24 23:30", "23:30");
        check("23点30重启db", NOW, SHANGHAI, "2026-11-24 23:30", "23点30");
        check("23点半重启db", NOW, SHANGHAI, "2026-11-24 23:30", "23点半");
        check("晚上11点重启db", NOW, SHANGHAI, "2026-11-24 23:00", "晚上11点");
        check("下午3点重启db", NOW, SHANGHAI, "2026-11-24 15:00", "下午3点");
        check("上午9点重启db", NOW, SHANGHAI, "2026-11-25 09:00", "上午9点");
        check("早上8点重启db", NOW, SHANGHAI, "2026-11-25 08:00", "早上8点");
        check("中午12点重启db", NOW, SHANGHAI, "2026-11-24 12:00", "中午12点");
        check("凌晨2点重启db", NOW, SHANGHAI, "2026-11-25 02:00", "凌晨2点");
        check("晚上十一点重启db", NOW, SHANGHAI, "2026-11-24 23:00", "晚上十一点");
        check("二十三点三十分重启db", NOW, SHANGHAI, "2026-11-24 23:30", "二十三点三十分");
        check("重启 db 今晚", NOW, SHANGHAI, "2026-11-24 20:00", "今晚");
    }

    #[test]
    fn chinese_bare_hour_is_the_sooner_of_am_and_pm() {
        check("3点 重启 db", NOW, SHANGHAI, "2026-11-24 15:00", "3点");
        check("3点 重启 db", "2026-11-24 16:00", SHANGHAI, "2026-11-25 03:00", "3点");
        check("3点 重启 db", "2026-11-24 01:00", SHANGHAI, "2026-11-24 03:00", "3点");
        none("快一点重启 db", NOW, SHANGHAI);
    }

    #[test]
    fn chinese_days() {
        check("后天下午3点重启db", NOW, SHANGHAI, "2026-11-26 15:00", "后天下午3点");
        check("今晚 部署 web 到生产", NOW, SHANGHAI, "2026-11-24 20:00", "今晚");
        none("今晚 部署 web 到生产", "2026-11-24 20:30", SHANGHAI);
        check("今晚11点部署", "2026-11-24 20:30", SHANGHAI, "2026-11-24 23:00", "今晚11点");
        check("今天下午3点部署", NOW, SHANGHAI, "2026-11-24 15:00", "今天下午3点");
        check("明天部署", NOW, SHANGHAI, "2026-11-25 09:00", "明天");
        check("明天早上8点部署", NOW, SHANGHAI, "2026-11-25 08:00", "明天早上8点");
        check("明早部署", NOW, SHANGHAI, "2026-11-25 09:00", "明早");
        check("大后天部署", NOW, SHANGHAI, "2026-11-27 09:00", "大后天");
        check("下周一部署", NOW, SHANGHAI, "2026-11-30 09:00", "下周一");
        check("下周一上午9点部署", NOW, SHANGHAI, "2026-11-30 09:00", "下周一上午9点");
        check("下周五部署", NOW, SHANGHAI, "2026-12-04 09:00", "下周五");
        check("周五下午5点部署", NOW, SHANGHAI, "2026-11-27 17:00", "周五下午5点");
        check("星期五下午5点部署", NOW, SHANGHAI, "2026-11-27 17:00", "星期五下午5点");
        check("明天 14:00 部署", NOW, SHANGHAI, "2026-11-25 14:00", "明天 14:00");
        none("今天下午3点部署", "2026-11-24 16:00", SHANGHAI);
    }

    #[test]
    fn chinese_relative() {
        check("2小时后重启", NOW, SHANGHAI, "2026-11-24 12:00", "2小时后");
        check("两小时后重启", NOW, SHANGHAI, "2026-11-24 12:00", "两小时后");
        check("30分钟后重启", NOW, SHANGHAI, "2026-11-24 10:30", "30分钟后");
        check("半小时后重启", NOW, SHANGHAI, "2026-11-24 10:30", "半小时后");
        check("一个小时后重启", NOW, SHANGHAI, "2026-11-24 11:00", "一个小时后");
        check("十分钟后重启", NOW, SHANGHAI, "2026-11-24 10:10", "十分钟后");
        check("一小时以后重启", NOW, SHANGHAI, "2026-11-24 11:00", "一小时以后");
        check("一个半小时后重启", NOW, SHANGHAI, "2026-11-24 11:30", "一个半小时后");
        check("重启 db 2小时30分钟后", NOW, SHANGHAI, "2026-11-24 12:30", "2小时30分钟后");
    }

    #[test]
    fn chinese_numerals() {
        assert_eq!(cn_num("十"), Some(10));
        assert_eq!(cn_num("十一"), Some(11));
        assert_eq!(cn_num("二十三"), Some(23));
        assert_eq!(cn_num("三十"), Some(30));
        assert_eq!(cn_num("五十九"), Some(59));
        assert_eq!(cn_num("两"), Some(2));
        assert_eq!(cn_num("一二"), None);
        assert_eq!(cn_num("十十"), None);
    }

    #[test]
    fn spans_cover_the_expression_in_mixed_text() {
        let text = "请在后天下午3点重启db1";
        let when = find(text, local(NOW, SHANGHAI), SHANGHAI).expect("found");
        assert_eq!(&text[when.span], "后天下午3点");
        let text = "next monday 8am scale web to 3";
        let when = find(text, local(NOW, BERLIN), BERLIN).expect("found");
        assert_eq!(when.span, 0..15);
    }

    #[test]
    fn negatives() {
        for text in [
            "deploy v2.0.1 to prod",
            "scale web to 3",
            "看一下 web 最近 50 行日志",
            "show #23",
            "run 31",
            "deploy 1.4.2",
            "scale web to 3 replicas",
            "logs api 100",
            "restart db db1.internal",
            "deploy web to staging",
            "format 23",
            "最近 80 行",
            "connect db1.internal:23:30",
            "deploy build-23:30",
            "",
        ] {
            none(text, NOW, BERLIN);
            none(text, NOW, SHANGHAI);
        }
    }

    #[test]
    fn pre_check_skips_plain_text() {
        assert!(!worth_looking("deploy web to staging"));
        assert!(!worth_looking("部署 web 到生产"));
        assert!(worth_looking("deploy tomorrow"));
        assert!(worth_looking("后天部署"));
        assert!(worth_looking("restart in a minute"));
    }

    #[test]
    fn times_inside_values_stay_there() {
        let t = "please announce message=\"back at 5pm\" now";
        let w = find(t, Utc::now(), chrono_tz::UTC).expect("a time");
        assert!(!outside_values(t, &w.span));
        let t = "run announce message='rollout at 23:30'";
        let w = find(t, Utc::now(), chrono_tz::UTC).expect("a time");
        assert!(!outside_values(t, &w.span));
        let t = "announce note=tomorrow";
        let w = find(t, Utc::now(), chrono_tz::UTC).expect("a time");
        assert!(!outside_values(t, &w.span));
        let t = "deploy web to prod at 23:30";
        let w = find(t, Utc::now(), chrono_tz::UTC).expect("a time");
        assert!(outside_values(t, &w.span));
        let t = "don't deploy at 23:30";
        let w = find(t, Utc::now(), chrono_tz::UTC).expect("a time");
        assert!(outside_values(t, &w.span), "an apostrophe inside a word opens nothing");
    }

    #[test]
    fn month_and_day_dates() {
        let tz = chrono_tz::Asia::Shanghai;
        let now = tz.with_ymd_and_hms(2026, 3, 4, 10, 0, 0).unwrap().with_timezone(&Utc);
        let at = |t: &str| find(t, now, tz).map(|w| (w.at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(), t[w.span].to_string()));
        assert_eq!(
            at("3月10日下午2点发布 web"),
            Some(("2026-03-10 14:00".into(), "3月10日下午2点".into()))
        );
        assert_eq!(at("12月1日 重启 db"), Some(("2026-12-01 09:00".into(), "12月1日".into())));
        assert_eq!(at("1月5号早上8点"), Some(("2027-01-05 08:00".into(), "1月5号早上8点".into())));
        assert_eq!(
            at("deploy api on March 10 at 14:00"),
            Some(("2026-03-10 14:00".into(), "on March 10 at 14:00".into()))
        );
        assert_eq!(
            at("restart web dec 24th 9am"),
            Some(("2026-12-24 09:00".into(), "dec 24th 9am".into()))
        );
        assert_eq!(at("2月30日"), None, "no such day");
        assert_eq!(at("13月1日"), None);
    }
}
