//! A [`Reply`] as Matrix HTML (`org.matrix.custom.html`, the subset clients render) and as
//! the plain `body` that goes with it. Every piece of text is HTML-escaped; links keep only
//! `http`, `https` and `mailto` targets.

use opsbot_core::{Block, Reply, Tone};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Text with `code spans` as `<code>` and line breaks as `<br>`, escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let parts: Vec<&str> = text.split('`').collect();
    // An odd number of backticks leaves the last one literal.
    let paired = parts.len() % 2 == 1;
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && (paired || i + 1 < parts.len()) {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            if i % 2 == 1 {
                out.push('`');
            }
            out.push_str(&escape(part));
        }
    }
    out.replace('\n', "<br>")
}

/// The emoji and colour a tone is shown with.
pub fn tone_style(t: Tone) -> (&'static str, &'static str) {
    match t {
        Tone::Info => ("ℹ️", "#1565c0"),
        Tone::Progress => ("⏳", "#1565c0"),
        Tone::Success => ("✅", "#2e7d32"),
        Tone::Warning => ("⚠️", "#ef6c00"),
        Tone::Error => ("❌", "#c62828"),
    }
}

fn safe_url(url: &str) -> bool {
    let l = url.trim().to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://") || l.starts_with("mailto:")
}

/// The reply as Matrix HTML. Images are left to a separate `m.image` event (only their alt
/// text appears here); buttons become the command to type, since Matrix has no buttons.
pub fn render(reply: &Reply) -> String {
    let mut out = String::new();
    for b in &reply.blocks {
        match b {
            Block::Heading { text } => {
                out.push_str("<h4>");
                out.push_str(&escape(text));
                out.push_str("</h4>");
            }
            Block::Text { text } => {
                out.push_str("<p>");
                out.push_str(&inline(text));
                out.push_str("</p>");
            }
            Block::Fields { fields } => {
                out.push_str("<ul>");
                for (k, v) in fields {
                    out.push_str(&format!("<li><b>{}</b>: {}</li>", escape(k), inline(v)));
                }
                out.push_str("</ul>");
            }
            Block::Code { text } => {
                out.push_str("<pre><code>");
                out.push_str(&escape(text));
                out.push_str("</code></pre>");
            }
            Block::Table { headers, rows } => {
                out.push_str("<table><thead><tr>");
                for h in headers {
                    out.push_str(&format!("<th>{}</th>", escape(h)));
                }
                out.push_str("</tr></thead><tbody>");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r.iter().take(headers.len().max(1)) {
                        out.push_str(&format!("<td>{}</td>", inline(c)));
                    }
                    out.push_str("</tr>");
                }
                out.push_str("</tbody></table>");
            }
            Block::Status { tone, label } => {
                let (emoji, colour) = tone_style(*tone);
                out.push_str(&format!(
                    "<p>{emoji} <font color=\"{colour}\" data-mx-color=\"{colour}\"><b>{}</b></font></p>",
                    escape(label)
                ));
            }
            Block::Buttons { buttons } => {
                let hints: Vec<String> = buttons
                    .iter()
                    .map(|b| format!("<b>{}</b>: <code>{}</code>", escape(&b.label), escape(&b.command)))
                    .collect();
                out.push_str(&format!("<p>{}</p>", hints.join(" · ")));
            }
            Block::Image { url, alt } => {
                if safe_url(url) {
                    out.push_str(&format!("<p>🖼 <a href=\"{}\">{}</a></p>", escape(url), escape(alt)));
                } else {
                    out.push_str(&format!("<p>🖼 {}</p>", escape(alt)));
                }
            }
            Block::Link { url, text } => {
                if safe_url(url) {
                    out.push_str(&format!("<p><a href=\"{}\">{}</a></p>", escape(url), escape(text)));
                } else {
                    out.push_str(&format!("<p>{} ({})</p>", escape(text), escape(url)));
                }
            }
            // The reply's text asks for the values already.
            Block::Form(_) => {}
        }
    }
    out
}

/// The plain `body`: [`crate::plain`] of the reply, with `data:` and `mxc://` image URLs
/// (sent as an `m.image` after the text; a `data:` URL can be megabytes) replaced by a note,
/// other non-web image URLs left out, and control characters other than newline and tab
/// removed. `http(s)` images stay links: they are never fetched.
pub fn plain(reply: &Reply) -> String {
    let mut r = reply.clone();
    for b in &mut r.blocks {
        if let Block::Image { url, .. } = b
            && !safe_url(url)
        {
            let l = url.trim().to_ascii_lowercase();
            *url = if l.starts_with("data:") || l.starts_with("mxc://") {
                "image below"
            } else {
                "not shown"
            }
            .to_string();
        }
    }
    crate::plain(&r)
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything() {
        let r = Reply::text(Tone::Info, "<script>alert('x')</script> & `a<b`").heading("<h1>");
        let h = render(&r);
        assert!(!h.contains("<script>"));
        assert!(h.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; <code>a&lt;b</code>"));
        assert!(h.contains("<h4>&lt;h1&gt;</h4>"));
    }

    #[test]
    fn links_keep_only_safe_schemes() {
        let r = Reply::default();
        let mut r = r;
        r.blocks.push(Block::Link {
            url: "javascript:alert(1)".into(),
            text: "x".into(),
        });
        assert!(!render(&r).contains("href"));
    }

    #[test]
    fn odd_backticks_stay_literal() {
        assert_eq!(inline("a `b` c `d"), "a <code>b</code> c `d");
    }
}
