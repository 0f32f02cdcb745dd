//! A [`Form`] as a Slack modal (`views.open`), and a `view_submission` read back into the
//! command line the person would have typed.
//!
//! Each field is an `input` block (<https://docs.slack.dev/reference/block-kit/blocks/input-block>)
//! with `block_id` `f<INDEX>` and the field's name as `action_id`: `static_select` for a choice (up to
//! 100 options, else a text input), `number_input` for a number (whole numbers, with its
//! bounds), `radio_buttons` for yes/no, `plain_text_input` for text. Slack has no hidden text
//! input: a secret field says so in its hint. Submitted values arrive in
//! `view.state.values[block_id][action_id]`
//! (<https://docs.slack.dev/reference/interaction-payloads/view-interactions-payload>); what
//! is wrong is answered with `response_action: errors` keyed by block id
//! (<https://docs.slack.dev/surfaces/modals#displaying_errors>).

use super::render::truncate;
use opsbot_core::{Form, FormInput};
use serde_json::{Value, json};

/// The modal's `callback_id`.
pub const CALLBACK_ID: &str = "opsbot_form";
/// Most blocks in a modal.
const MAX_MODAL_BLOCKS: usize = 100;

fn pt(text: &str, max: usize) -> Value {
    let t = if text.trim().is_empty() { " " } else { text };
    json!({"type": "plain_text", "text": truncate(t, max), "emoji": true})
}

fn option(v: &str) -> Value {
    json!({"text": pt(v, 75), "value": truncate(v, 150)})
}

/// The modal view for `form`, with `metadata` as `private_metadata` (at most 3,000 chars).
pub fn view(form: &Form, metadata: &str) -> Value {
    let mut blocks = Vec::new();
    for (i, f) in form.fields.iter().enumerate().take(MAX_MODAL_BLOCKS) {
        let initial = f.value.as_deref().filter(|v| !v.is_empty());
        let aid = truncate(&f.name, 255);
        let (element, hint_extra) = match &f.input {
            FormInput::Text { secret } => {
                let mut e = json!({"type": "plain_text_input", "action_id": aid});
                if let Some(v) = initial.filter(|_| !secret) {
                    e["initial_value"] = json!(truncate(v, 3000));
                }
                (e, secret.then_some("Slack shows what you type here; it is not kept in the chat."))
            }
            FormInput::Number { min, max } => {
                let mut e = json!({"type": "number_input", "action_id": aid, "is_decimal_allowed": false});
                if let Some(m) = min {
                    e["min_value"] = json!(m.to_string());
                }
                if let Some(m) = max {
                    e["max_value"] = json!(m.to_string());
                }
                if let Some(v) = initial.filter(|v| v.parse::<i64>().is_ok()) {
                    e["initial_value"] = json!(v);
                }
                (e, None)
            }
            FormInput::Choice { options }
                if !options.is_empty() && options.len() <= 100 && options.iter().all(|o| o.chars().count() <= 75) =>
            {
                let mut e = json!({
                    "type": "static_select",
                    "action_id": aid,
                    "options": options.iter().map(|o| option(o)).collect::<Vec<_>>(),
                });
                if let Some(v) = initial.filter(|v| options.iter().any(|o| o == v)) {
                    e["initial_option"] = option(v);
                }
                (e, None)
            }
            FormInput::Choice { .. } => {
                let mut e = json!({"type": "plain_text_input", "action_id": aid});
                if let Some(v) = initial {
                    e["initial_value"] = json!(truncate(v, 3000));
                }
                (e, None)
            }
            FormInput::Bool => {
                let mut e = json!({
                    "type": "radio_buttons",
                    "action_id": aid,
                    "options": [option("true"), option("false")],
                });
                if let Some(v) = initial.filter(|v| *v == "true" || *v == "false") {
                    e["initial_option"] = option(v);
                }
                (e, None)
            }
        };
        let mut block = json!({
            "type": "input",
            "block_id": format!("f{i}"),
            "label": pt(&f.name, 2000),
            "element": element,
            "optional": !f.required,
        });
        let hint = match (f.help.as_deref(), hint_extra) {
            (Some(h), Some(x)) => Some(format!("{h} ({x})")),
            (Some(h), None) => Some(h.to_string()),
            (None, Some(x)) => Some(x.to_string()),
            (None, None) => None,
        };
        if let Some(h) = hint {
            block["hint"] = pt(&h, 2000);
        }
        blocks.push(block);
    }
    json!({
        "type": "modal",
        "callback_id": CALLBACK_ID,
        "title": pt(&form.title, 24),
        "submit": pt("Run", 24),
        "close": pt("Cancel", 24),
        "private_metadata": metadata,
        "blocks": blocks,
    })
}

