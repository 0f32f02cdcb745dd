//! Replies as IRC lines: compact rendering, control-character stripping and splitting that
//! keeps every line the recipients receive within IRC's 512 bytes.

use opsbot_core::{Block, Reply, Tone};

/// Bytes budgeted for the host part of the bot's prefix as others see it (`nick!user@HOST`):
/// the longest host name a server shows (cloaks included).
pub const HOST_BUDGET: usize = 63;
/// The longest line IRC carries, CR LF included (tags aside).
pub const IRC_LINE: usize = 512;
/// Lines a job card takes at most.
pub const CARD_LINES: usize = 3;
/// Bytes a job card line takes at most (cards are short whatever the budget allows).
const CARD_LINE_BYTES: usize = 300;

/// Bytes of text one `PRIVMSG` to `target` may carry so that the line its recipients get,
/// `:nick!~user@host PRIVMSG target :text\r\n`, fits 512 bytes with a 63-byte host.
pub fn text_budget(nick: &str, user: &str, target: &str) -> usize {
    let overhead = 1 + nick.len() + 1 + (user.len() + 1) + 1 + HOST_BUDGET + " PRIVMSG ".len() + target.len() + " :".len() + 2;
    IRC_LINE.saturating_sub(overhead).max(32)
}

/// One line of text made safe for IRC: CR, LF and tabs become spaces; NUL, the other C0 and
/// C1 control characters, DEL and terminal escape sequences are dropped (so neither a new
/// command nor a CTCP request nor stray formatting can ride in a message).
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\x1b' => match it.peek() {
                // CSI: ESC [ params final-byte
                Some('[') => {
                    it.next();
                    for d in it.by_ref() {
                        if ('\x40'..='\x7e').contains(&d) {
                            break;
                        }
                    }
                }
                // OSC: ESC ] ... BEL or ESC \
                Some(']') => {
                    it.next();
                    while let Some(d) = it.next() {
                        if d == '\x07' {
                            break;
                        }
                        if d == '\x1b' {
                            if it.peek() == Some(&'\\') {
                                it.next();
                            }
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\r' | '\n' | '\t' | '\u{2028}' | '\u{2029}' | '\u{85}' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A text block's lines: CR LF and LF break lines; each line is then sanitised.
fn text_lines(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split('\n')
        .map(|l| sanitize(l.strip_suffix('\r').unwrap_or(l)))
        .filter(|l| !l.trim().is_empty())
}

/// Cuts `line` into pieces of at most `budget` bytes, never inside a UTF-8 character nor
/// before a joiner or combining mark, preferring to cut after a space. The pieces joined
/// again give the line back exactly.
pub fn split(line: &str, budget: usize) -> Vec<String> {
    let budget = budget.max(8);
    let mut out = Vec::new();
    let mut rest = line;
    while rest.len() > budget {
        let mut cut = budget;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let hard = cut;
        if let Some(sp) = rest[..cut].rfind(' ')
            && sp + 1 >= cut * 2 / 3
        {
            cut = sp + 1;
        } else {
            // Do not separate a character from the marks and joiners that follow it.
            while cut > 0 && (joins_previous(rest[cut..].chars().next()) || rest[..cut].ends_with('\u{200d}')) {
                cut -= 1;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
            }
            if cut < hard / 2 {
                cut = hard;
            }
        }
        if cut == 0 {
            cut = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

/// Whether `c` belongs with the character before it (combining mark, joiner, variation
/// selector, emoji skin tone).
fn joins_previous(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F | 0x200D | 0xFE00..=0xFE0F | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F)
    })
}

/// Cuts a line to at most `max` bytes on a character boundary, marking the cut with `…`.
fn truncate(line: &str, max: usize) -> String {
    if line.len() <= max {
        return line.to_string();
    }
    let mut cut = max.saturating_sub('…'.len_utf8());
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", line[..cut].trim_end())
}

fn mark(t: Tone) -> &'static str {
    match t {
        Tone::Info => "•",
        Tone::Progress => "▶",
        Tone::Success => "✔",
        Tone::Warning => "!",
        Tone::Error => "✘",
    }
}

fn bold(s: &str) -> String {
    format!("\x02{}\x02", sanitize(s))
}

fn fields_line(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}: {}", sanitize(k), sanitize(v)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn buttons_line(buttons: &[opsbot_core::Button]) -> String {
    buttons
        .iter()
        .map(|b| format!("[{}: {}]", sanitize(&b.label), sanitize(&b.command)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The title line: the first heading (bold) and the first status on one line.
fn title(reply: &Reply) -> Option<String> {
    let heading = reply.blocks.iter().find_map(|b| match b {
        Block::Heading { text } if !text.trim().is_empty() => Some(bold(text)),
        _ => None,
    });
    let status = reply.blocks.iter().find_map(|b| match b {
        Block::Status { tone, label } => Some(format!("{} {}", mark(*tone), sanitize(label))),
        _ => None,
    });
    match (heading, status) {
        (Some(h), Some(s)) => Some(format!("{h} · {s}")),
        (h, s) => h.or(s),
    }
}

/// The reply's lines before splitting, in block order (heading and status merged).
fn logical_lines(reply: &Reply) -> Vec<String> {
    let mut out = Vec::new();
    let mut title_done = false;
    let mut seen_heading = false;
    let mut seen_status = false;
    for b in &reply.blocks {
        match b {
            Block::Heading { text } => {
                if !title_done {
                    title_done = true;
                    out.extend(title(reply));
                } else if seen_heading && !text.trim().is_empty() {
                    out.push(bold(text));
                }
                seen_heading = true;
            }
            Block::Status { tone, label } => {
                if !title_done {
                    title_done = true;
                    out.extend(title(reply));
                } else if seen_status {
                    out.push(format!("{} {}", mark(*tone), sanitize(label)));
                }
                seen_status = true;
            }
            Block::Text { text } => out.extend(text_lines(text)),
            Block::Fields { fields } if !fields.is_empty() => out.push(fields_line(fields)),
            Block::Fields { .. } => {}
            Block::Code { text } => out.extend(text_lines(text)),
            Block::Table { headers, rows } => {
                if !headers.is_empty() {
                    out.push(bold(&headers.join(" | ")));
                }
                for r in rows {
                    out.push(r.iter().map(|c| sanitize(c)).collect::<Vec<_>>().join(" | "));
                }
            }
            Block::Buttons { buttons } if !buttons.is_empty() => out.push(buttons_line(buttons)),
            Block::Buttons { .. } => {}
            Block::Image { url, alt } => out.push(if alt.trim().is_empty() {
                sanitize(url)
            } else {
                format!("{}: {}", sanitize(alt), sanitize(url))
            }),
            Block::Link { url, text } => out.push(if text.trim().is_empty() {
                sanitize(url)
            } else {
                format!("{}: {}", sanitize(text), sanitize(url))
            }),
            // The reply's text asks for the values already.
            Block::Form(_) => {}
        }
    }
    out.retain(|l| !l.trim().is_empty());
    out
}

/// A job card in at most three short lines: state (with the first sentence), fields, and the
/// last output line — what a finished run said is worth more than its "Run again" — or else the
/// commands to type.
fn card_lines(reply: &Reply, budget: usize) -> Vec<String> {
    let max = budget.min(CARD_LINE_BYTES);
    let mut texts = reply.blocks.iter().filter_map(|b| match b {
        Block::Text { text } => text_lines(text).next(),
        _ => None,
    });
    let mut lines = Vec::new();
    match (title(reply), texts.next()) {
        (Some(t), Some(x)) => lines.push(format!("{t} — {x}")),
        (Some(t), None) => lines.push(t),
        (None, Some(x)) => lines.push(x),
        (None, None) => {}
    }
    let fields: Vec<(String, String)> = reply
        .blocks
        .iter()
        .flat_map(|b| match b {
            Block::Fields { fields } => fields.clone(),
            _ => Vec::new(),
        })
        .collect();
    if !fields.is_empty() {
        lines.push(fields_line(&fields));
    }
    let buttons: Vec<opsbot_core::Button> = reply
        .blocks
        .iter()
        .flat_map(|b| match b {
            Block::Buttons { buttons } => buttons.clone(),
            _ => Vec::new(),
        })
        .collect();
    let last_code = reply.blocks.iter().rev().find_map(|b| match b {
        Block::Code { text } => text_lines(text).last(),
        _ => None,
    });
    if let Some(c) = last_code {
        lines.push(format!("│ {c}"));
    } else if !buttons.is_empty() {
        lines.push(buttons_line(&buttons));
    } else if let Some(x) = texts.next() {
        lines.push(x);
    }
    lines.retain(|l| !l.trim().is_empty());
    lines.truncate(CARD_LINES);
    lines.iter().map(|l| truncate(l, max)).collect()
}

/// The lines (text parts of `PRIVMSG`s) a reply becomes: each at most `budget` bytes, at most
/// `max_lines` of them (the last then says how many more there were), a job card at most
/// three.
pub fn render(reply: &Reply, max_lines: usize, budget: usize) -> Vec<String> {
    if reply.card_for.is_some() {
        return card_lines(reply, budget);
    }
    let mut out: Vec<String> = logical_lines(reply).iter().flat_map(|l| split(l, budget)).collect();
    let max_lines = max_lines.max(2);
    if out.len() > max_lines {
        let more = out.len() - (max_lines - 1);
        out.truncate(max_lines - 1);
        out.push(format!("… ({more} more lines; see the web console)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::Button;

    #[test]
    fn sanitize_kills_line_breaks_and_controls() {
        assert_eq!(sanitize("ok\r\nQUIT :x"), "ok  QUIT :x");
        assert_eq!(sanitize("a\0b\x01VERSION\x01c\x7f"), "abVERSIONc");
        assert_eq!(sanitize("\x1b[31mred\x1b[0m \x1b]0;title\x07x"), "red x");
        assert_eq!(sanitize("tab\there"), "tab here");
    }

    #[test]
    fn split_fits_and_rejoins() {
        let s = "部署完成🚀👍🏽 ".repeat(200) + &"中".repeat(300);
        let parts = split(&s, 100);
        assert!(parts.iter().all(|p| p.len() <= 100 && !p.is_empty()));
        assert_eq!(parts.concat(), s);
        let ascii = "word ".repeat(100);
        let parts = split(&ascii, 50);
        assert!(parts.iter().all(|p| p.len() <= 50 && p.ends_with(' ')));
        assert_eq!(parts.concat(), ascii);
        // a skin-tone modifier stays with its emoji
        let e = "👍🏽".repeat(40);
        assert!(split(&e, 30).iter().all(|p| p.starts_with('👍')));
    }

    #[test]
    fn budget_leaves_room_for_the_prefix() {
        let b = text_budget("opsbot", "opsbot", "#ops");
        let line = format!(":opsbot!~opsbot@{} PRIVMSG #ops :{}\r\n", "h".repeat(63), "x".repeat(b));
        assert_eq!(line.len(), 512);
    }

    #[test]
    fn reply_is_compact_and_capped() {
        let r = Reply::new(Tone::Success)
            .heading("Deploy")
            .status(Tone::Success, "done")
            .fields(vec![("env".into(), "prod".into()), ("took".into(), "3s".into())])
            .table(vec!["a".into(), "b".into()], vec![vec!["1".into(), "2".into()]])
            .buttons(vec![Button {
                label: "Logs".into(),
                command: "logs 4".into(),
                tone: Tone::Info,
            }]);
        let l = render(&r, 12, 400);
        assert_eq!(
            l,
            vec![
                "\x02Deploy\x02 · ✔ done",
                "env: prod · took: 3s",
                "\x02a | b\x02",
                "1 | 2",
                "[Logs: logs 4]"
            ]
        );
        let long = Reply::new(Tone::Info).code((0..30).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n"));
        let l = render(&long, 12, 400);
        assert_eq!(l.len(), 12);
        assert_eq!(l[11], "… (19 more lines; see the web console)");
    }

    #[test]
    fn card_is_three_lines() {
        let r = Reply::new(Tone::Success)
            .status(Tone::Success, "#4 deploy succeeded")
            .para("deploy web to prod")
            .fields(vec![("requested by".into(), "ana".into()), ("duration".into(), "3s".into())])
            .code("a\nb\nlast line")
            .para("… 10 earlier lines")
            .buttons(vec![opsbot_core::Button {
                label: "Run again".into(),
                command: "run deploy".into(),
                tone: Tone::Info,
            }])
            .card(4);
        let l = render(&r, 12, 400);
        assert_eq!(
            l,
            vec![
                "✔ #4 deploy succeeded — deploy web to prod",
                "requested by: ana · duration: 3s",
                "│ last line"
            ]
        );
        // Without output, the commands to type.
        let r = Reply::new(Tone::Progress)
            .status(Tone::Progress, "#5 deploy running")
            .buttons(vec![opsbot_core::Button {
                label: "Cancel".into(),
                command: "cancel 5".into(),
                tone: Tone::Error,
            }])
            .card(5);
        assert_eq!(render(&r, 12, 400), vec!["▶ #5 deploy running", "[Cancel: cancel 5]"]);
    }
}
