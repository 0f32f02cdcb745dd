//! A [`Reply`] as Mattermost Markdown (the message of a post), and the splitting of long
//! messages under the server's post size limit.
//!
//! Text of a reply is plain text with `code spans` (what [`Block::Text`] promises), and much of
//! it repeats what people typed (parameter values, an unknown word): outside code spans every
//! Markdown character that could make an image (fetched by every reader's client), a link, a
//! heading, a table or emphasis is escaped with a backslash, and an unpaired backtick cannot open
//! a span. Group mentions (`@channel`, `@all`, `@here`, also followed by `.`, `-`, `:` or `_`,
//! which Mattermost still reads as the mention) are broken with a zero-width space so that text
//! repeated from a person can never notify a whole channel, and code blocks get a fence longer
//! than any run of backticks inside them so their content cannot close the block.
//! Buttons are not part of the text (they become message attachment actions, see the adapter);
//! forms show nothing (the reply's text already asks for the values).

use opsbot_core::{Block, Reply, Tone};

/// Characters (runes) a post's message may have at most (`PostMessageMaxRunesV2`, see
/// <https://developers.mattermost.com/integrate/reference/message-attachments/> and the API's
/// `Post` schema).
pub const MAX_RUNES: usize = 16_383;

/// The emoji a tone is shown with.
pub fn tone_emoji(t: Tone) -> &'static str {
    match t {
        Tone::Info => "ℹ️",
        Tone::Progress => "⏳",
        Tone::Success => "✅",
        Tone::Warning => "⚠️",
        Tone::Error => "❌",
    }
}

/// Breaks `@channel`, `@all` and `@here` (any case) with a zero-width space after the `@`, so
/// Mattermost does not treat them as group mentions; everything else is kept. Mattermost splits
/// words on `.`, `-` and `:` and trims those and `_` at a word's end, so `@here-now`,
/// `@channel.` and `@all_` notify too: only a letter or digit after the word makes it a name.
pub fn defuse(text: &str) -> String {
    const GROUPS: [&str; 3] = ["channel", "all", "here"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        out.push('@');
        let after = &rest[i + 1..];
        let hit = GROUPS.iter().any(|g| {
            after.get(..g.len()).is_some_and(|h| h.eq_ignore_ascii_case(g)) && !after[g.len()..].starts_with(|c: char| c.is_alphanumeric())
        });
        if hit {
            out.push('\u{200B}');
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Control characters other than line breaks and tabs removed.
fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect()
}

/// Plain text with Markdown's active characters escaped (a backslash before ASCII punctuation
/// always shows the character itself), and no more than that so the text stays readable where
/// it is shown raw (notifications): `\\`, `[`, `]` (links, images), `*`, `~`, `<` and a
/// backtick always; `_` next to anything but a letter or digit (`db_migrate` is no emphasis);
/// at the start of a line `#`, `-`, `+`, `=` when they could start a heading, a list or a rule,
/// and `>`; `|` in table cells. `line_start`: whether `out` is at the start of a line (kept up
/// to date).
fn escape_plain(text: &str, out: &mut String, table: bool, line_start: &mut bool) {
    let chars: Vec<char> = text.chars().collect();
    let mut prev: Option<char> = out.chars().last();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let escape = match c {
            '\\' | '[' | ']' | '*' | '~' | '<' | '`' => true,
            '_' => !(prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphanumeric)),
            '|' => table,
            '>' => *line_start,
            '#' | '-' | '+' | '=' => *line_start && next.is_none_or(|n| n.is_whitespace() || n == c),
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
        if c == '\n' {
            *line_start = true;
        } else if !c.is_whitespace() {
            *line_start = false;
        }
        prev = Some(c);
    }
}

/// Plain text with `code spans`, as Markdown: escaped outside the spans (see
/// [`escape_plain`]), group mentions defused everywhere; an unpaired backtick is shown as one.
/// `table`: `|` is escaped inside spans too (a table cell ends at any `|`). `block`: the text
/// starts a line (a paragraph), else it follows other Markdown on its line.
fn inline(text: &str, table: bool, block: bool) -> String {
    let text = defuse(&clean(text));
    let parts: Vec<&str> = text.split('`').collect();
    let paired = parts.len() % 2 == 1;
    let mut out = String::with_capacity(text.len() + 16);
    let mut line_start = block;
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && (paired || i + 1 < parts.len()) {
            // An empty pair shows nothing (two backticks in a row could merge with the next span).
            if !part.is_empty() {
                out.push('`');
                out.push_str(&if table { part.replace('|', "\\|") } else { part.to_string() });
                out.push('`');
                line_start = false;
            }
        } else {
            if i % 2 == 1 {
                out.push_str("\\`");
                line_start = false;
            }
            escape_plain(part, &mut out, table, &mut line_start);
        }
    }
    out
}

