//! Scrubbing secrets from a run's output: the values of its `secret = true` params and of the
//! runner env variables that came from `${env:…}`/`${file:…}` references are replaced with
//! `••••` in every line before the line is stored, shown or streamed.
//!
//! Lines are the unit (the exec runner joins the pipe's reads into lines first, so a secret
//! written in several pieces is whole again); a multi-line secret (a PEM key) is matched line by
//! line; and when a line is cut at the 16 KiB line cap, a secret's beginning left at the end of
//! the kept part is scrubbed too (its rest is in the discarded part). Values shorter than
//! [`MIN_SECRET_LEN`] bytes are not scrubbed: they would match ordinary text everywhere.

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret becomes in output.
pub const MASK: &str = "••••";

/// Shortest value scrubbed, in bytes.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces known secret values in lines of output.
#[derive(Debug)]
pub struct Redactor {
    matcher: AhoCorasick,
    /// The patterns, for the partial match at a cut.
    patterns: Vec<String>,
}

impl Redactor {
    /// A redactor for these values, or `None` when none is long enough to scrub.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Redactor> {
        let mut patterns: Vec<String> = values
            .into_iter()
            .flat_map(|v| v.split('\n'))
            .map(|v| v.trim_end_matches('\r'))
            .filter(|v| v.len() >= MIN_SECRET_LEN)
            .map(str::to_string)
            .collect();
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return None;
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok()?;
        Some(Redactor { matcher, patterns })
    }

    /// The line with every secret replaced by [`MASK`].
    pub fn line(&self, text: &str) -> String {
        self.matcher.replace_all(text, &vec![MASK; self.patterns.len()])
    }

    /// A line that was cut at the line cap (`kept` is what was kept, before the cut mark): full
    /// matches are replaced, and so is a secret's beginning (at least [`MIN_SECRET_LEN`] bytes,
    /// or all of `kept` from where it starts) at its very end.
    pub fn cut_line(&self, kept: &str) -> String {
        let mut out = self.line(kept);
        // The longest proper prefix of any secret that `out` ends with.
        let mut cut_at = None;
        for p in &self.patterns {
            for len in (MIN_SECRET_LEN..p.len()).rev() {
                if !p.is_char_boundary(len) {
                    continue;
                }
                if out.ends_with(&p[..len]) {
                    let at = out.len() - len;
                    cut_at = Some(cut_at.map_or(at, |c: usize| c.min(at)));
                    break;
                }
            }
        }
        if let Some(at) = cut_at {
            out.truncate(at);
            out.push_str(MASK);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_values_anywhere_in_a_line() {
        let r = Redactor::new(["s3cr3t-token", "hunter22"]).unwrap();
        assert_eq!(r.line("token=s3cr3t-token;pw=hunter22!"), "token=••••;pw=••••!");
        assert_eq!(r.line("nothing here"), "nothing here");
        assert_eq!(r.line("s3cr3t-tokens3cr3t-token"), "••••••••");
    }

    #[test]
    fn short_values_are_left_alone_and_lines_of_a_pem_are_each_matched() {
        assert!(Redactor::new(["abc", ""]).is_none());
        let pem = "-----BEGIN KEY-----\r\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END KEY-----";
        let r = Redactor::new([pem]).unwrap();
        assert_eq!(r.line("MIIBOgIBAAJBAKj34GkxFhD9"), "••••");
        assert_eq!(r.line("> -----BEGIN KEY-----"), "> ••••");
    }

    #[test]
    fn the_longest_secret_wins_where_they_overlap() {
        let r = Redactor::new(["abcd", "abcdefgh"]).unwrap();
        assert_eq!(r.line("xabcdefghx"), "x••••x");
    }

    #[test]
    fn a_secret_cut_at_the_line_cap_is_scrubbed_from_its_beginning() {
        let r = Redactor::new(["TOPSECRETVALUE"]).unwrap();
        assert_eq!(r.cut_line("aaaa TOPSEC"), "aaaa ••••");
        assert_eq!(r.cut_line("aaaa TOP"), "aaaa TOP", "shorter than 4: ordinary text");
        assert_eq!(r.cut_line("TOPSECRETVALUE and TOPSECRET"), "•••• and ••••");
        assert_eq!(r.cut_line("plain end"), "plain end");
        let multi = Redactor::new(["ключ-секрет"]).unwrap();
        assert_eq!(multi.cut_line("x ключ-се"), "x ••••", "prefixes end at character boundaries");
    }
}
