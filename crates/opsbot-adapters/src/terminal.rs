//! The terminal chat: one person at a keyboard (or a script on stdin) talking to the bot.
//!
//! Every line is a direct message from the configured user in the place `terminal/shell`.
//! Replies are rendered as readable lines: with colours when stdout is a terminal (and
//! `NO_COLOR` is unset), plain when piped, so scripted sessions are easy to read and grep.

use async_trait::async_trait;
use opsbot_core::{Adapter, AdapterContext, Block, Capabilities, Envelope, Place, Posted, Reply, SendError, Tone, UserId};
use std::io::Write;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Platform name of the terminal adapter.
pub const PLATFORM: &str = "terminal";
/// Longest input line kept, in bytes; the rest of a longer line is dropped (the engine then
/// refuses the over-long message with a clear answer).
pub const MAX_LINE: usize = 1024 * 1024;

/// The terminal adapter.
pub struct TerminalAdapter {
    user: UserId,
    place: Place,
    color: bool,
    prompt: bool,
}

impl TerminalAdapter {
    /// A terminal chat for `user`; `color` for ANSI colours, `prompt` to show `> ` prompts.
    pub fn new(user: &str, color: bool, prompt: bool) -> Self {
        Self {
            user: UserId::new(PLATFORM, user),
            place: Place::new(PLATFORM, "shell"),
            color,
            prompt,
        }
    }

    /// The one place this adapter talks in.
    pub fn place(&self) -> &Place {
        &self.place
    }

    /// The envelope for one typed line.
    pub fn envelope(&self, line: &str) -> Envelope {
        let mut e = Envelope::direct(self.user.clone(), self.place.clone(), line);
        e.display_name = Some(self.user.id.clone());
        e
    }

    /// Prints the prompt (interactive sessions only).
    pub fn show_prompt(&self) {
        if self.prompt {
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "{}", self.paint("> ", "1"));
            let _ = out.flush();
        }
    }

    /// Prints a reply now (clearing the prompt line first when interactive).
    pub fn print(&self, reply: &Reply) {
        let text = render(reply, self.color);
        let mut out = std::io::stdout().lock();
        if self.prompt {
            let _ = write!(out, "\r\x1b[K");
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    fn paint(&self, s: &str, code: &str) -> String {
        paint(s, code, self.color)
    }
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
}

fn tone_mark(t: Tone) -> (&'static str, &'static str) {
    match t {
        Tone::Info => ("•", "36"),
        Tone::Progress => ("▶", "34"),
        Tone::Success => ("✔", "32"),
        Tone::Warning => ("!", "33"),
        Tone::Error => ("✘", "31"),
    }
}

/// Renders a reply as terminal lines.
pub fn render(reply: &Reply, color: bool) -> String {
    let mut out: Vec<String> = Vec::new();
    for b in &reply.blocks {
        match b {
            Block::Heading { text } => out.push(paint(text, "1", color)),
            Block::Text { text } => out.push(code_spans(text, color)),
            Block::Status { tone, label } => {
                let (mark, code) = tone_mark(*tone);
                out.push(paint(&format!("{mark} {label}"), &format!("1;{code}"), color));
            }
            Block::Fields { fields } => {
                let w = fields.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
                for (k, v) in fields {
                    let pad = " ".repeat(w - k.chars().count());
                    out.push(format!("  {}{pad}  {}", paint(k, "2", color), code_spans(v, color)));
                }
            }
            Block::Code { text } => {
                for line in text.lines() {
                    out.push(format!("  {} {line}", paint("│", "2", color)));
                }
            }
            Block::Table { headers, rows } => {
                let cols = headers.len();
                let mut w = vec![0usize; cols];
                for r in std::iter::once(headers).chain(rows.iter()) {
                    for (i, c) in r.iter().enumerate().take(cols) {
                        w[i] = w[i].max(display_width(c));
                    }
                }
                let fmt_row = |r: &Vec<String>| {
                    let cells: Vec<String> = r
                        .iter()
                        .enumerate()
                        .take(cols)
                        .map(|(i, c)| format!("{c}{}", " ".repeat(w[i] - display_width(c))))
                        .collect();
                    format!("  {}", cells.join("  ").trim_end())
                };
                out.push(paint(&fmt_row(headers), "1", color));
                for r in rows {
                    out.push(fmt_row(r));
                }
            }
            Block::Buttons { buttons } => {
                let b: Vec<String> = buttons.iter().map(|b| format!("[{}: {}]", b.label, b.command)).collect();
                out.push(paint(&format!("  {}", b.join(" ")), "2", color));
            }
            Block::Image { url, alt } => out.push(format!("  {alt}: {url}")),
            Block::Link { url, text } => out.push(format!("  {text}: {url}")),
            // The reply's text asks for the values already.
            Block::Form(_) => {}
        }
    }
    out.join("\n")
}

/// Columns a string takes in a terminal: East Asian wide characters take two.
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6)
}

fn code_spans(text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&paint(part, "36", true));
        } else {
            out.push_str(part);
        }
    }
    out
}

#[async_trait]
impl Adapter for TerminalAdapter {
    fn name(&self) -> &str {
        PLATFORM
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            direct: true,
            ..Default::default()
        }
    }

    /// Reads stdin line by line until end of input.
    async fn run(&self, ctx: &AdapterContext) -> Result<(), String> {
        let mut reader = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
        ctx.connected();
        self.show_prompt();
        loop {
            let line = match read_bounded_line(&mut reader).await {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("cannot read the terminal: {e}")),
            };
            if line.trim().is_empty() {
                self.show_prompt();
                continue;
            }
            if ctx.inbox.send(self.envelope(&line)).await.is_err() {
                return Ok(());
            }
        }
    }

    async fn post(&self, _place: &Place, reply: &Reply) -> Result<Posted, SendError> {
        self.print(reply);
        Ok(Posted::default())
    }
}

/// Reads one line, keeping at most [`MAX_LINE`] bytes of it (memory stays bounded for any
/// input). Invalid UTF-8 is replaced. `None` at end of input.
pub async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Option<String>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut any = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(any.then(|| finish_line(buf)));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(take);
        if done {
            return Ok(Some(finish_line(buf)));
        }
    }
}

fn finish_line(mut buf: Vec<u8>) -> String {
    while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        buf.pop();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_lines() {
        let mut input: Vec<u8> = b"hello\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\n\xff\xfe ok\nlast");
        let mut r = BufReader::new(&input[..]);
        assert_eq!(read_bounded_line(&mut r).await.unwrap().unwrap(), "hello");
        assert_eq!(read_bounded_line(&mut r).await.unwrap().unwrap().len(), MAX_LINE);
        assert_eq!(read_bounded_line(&mut r).await.unwrap().unwrap(), "\u{FFFD}\u{FFFD} ok");
        assert_eq!(read_bounded_line(&mut r).await.unwrap().unwrap(), "last");
        assert_eq!(read_bounded_line(&mut r).await.unwrap(), None);
    }

    #[test]
    fn renders_plain_without_escapes() {
        let r = Reply::new(Tone::Success)
            .status(Tone::Success, "#1 deploy succeeded")
            .fields(vec![("duration".into(), "1.2 s".into())])
            .table(vec!["a".into(), "b".into()], vec![vec!["部署".into(), "x".into()]])
            .code("line1\nline2");
        let s = render(&r, false);
        assert!(!s.contains('\x1b'));
        assert!(s.contains("✔ #1 deploy succeeded"));
        assert!(s.contains("  │ line2"));
        assert!(render(&r, true).contains("\x1b[1;32m"));
    }
}
