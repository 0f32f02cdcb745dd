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
    /// The parameters of a job as a form, for platforms that can show one (a Slack modal);
    /// others show nothing for it (the reply's text already asks). Submitting it sends
    /// [`Form::command_line`] as the person's own typed text, so it is checked like typing.
    Form(Form),
}

/// A job's parameters as a form (see [`Block::Form`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Form {
    /// The title, e.g. `Run deploy`.
    pub title: String,
    /// The command the values are appended to, e.g. `deploy`.
    pub command: String,
    /// The fields, in the job's order.
    pub fields: Vec<FormField>,
}

/// One field of a [`Form`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    /// The parameter's name (what goes before `=`).
    pub name: String,
    /// What kind of value, with its choices or bounds.
    pub input: FormInput,
    /// Whether a value must be given.
    pub required: bool,
    /// A value already known (given in the command, or the default).
    pub value: Option<String>,
    /// One line of help.
    pub help: Option<String>,
}

/// A value as the command grammar reads it back unchanged: bare when it is one plain word,
/// else in double quotes with `\\`, and every character that could close the quote escaped.
pub fn quote(v: &str) -> String {
    const CLOSERS: &[char] = &['"', '\u{201C}', '\u{201D}', '\u{201E}', '\u{FF02}', '\'', '\u{2018}', '\u{2019}'];
    let plain = !v.is_empty() && !v.starts_with('-') && !v.chars().any(|c| c.is_whitespace() || c == '\\' || CLOSERS.contains(&c));
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        if c == '\\' || CLOSERS.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The kind of value a [`FormField`] takes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FormInput {
    /// Free text (`secret`: never shown back).
    Text { secret: bool },
    /// An integer within optional bounds.
    Number { min: Option<i64>, max: Option<i64> },
    /// One of these values.
    Choice { options: Vec<String> },
    /// true or false.
    Bool,
}

impl Form {
    /// The command a submission stands for: `command name=value …` for every field with a
    /// non-empty value, each value quoted as the grammar reads it. Names not in the form are
    /// ignored (a submission cannot add parameters the form did not offer); values with line
    /// breaks are refused.
    pub fn command_line(&self, values: &[(String, String)]) -> Result<String, String> {
        let mut line = self.command.clone();
        for f in &self.fields {
            let Some((_, v)) = values.iter().find(|(n, _)| n == &f.name) else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            if v.contains(['\n', '\r', '\0']) {
                return Err(format!("`{}` must be one line", f.name));
            }
            line.push_str(&format!(" {}={}", f.name, quote(v)));
        }
        Ok(line)
    }
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
                Block::Form(_) => continue,
            }
            out.push('\n');
        }
        out
    }
}