/// (name or block id, value or message) pairs.
pub type Pairs = Vec<(String, String)>;

/// The submitted values of a `view_submission`'s `view.state.values`, by field name; the
/// errors (by block id) of values that cannot be right.
pub fn values(form: &Form, state: &Value) -> Result<Pairs, Pairs> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, f) in form.fields.iter().enumerate().take(MAX_MODAL_BLOCKS) {
        let block_id = format!("f{i}");
        // The block's one element, whatever its action_id.
        let v = state.get(&block_id).and_then(Value::as_object).and_then(|b| b.values().next());
        let value = v
            .and_then(|v| {
                v.get("value")
                    .and_then(Value::as_str)
                    .or_else(|| v.get("selected_option").and_then(|o| o.get("value")).and_then(Value::as_str))
            })
            .unwrap_or("")
            .trim()
            .to_string();
        if value.is_empty() {
            if f.required {
                errors.push((block_id, "A value is needed.".into()));
            }
            continue;
        }
        match &f.input {
            FormInput::Number { min, max } => match value.parse::<i64>() {
                Err(_) => errors.push((block_id, "A whole number is needed.".into())),
                Ok(n) if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) => {
                    errors.push((block_id, format!("Out of range ({}–{}).", fmt_opt(*min), fmt_opt(*max))))
                }
                Ok(_) => out.push((f.name.clone(), value)),
            },
            FormInput::Choice { options } if !options.iter().any(|o| o == &value) => {
                errors.push((block_id, "Pick one of the options.".into()))
            }
            FormInput::Bool if value != "true" && value != "false" => errors.push((block_id, "true or false.".into())),
            _ => {
                if value.contains(['\n', '\r', '\0']) {
                    errors.push((block_id, "One line only.".into()));
                } else {
                    out.push((f.name.clone(), value));
                }
            }
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn fmt_opt(v: Option<i64>) -> String {
    v.map(|n| n.to_string()).unwrap_or_default()
}

/// The `response_action: errors` answer for these (block id, message) errors.
pub fn errors_answer(errors: &[(String, String)]) -> Value {
    let map: serde_json::Map<String, Value> = errors.iter().map(|(b, m)| (b.clone(), json!(m))).collect();
    json!({"response_action": "errors", "errors": map})
}

#[cfg(test)]
mod tests {
    use super::*;
    use opsbot_core::FormField;

    fn form() -> Form {
        Form {
            title: "Run deploy".into(),
            command: "deploy".into(),
            fields: vec![
                FormField {
                    name: "env".into(),
                    input: FormInput::Choice {
                        options: vec!["staging".into(), "prod".into()],
                    },
                    required: true,
                    value: Some("staging".into()),
                    help: Some("Where".into()),
                },
                FormField {
                    name: "replicas".into(),
                    input: FormInput::Number {
                        min: Some(1),
                        max: Some(5),
                    },
                    required: false,
                    value: None,
                    help: None,
                },
                FormField {
                    name: "note".into(),
                    input: FormInput::Text { secret: false },
                    required: false,
                    value: None,
                    help: None,
                },
                FormField {
                    name: "dry".into(),
                    input: FormInput::Bool,
                    required: false,
                    value: Some("false".into()),
                    help: None,
                },
            ],
        }
    }

    #[test]
    fn modal_blocks() {
        let v = view(&form(), "{}");
        let b = &v["blocks"];
        assert_eq!(b[0]["element"]["type"], "static_select");
        assert_eq!(b[0]["element"]["initial_option"]["value"], "staging");
        assert_eq!(b[0]["optional"], false);
        assert_eq!(b[1]["element"]["type"], "number_input");
        assert_eq!(b[1]["element"]["min_value"], "1");
        assert_eq!(b[2]["element"]["type"], "plain_text_input");
        assert_eq!(b[3]["element"]["type"], "radio_buttons");
        assert_eq!(v["callback_id"], CALLBACK_ID);
    }

    #[test]
    fn submission_values_and_errors() {
        let state = json!({
            "f0": {"env": {"type": "static_select", "selected_option": {"value": "prod"}}},
            "f1": {"replicas": {"type": "number_input", "value": "3"}},
            "f2": {"note": {"type": "plain_text_input", "value": "hello world"}},
            "f3": {"dry": {"type": "radio_buttons", "selected_option": null}},
        });
        let v = values(&form(), &state).unwrap();
        assert_eq!(form().command_line(&v).unwrap(), "deploy env=prod replicas=3 note=\"hello world\"");
        let bad = json!({"f1": {"value": {"value": "9"}}, "f0": {"value": {"selected_option": {"value": "mars"}}}});
        let e = values(&form(), &bad).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!(errors_answer(&e)["response_action"], "errors");
    }
}