/// Text for one line (a table cell, a heading): line breaks become spaces, then [`inline`].
fn one_line(text: &str, table: bool) -> String {
    inline(&text.replace(['\n', '\r', '\t'], " "), table, false)
}

/// A code span of its own (a command to type): backticks inside become `'`.
fn code_span(text: &str) -> String {
    let t = defuse(&clean(text)).replace(['\n', '\r', '\t'], " ").replace('`', "'");
    format!("`{t}`")
}

fn safe_url(url: &str) -> bool {
    let l = url.trim().to_ascii_lowercase();
    (l.starts_with("https://") || l.starts_with("http://") || l.starts_with("mailto:"))
        && !url.contains(|c: char| c.is_whitespace() || c.is_control())
}

/// A URL inside `(...)` of a Markdown link: parentheses, `<>` and `\` (which would escape
/// the closing parenthesis) percent-encoded.
fn link_target(url: &str) -> String {
    url.trim()
        .replace('\\', "%5C")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('<', "%3C")
        .replace('>', "%3E")
}

/// Link text inside `[...]`.
fn link_text(text: &str) -> String {
    one_line(text, false)
}

/// A fenced code block whose fence cannot be closed by its content.
fn code_block(text: &str) -> String {
    let text = clean(text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let fence = "`".repeat((longest + 1).max(3));
    let body = text.trim_end_matches('\n');
    format!("{fence}\n{body}\n{fence}")
}

/// The message of a reply. Images that are `http(s)` URLs are shown inline (`![alt](url)`);
/// other images (a `data:` URL is uploaded as a file by the adapter) are left out.
/// `buttons_as_text`: without a callback URL the buttons are listed as the commands to type.
pub fn render(reply: &Reply, buttons_as_text: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    for b in &reply.blocks {
        match b {
            Block::Heading { text } => parts.push(format!("#### {}", one_line(text, false))),
            Block::Text { text } => parts.push(inline(text, false, true)),
            Block::Status { tone, label } => parts.push(format!("{} **{}**", tone_emoji(*tone), one_line(label, false))),
            Block::Fields { fields } => {
                let lines: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("**{}:** {}", one_line(k, false), one_line(v, false)))
                    .collect();
                parts.push(lines.join("  \n"));
            }
            Block::Code { text } => parts.push(code_block(text)),
            Block::Table { headers, rows } => {
                if headers.is_empty() {
                    continue;
                }
                let cols = headers.len();
                let row = |cells: &[String]| {
                    let mut r: Vec<String> = cells.iter().take(cols).map(|c| one_line(c, true)).collect();
                    r.resize(cols, String::new());
                    format!("| {} |", r.join(" | "))
                };
                let mut t = vec![row(headers), format!("|{}", " --- |".repeat(cols))];
                t.extend(rows.iter().map(|r| row(r)));
                parts.push(t.join("\n"));
            }
            Block::Buttons { buttons } => {
                if buttons_as_text && !buttons.is_empty() {
                    let b: Vec<String> = buttons
                        .iter()
                        .map(|b| format!("{}: {}", one_line(&b.label, false), code_span(&b.command)))
                        .collect();
                    parts.push(b.join(" · "));
                }
            }
            Block::Image { url, alt } => {
                if safe_url(url) && !url.trim().to_ascii_lowercase().starts_with("mailto:") {
                    parts.push(format!("![{}]({})", link_text(alt), link_target(url)));
                }
            }
            Block::Link { url, text } => {
                if safe_url(url) {
                    parts.push(format!("[{}]({})", link_text(text), link_target(url)));
                } else {
                    parts.push(format!("{}: {}", one_line(text, false), one_line(url, false)));
                }
            }
            Block::Form(_) => {}
        }
    }
    parts.retain(|p| !p.trim().is_empty());
    parts.join("\n\n")
}

