//! `Reply`: a small document each adapter renders natively.

use serde::{Deserialize, Serialize};

/// How a status or message should feel; adapters map it to colours or emoji.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// Neutral information.
    Info,
    /// Something is in progress.
    Progress,
    /// Something finished well.
    Success,
    /// Attention needed (a question, a confirmation, a truncation).
    Warning,
    /// Something failed or was refused.
    Error,
}

/// A button: pressing it sends `command` through the same engine steps as typed text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Button {
    /// The label shown.
    pub label: String,
    /// The command text the button sends, e.g. `cancel 42`.
    pub command: String,
    /// Tone for styling (primary/danger).
    pub tone: Tone,
}

/// One block of a reply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Block {
    /// A short title.
    Heading { text: String },
    /// A paragraph of plain text. `code spans` in backticks may be rendered as code.
    Text { text: String },
    /// Label/value pairs.
    Fields { fields: Vec<(String, String)> },
    /// Preformatted text (output, logs).
    Code { text: String },
    /// A table with a header row.
    Table { headers: Vec<String>, rows: Vec<Vec<String>> },
    /// A status badge.
    Status { tone: Tone, label: String },
    /// A row of buttons.
    Buttons { buttons: Vec<Button> },
    /// An image by URL.
    Image { url: String, alt: String },
    /// A link.
    Link { url: String, text: String },
}

/// A reply: a small document, plus an optional execution it describes (its live card).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The blocks, in order.
    pub blocks: Vec<Block>,
    /// Overall tone of the reply.
    pub tone: Option<Tone>,
    /// When this reply is (an update of) an execution's job card, its id; adapters that can
    /// edit messages update the earlier card instead of posting a new one.
    pub card_for: Option<i64>,
}

impl Reply {
    /// An empty reply with a tone.
    pub fn new(tone: Tone) -> Self {
        Self {
            blocks: Vec::new(),
            tone: Some(tone),
            card_for: None,
        }
    }
    /// A reply of one paragraph.
    pub fn text(tone: Tone, text: impl Into<String>) -> Self {
        Self::new(tone).para(text)
    }
    /// Adds a heading.
    pub fn heading(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Heading { text: text.into() });
        self
    }
    /// Adds a paragraph.
    pub fn para(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Text { text: text.into() });
        self
    }
    /// Adds label/value fields.
    pub fn fields(mut self, fields: Vec<(String, String)>) -> Self {
        self.blocks.push(Block::Fields { fields });
        self
    }
    /// Adds a code block.
    pub fn code(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Code { text: text.into() });
        self
    }
    /// Adds a table.
    pub fn table(mut self, headers: Vec<String>, rows: Vec<Vec<String>>) -> Self {
        self.blocks.push(Block::Table { headers, rows });
        self
    }
    /// Adds a status badge.
    pub fn status(mut self, tone: Tone, label: impl Into<String>) -> Self {
        self.blocks.push(Block::Status { tone, label: label.into() });
        self
    }
    /// Adds a row of buttons.
    pub fn buttons(mut self, buttons: Vec<Button>) -> Self {
        self.blocks.push(Block::Buttons { buttons });
        self
    }
    /// Marks the reply as the job card of an execution.
    pub fn card(mut self, id: i64) -> Self {
        self.card_for = Some(id);
        self
    }
    /// All the text of the reply flattened, for logs and tests.
    pub fn plain_text(&self) -> String {
        let mut out = String::new();
        for b in &self.blocks {
            match b {
                Block::Heading { text } | Block::Text { text } | Block::Code { text } => {
                    out.push_str(text);
                }
                Block::Fields { fields } => {
                    for (k, v) in fields {
                        out.push_str(&format!("{k}: {v}\n"));
                    }
                }
                Block::Table { headers, rows } => {
                    out.push_str(&headers.join(" | "));
                    for r in rows {
                        out.push('\n');
                        out.push_str(&r.join(" | "));
                    }
                }
                Block::Status { label, .. } => out.push_str(label),
                Block::Buttons { buttons } => {
                    let labels: Vec<_> = buttons.iter().map(|b| format!("[{}]", b.label)).collect();
                    out.push_str(&labels.join(" "));
                }
                Block::Image { url, alt } => out.push_str(&format!("{alt} <{url}>")),
                Block::Link { url, text } => out.push_str(&format!("{text} <{url}>")),
            }
            out.push('\n');
        }
        out
    }
}
