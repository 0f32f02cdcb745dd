//! Replies as Slack messages (Block Kit + `mrkdwn` fallback text), and Slack's message markup
//! read back as plain text for the engine.
//!
//! Limits (<https://docs.slack.dev/reference/block-kit/blocks>, `chat.postMessage`): 50 blocks
//! per message, 3,000 characters per section text, 10 fields per section, 2,000 characters per
//! field, 150 characters per header, 25 elements per actions block, 75 characters per button
//! label, 2,000 per button value; a message's `text` is truncated by Slack beyond 40,000
//! characters. Text is escaped (`&`, `<`, `>`) as Slack asks
//! (<https://docs.slack.dev/messaging/formatting-message-text#escaping>), so nothing a person
//! typed can become a `<!channel>` / `<!here>` / `<@U…>` ping or a link.

use opsbot_core::{Block, Form, Reply, Tone};
use serde_json::{Value, json};

/// Blocks per message (Slack's limit).
pub const MAX_BLOCKS: usize = 50;
/// Characters of a section's text (Slack's limit is 3,000; some room for the code fences).
pub const MAX_SECTION: usize = 2_900;
/// Characters of a message's fallback `text` (Slack truncates beyond 40,000).
pub const MAX_TEXT: usize = 39_000;
/// Characters of a button's `value`.
pub const MAX_VALUE: usize = 2_000;
/// `action_id` prefix of a command button.
pub const BUTTON_PREFIX: &str = "opsbot_btn_";
/// `action_id` prefix of a form's "Fill in…" button.
pub const FORM_PREFIX: &str = "opsbot_form_";

/// Escapes `&`, `<` and `>` for Slack's message text.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Truncates to at most `max` characters (with `…` when cut).
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn plain_text(text: &str, max: usize) -> Value {
    let t = if text.trim().is_empty() { " " } else { text };
    json!({"type": "plain_text", "text": truncate(t, max), "emoji": true})
}

/// Splits text at line ends (a longer line at a character boundary) into pieces whose
/// *escaped* length is at most `max` characters.
pub fn chunks(text: &str, max: usize) -> Vec<String> {
    let cost = |s: &str| escape(s).chars().count();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_cost = 0;
    for line in text.split_inclusive('\n') {
        let c = cost(line);
        if c > max {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            let mut piece = String::new();
            let mut pc = 0;
            for ch in line.chars() {
                let cc = escape(ch.encode_utf8(&mut [0; 4])).len();
                if pc + cc > max {
                    out.push(std::mem::take(&mut piece));
                    pc = 0;
                }
                piece.push(ch);
                pc += cc;
            }
            cur = piece;
            cur_cost = pc;
            continue;
        }
        if cur_cost + c > max {
            out.push(std::mem::take(&mut cur));
            cur_cost = 0;
        }
        cur.push_str(line);
        cur_cost += c;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|c| c.trim_end_matches('\n').to_string())
        .filter(|c| !c.trim().is_empty())
        .collect()
}

/// One rendered block and the plain text it stands for (for the fallback `text`).
#[derive(Clone, Debug)]
pub struct Part {
    /// The Block Kit block.
    pub block: Value,
    /// Its text for notifications and clients without blocks (already escaped).
    pub text: String,
}

/// A `data:` image to upload after the message.
#[derive(Clone, Debug, PartialEq)]
pub struct Upload {
    /// The `data:` URL.
    pub url: String,
    /// Its alt text / title.
    pub alt: String,
}

/// One Slack message: blocks and fallback text.
#[derive(Clone, Debug, Default)]
pub struct Message {
    /// Block Kit blocks (at most [`MAX_BLOCKS`]).
    pub blocks: Vec<Value>,
    /// The `text` (escaped, at most [`MAX_TEXT`] characters).
    pub text: String,
}

/// What a reply becomes on Slack.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    /// The messages, in order (usually one).
    pub messages: Vec<Message>,
    /// `data:` images to upload after them.
    pub uploads: Vec<Upload>,
    /// Forms of the reply's "Fill in…" buttons, by their `action_id`.
    pub forms: Vec<(String, Form)>,
}