/// `text` cut into messages of at most `max` characters, on line breaks where possible, in
/// order. A cut inside a fenced code block closes the block and opens it again in the next part,
/// so every part renders on its own.
pub fn split(text: &str, max: usize) -> Vec<String> {
    if text.chars().count() <= max {
        return if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![text.to_string()]
        };
    }
    // Room kept for a closing and a reopening fence.
    let budget = max.saturating_sub(40).max(16);
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    let mut fence: Option<String> = None;
    let flush = |cur: &mut String, cur_len: &mut usize, out: &mut Vec<String>, fence: &Option<String>| {
        if let Some(f) = fence {
            cur.push_str(f);
            cur.push('\n');
        }
        let part = cur.trim_end_matches('\n').to_string();
        if !part.trim().is_empty() && part.trim() != fence.as_deref().map(|f| format!("{f}\n{f}")).unwrap_or_default() {
            out.push(part);
        }
        cur.clear();
        *cur_len = 0;
        if let Some(f) = fence {
            cur.push_str(f);
            cur.push('\n');
            *cur_len = f.chars().count() + 1;
        }
    };
    for line in text.split_inclusive('\n') {
        let mut line = line.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        let trimmed = line.trim_end();
        match &fence {
            None if trimmed.starts_with("```") => {
                let n = trimmed.chars().take_while(|c| *c == '`').count();
                fence = Some("`".repeat(n));
                // The opening line itself goes through the normal path below, but must not be
                // closed by the flush that makes room for it.
                if cur_len + line.chars().count() > budget {
                    let open = fence.take();
                    flush(&mut cur, &mut cur_len, &mut out, &None);
                    fence = open;
                }
                cur_len += line.chars().count();
                cur.push_str(&line);
                continue;
            }
            Some(f) if trimmed == f.as_str() => {
                cur_len += line.chars().count();
                cur.push_str(&line);
                fence = None;
                continue;
            }
            _ => {}
        }
        // A line longer than a whole part is cut on character boundaries.
        let mut chars: Vec<char> = line.chars().collect();
        while !chars.is_empty() {
            let room = budget.saturating_sub(cur_len);
            if chars.len() <= room {
                cur_len += chars.len();
                cur.extend(chars.drain(..));
            } else if cur_len > fence.as_ref().map(|f| f.chars().count() + 1).unwrap_or(0) && chars.len() <= budget / 2 {
                flush(&mut cur, &mut cur_len, &mut out, &fence);
            } else {
                let take = room.max(1);
                cur.extend(chars.drain(..take.min(chars.len())));
                cur.push('\n');
                cur_len = budget;
                flush(&mut cur, &mut cur_len, &mut out, &fence);
            }
        }
    }
    if fence.is_some() {
        // An unclosed fence in the input: the last part stays as the input had it.
        fence = None;
    }
    flush(&mut cur, &mut cur_len, &mut out, &fence);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::Button;

    #[test]
    fn group_mentions_are_defused() {
        assert_eq!(
            defuse("hi @channel and @ALL, @here!"),
            "hi @\u{200B}channel and @\u{200B}ALL, @\u{200B}here!"
        );
        assert_eq!(
            defuse("@channels @allison @here2 ana@example.com"),
            "@channels @allison @here2 ana@example.com"
        );
        assert_eq!(
            defuse("@here-x @channel. @all: @channel_"),
            "@\u{200B}here-x @\u{200B}channel. @\u{200B}all: @\u{200B}channel_"
        );
        assert_eq!(defuse("@"), "@");
    }

    #[test]
    fn blocks_render_as_markdown() {
        let r = Reply::new(Tone::Success)
            .heading("Deploy\n@channel")
            .status(Tone::Success, "done")
            .fields(vec![("job".into(), "deploy".into())])
            .table(vec!["a".into(), "b".into()], vec![vec!["x|y".into()]])
            .code("```\nnot closed");
        let md = render(&r, false);
        assert!(md.contains("#### Deploy @\u{200B}channel"), "{md}");
        assert!(md.contains("✅ **done**"));
        assert!(md.contains("**job:** deploy"));
        assert!(md.contains("| a | b |\n| --- | --- |\n| x\\|y |  |"), "{md}");
        assert!(md.contains("````\n```\nnot closed\n````"), "{md}");
    }

    #[test]
    fn text_is_plain_with_code_spans() {
        assert_eq!(
            inline("run `deploy *x*` with *x* [a](b) #1 a|b db_migrate _x_", false, true),
            "run `deploy *x*` with \\*x\\* \\[a\\](b) #1 a|b db_migrate \\_x\\_"
        );
        // A value that closes the engine's code span early stays text, its image escaped.
        assert_eq!(
            inline("I don't know `a`![y](https://e/p.png)`.", false, true),
            "I don't know `a`!\\[y\\](https://e/p.png)\\`."
        );
        assert_eq!(
            inline("- x\n+ y\n===\n# h\n#7 ok\n> q\n-1", false, true),
            "\\- x\n\\+ y\n\\===\n\\# h\n#7 ok\n\\> q\n-1"
        );
        assert_eq!(inline("``` rust", false, true), "\\` rust");
        assert_eq!(inline("# a | b", true, false), "# a \\| b");
    }

    #[test]
    fn buttons_and_links() {
        let mut r = Reply::new(Tone::Info).buttons(vec![Button {
            label: "Cancel".into(),
            command: "cancel 4".into(),
            tone: Tone::Error,
        }]);
        r.blocks.push(Block::Image {
            url: "https://e.com/a.png".into(),
            alt: "graph".into(),
        });
        r.blocks.push(Block::Link {
            url: "javascript:alert(1)".into(),
            text: "x".into(),
        });
        assert!(!render(&r, false).contains("cancel 4"));
        let md = render(&r, true);
        assert!(md.contains("Cancel: `cancel 4`"));
        assert!(md.contains("![graph](https://e.com/a.png)"));
        assert!(md.contains("x: javascript:alert(1)"), "{md}");
        assert_eq!(link_target("https://e.com/a\\)b(c"), "https://e.com/a%5C%29b%28c");
    }

    #[test]
    fn split_keeps_order_and_limit() {
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let parts = split(&text, 1000);
        assert!(parts.len() > 30);
        assert!(parts.iter().all(|p| p.chars().count() <= 1000));
        let joined = parts.join("\n");
        assert_eq!(joined.lines().collect::<Vec<_>>(), text.lines().collect::<Vec<_>>());
    }

    #[test]
    fn split_reopens_code_fences() {
        let text = format!("head\n```\n{}```\ntail", "x\n".repeat(3000));
        let parts = split(&text, 1000);
        assert!(parts.len() > 5);
        for p in &parts {
            assert!(p.chars().count() <= 1000);
            assert_eq!(p.matches("```").count() % 2, 0, "balanced fences in {p:?}");
        }
        assert!(parts.last().is_some_and(|p| p.ends_with("tail")));
    }

    #[test]
    fn split_cuts_huge_lines() {
        let text = "é".repeat(5000);
        let parts = split(&text, 1000);
        assert!(parts.iter().all(|p| p.chars().count() <= 1000));
        assert_eq!(parts.concat().replace('\n', ""), text);
    }
}
