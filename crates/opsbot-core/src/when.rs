//! Times as people write them in filters (`--since`, `?until=`): the one set of rules the REST
//! API, the web console and the CLI share.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

/// A time filter: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM[:SS]` (UTC), or a date
/// `YYYY-MM-DD`, which means its midnight (UTC) — or with `end_of_day` the next midnight, so an
/// `until` of `2024-05-31` includes that whole day. `None` when it is none of these.
pub fn parse_time(raw: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Some(t.and_utc());
        }
    }
    let d = NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()?;
    let d = if end_of_day { d.succ_opt().unwrap_or(d) } else { d };
    Some(d.and_time(NaiveTime::MIN).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    #[test]
    fn times_dates_and_whole_days() {
        let t = |s: &str, end| parse_time(s, end).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
        assert_eq!(t("2024-05-01", false).as_deref(), Some("2024-05-01T00:00:00Z"));
        assert_eq!(t("2024-05-31", true).as_deref(), Some("2024-06-01T00:00:00Z"), "a whole day");
        assert_eq!(t("2024-05-01T12:00:00+02:00", true).as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(
            t("2024-05-01T12:30", false).as_deref(),
            Some("2024-05-01T12:30:00Z"),
            "UTC without a zone"
        );
        assert_eq!(t(" 2024-05-01 12:30:05 ", false).as_deref(), Some("2024-05-01T12:30:05Z"));
        assert!(t("yesterday", false).is_none());
        assert!(t("2024-13-01", false).is_none());
    }
}