fn emoji(tone: Tone) -> &'static str {
    match tone {
        Tone::Info => ":information_source:",
        Tone::Progress => ":hourglass_flowing_sand:",
        Tone::Success => ":white_check_mark:",
        Tone::Warning => ":warning:",
        Tone::Error => ":x:",
    }
}

fn section(text: String, plain: String) -> Part {
    Part {
        block: json!({"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": true}}),
        text: plain,
    }
}

/// `text` with a zero-width space between any two backticks in a row, so that nothing in it
/// (four backticks, ``` split by a replacement) can close a code fence early.
fn unfence(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut prev = None;
    for c in text.chars() {
        if c == '`' && prev == Some('`') {
            out.push('\u{200b}');
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

fn code_parts(text: &str) -> Vec<Part> {
    // Backticks in a row inside would close the fence early, and what follows would be read
    // as formatting (a fake status line from a job's output).
    let safe = unfence(text);
    chunks(&safe, MAX_SECTION - 8)
        .into_iter()
        .map(|c| {
            let body = format!("```\n{}\n```", escape(&c));
            section(body.clone(), body)
        })
        .collect()
}

/// Whether a URL may become a link: `http(s)` or `mailto`, no characters that end Slack's
/// `<url|label>` markup.
pub fn linkable(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        && url.len() <= 3000
        && !url
            .chars()
            .any(|c| c == '|' || c == '<' || c == '>' || c.is_whitespace() || c.is_control())
}

/// Renders a reply; `form_value` gives the `value` of a form's button (the form as JSON, or a
/// reference when that is too long) — see the adapter.
pub fn render(reply: &Reply, form_value: &mut dyn FnMut(&Form) -> String) -> Rendered {
    let mut parts: Vec<Part> = Vec::new();
    let mut out = Rendered::default();
    let mut button_no = 0usize;
    for b in &reply.blocks {
        match b {
            Block::Heading { text } => {
                if text.chars().count() <= 150 && !text.trim().is_empty() {
                    parts.push(Part {
                        block: json!({"type": "header", "text": plain_text(text, 150)}),
                        text: format!("*{}*", escape(text)),
                    });
                } else {
                    for c in chunks(text, MAX_SECTION - 4) {
                        let t = format!("*{}*", escape(&c));
                        parts.push(section(t.clone(), t));
                    }
                }
            }
            Block::Text { text } => {
                for c in chunks(text, MAX_SECTION) {
                    let t = escape(&c);
                    parts.push(section(t.clone(), t));
                }
            }
            Block::Fields { fields } => {
                for group in fields.chunks(10) {
                    let f: Vec<Value> = group
                        .iter()
                        .map(|(k, v)| json!({"type": "mrkdwn", "verbatim": true, "text": truncate(&format!("*{}*\n{}", escape(k), escape(v)), 2000)}))
                        .collect();
                    let text = group
                        .iter()
                        .map(|(k, v)| format!("*{}*: {}", escape(k), escape(v)))
                        .collect::<Vec<_>>()
                        .join("\n");
                    parts.push(Part {
                        block: json!({"type": "section", "fields": f}),
                        text,
                    });
                }
            }
            Block::Code { text } => parts.extend(code_parts(text)),
            Block::Table { .. } => {
                let one = Reply {
                    blocks: vec![b.clone()],
                    tone: None,
                    card_for: None,
                };
                parts.extend(code_parts(crate::plain(&one).trim_end()));
            }
            Block::Status { tone, label } => {
                let t = format!("{} *{}*", emoji(*tone), escape(&truncate(label, 2900)));
                parts.push(Part {
                    block: json!({"type": "context", "elements": [{"type": "mrkdwn", "text": t, "verbatim": true}]}),
                    text: t,
                });
            }
            Block::Buttons { buttons } => {
                let mut elements = Vec::new();
                let mut labels = Vec::new();
                for btn in buttons {
                    if btn.command.chars().count() > MAX_VALUE {
                        tracing::warn!("a button's command is longer than Slack allows ({MAX_VALUE} characters); left out");
                        continue;
                    }
                    button_no += 1;
                    let mut e = json!({
                        "type": "button",
                        "action_id": format!("{BUTTON_PREFIX}{button_no}"),
                        "text": plain_text(&btn.label, 75),
                        "value": btn.command,
                    });
                    match btn.tone {
                        Tone::Success | Tone::Progress => e["style"] = json!("primary"),
                        Tone::Error => e["style"] = json!("danger"),
                        _ => {}
                    }
                    elements.push(e);
                    labels.push(format!("[{}]", escape(&btn.label)));
                }
                for (i, group) in elements.chunks(25).enumerate() {
                    let text = if i == 0 { labels.join(" ") } else { String::new() };
                    parts.push(Part {
                        block: json!({"type": "actions", "elements": group}),
                        text,
                    });
                }
            }
            Block::Image { url, alt } => {
                let lower = url.to_ascii_lowercase();
                if lower.starts_with("data:") {
                    out.uploads.push(Upload {
                        url: url.clone(),
                        alt: alt.clone(),
                    });
                } else if (lower.starts_with("https://") || lower.starts_with("http://")) && url.len() <= 3000 {
                    let alt_text = if alt.trim().is_empty() { "image" } else { alt.as_str() };
                    parts.push(Part {
                        block: json!({"type": "image", "image_url": url, "alt_text": truncate(alt_text, 2000)}),
                        text: format!("{} {}", escape(alt_text), escape(url)),
                    });
                } else {
                    let t = escape(&format!("{alt} <{url}>"));
                    parts.push(section(t.clone(), t));
                }
            }
            Block::Link { url, text } => {
                let t = if linkable(url) {
                    let label = escape(text).replace('|', "¦");
                    format!("<{url}|{label}>")
                } else {
                    escape(&format!("{text} <{url}>"))
                };
                parts.push(section(t.clone(), t));
            }
            Block::Form(form) => {
                button_no += 1;
                let id = format!("{FORM_PREFIX}{button_no}");
                let value = form_value(form);
                parts.push(Part {
                    block: json!({"type": "actions", "elements": [{
                        "type": "button",
                        "action_id": id,
                        "text": plain_text("Fill in…", 75),
                        "value": value,
                        "style": "primary",
                    }]}),
                    text: String::new(),
                });
                out.forms.push((id, form.clone()));
            }
        }
    }
    out.messages = pack(parts);
    out
}

/// Packs parts into messages of at most [`MAX_BLOCKS`] blocks and [`MAX_TEXT`] characters of
/// text, keeping their order.
fn pack(parts: Vec<Part>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    let mut cur = Message::default();
    let mut cur_len = 0usize;
    for p in parts {
        let len = p.text.chars().count() + 1;
        if !cur.blocks.is_empty() && (cur.blocks.len() >= MAX_BLOCKS || cur_len + len > MAX_TEXT) {
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
        if !p.text.is_empty() {
            if !cur.text.is_empty() {
                cur.text.push('\n');
            }
            cur.text.push_str(&p.text);
            cur_len += len;
        }
        cur.blocks.push(p.block);
    }
    if !cur.blocks.is_empty() {
        out.push(cur);
    }
    for m in &mut out {
        if m.text.trim().is_empty() {
            m.text = "…".into();
        }
    }
    out
}

/// Slack's message markup read back as the plain text a person typed: `<@U1|name>` →
/// `@U1`, `<#C1|ops>` → `#ops`, `<!here>` → `@here`, `<https://x|label>` → `label` (what was
/// typed; Slack makes links of it), `<https://x>` → `https://x`, then `&lt; &gt; &amp;`.
/// (<https://docs.slack.dev/messaging/formatting-message-text#retrieving-messages>)
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        if let Some(id) = target.strip_prefix('@') {
            out.push('@');
            out.push_str(id);
        } else if let Some(id) = target.strip_prefix('#') {
            out.push('#');
            out.push_str(label.unwrap_or(id));
        } else if let Some(special) = target.strip_prefix('!') {
            match label {
                Some(l) => out.push_str(l),
                None => {
                    let word = special.split('^').next().unwrap_or(special);
                    out.push('@');
                    out.push_str(word);
                }
            }
        } else {
            out.push_str(label.unwrap_or(target));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Strips a leading mention of `bot` (`<@BOT>` or `<@BOT|name>`, then `:`/`,`) from raw
/// Slack text; `None` when the text does not start with it.
pub fn strip_leading_mention<'a>(text: &'a str, bot: &str) -> Option<&'a str> {
    let t = text.trim_start();
    let rest = t.strip_prefix("<@")?.strip_prefix(bot)?;
    let rest = if let Some(r) = rest.strip_prefix('>') {
        r
    } else {
        let r = rest.strip_prefix('|')?;
        &r[r.find('>')? + 1..]
    };
    let rest = rest.trim_start();
    Some(rest.strip_prefix([':', ',']).unwrap_or(rest).trim_start())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::Button;

    #[test]
    fn escapes_and_never_pings() {
        let r = Reply::text(Tone::Info, "<!channel> & <@U1> a>b");
        let out = render(&r, &mut |_| String::new());
        let m = &out.messages[0];
        assert_eq!(m.text, "&lt;!channel&gt; &amp; &lt;@U1&gt; a&gt;b");
        assert_eq!(m.blocks[0]["text"]["text"], "&lt;!channel&gt; &amp; &lt;@U1&gt; a&gt;b");
    }

    #[test]
    fn job_output_cannot_close_the_code_fence() {
        for evil in ["````\n:white_check_mark: *deployed*", "```` ```", "a``\n`b", "`````"] {
            let out = render(&Reply::new(Tone::Info).code(evil), &mut |_| String::new());
            for m in &out.messages {
                for b in &m.blocks {
                    let t = b["text"]["text"].as_str().unwrap();
                    let inner = t.strip_prefix("```\n").unwrap().strip_suffix("\n```").unwrap();
                    assert!(!inner.contains("``"), "{evil:?} → {t:?}");
                }
            }
        }
    }

    #[test]
    fn decodes_markup() {
        assert_eq!(
            decode("deploy <https://a.example/x?y=1&amp;z=2> to <#C1|ops> for <@U2|ana> &lt;now&gt; <!here> <http://b.example|b.example>"),
            "deploy https://a.example/x?y=1&z=2 to #ops for @U2 <now> @here b.example"
        );
        assert_eq!(decode("broken <unclosed"), "broken <unclosed");
        assert_eq!(decode("<!subteam^S1|@oncall> hi"), "@oncall hi");
    }

    #[test]
    fn leading_mention() {
        assert_eq!(strip_leading_mention("<@UBOT> whoami", "UBOT"), Some("whoami"));
        assert_eq!(strip_leading_mention(" <@UBOT|opsbot>: status", "UBOT"), Some("status"));
        assert_eq!(strip_leading_mention("<@UBOTX> whoami", "UBOT"), None);
        assert_eq!(strip_leading_mention("hi <@UBOT>", "UBOT"), None);
    }

    #[test]
    fn long_text_is_split_but_kept_whole() {
        let text: String = (0..4000).map(|i| format!("line {i} <&>\n")).collect();
        let r = Reply::new(Tone::Info).code(text.clone());
        let out = render(&r, &mut |_| String::new());
        assert!(out.messages.len() > 1);
        let mut joined = String::new();
        for m in &out.messages {
            assert!(m.blocks.len() <= MAX_BLOCKS);
            assert!(m.text.chars().count() <= MAX_TEXT);
            for b in &m.blocks {
                let t = b["text"]["text"].as_str().unwrap();
                assert!(t.chars().count() <= 3000);
                joined.push_str(t.trim_start_matches("```\n").trim_end_matches("\n```"));
                joined.push('\n');
            }
        }
        assert_eq!(joined.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"), text);
    }

    #[test]
    fn buttons_and_forms() {
        let r = Reply::new(Tone::Info).buttons(vec![
            Button {
                label: "Cancel".into(),
                command: "cancel 4".into(),
                tone: Tone::Error,
            },
            Button {
                label: "Retry".into(),
                command: "retry 4".into(),
                tone: Tone::Success,
            },
        ]);
        let out = render(&r, &mut |_| String::new());
        let els = &out.messages[0].blocks[0]["elements"];
        assert_eq!(els[0]["value"], "cancel 4");
        assert_eq!(els[0]["style"], "danger");
        assert_eq!(els[1]["style"], "primary");
        assert_ne!(els[0]["action_id"], els[1]["action_id"]);
    }
}
