//! Block Kit validation as Slack applies it to `chat.postMessage`, `chat.update` and
//! `views.open`: the fake refuses what Slack refuses, so the adapter's mistakes show up in tests.
//!
//! Limits are from the Block Kit reference:
//! <https://docs.slack.dev/reference/block-kit/blocks> (header text ≤150, section text ≤3000,
//! fields ≤10 of ≤2000, actions ≤25 elements, context ≤10 elements, image URL ≤3000, alt text
//! ≤2000, block_id ≤255 and unique), <https://docs.slack.dev/reference/block-kit/block-elements>
//! (button text ≤75, value ≤2000, action_id ≤255 and unique, url ≤3000; static_select ≤100
//! options of text ≤75, value ≤150) and <https://docs.slack.dev/reference/views> (modal title,
//! submit and close ≤24, ≤100 blocks, private_metadata ≤3000, callback_id ≤255).

use serde_json::Value;
use std::collections::HashSet;

/// Where a list of blocks is used: some block kinds only exist in one surface.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Surface {
    /// A message (`chat.postMessage`, `chat.update`, `response_url`): at most 50 blocks.
    Message,
    /// A modal (`views.open`): at most 100 blocks, `input` blocks allowed.
    Modal,
}

/// Checks blocks; `Err(messages)` are Slack-style `[ERROR] …` lines for `response_metadata`.
pub fn validate_blocks(blocks: &Value, surface: Surface) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let Some(list) = blocks.as_array() else {
        return Err(vec!["[ERROR] must be an array [json-pointer:/blocks]".into()]);
    };
    let max = match surface {
        Surface::Message => 50,
        Surface::Modal => 100,
    };
    if list.len() > max {
        errs.push(format!("[ERROR] no more than {max} items allowed [json-pointer:/blocks]"));
    }
    let mut block_ids = HashSet::new();
    let mut action_ids = HashSet::new();
    for (i, b) in list.iter().enumerate() {
        let at = format!("/blocks/{i}");
        check_block(b, &at, surface, &mut block_ids, &mut action_ids, &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

fn err(errs: &mut Vec<String>, what: &str, at: &str) {
    errs.push(format!("[ERROR] {what} [json-pointer:{at}]"));
}

/// An image URL Slack can fetch: http(s), at most 3000 characters (a `data:` URL is refused;
/// images of one's own go through a file upload).
fn check_image_url(v: &Value, at: &str, errs: &mut Vec<String>) {
    check_len(v, 3000, at, errs);
    if let Some(s) = v.as_str()
        && !(s.starts_with("https://") || s.starts_with("http://"))
    {
        err(errs, "invalid url", at);
    }
}

fn check_len(v: &Value, max: usize, at: &str, errs: &mut Vec<String>) {
    match v.as_str() {
        Some(s) if s.chars().count() > max => err(errs, &format!("must be less than {} characters", max + 1), at),
        Some(_) => {}
        None => err(errs, "must be a string", at),
    }
}

/// A text object: `{"type":"plain_text"|"mrkdwn","text":"…"}` (non-empty, at most `max`).
fn check_text(v: &Value, max: usize, plain_only: bool, at: &str, errs: &mut Vec<String>) {
    let Some(o) = v.as_object() else {
        err(errs, "must be a text object", at);
        return;
    };
    match o.get("type").and_then(Value::as_str) {
        Some("plain_text") => {}
        Some("mrkdwn") if !plain_only => {}
        Some("mrkdwn") => err(errs, "must be plain_text", &format!("{at}/type")),
        _ => err(errs, "must be one of plain_text, mrkdwn", &format!("{at}/type")),
    }
    match o.get("text") {
        Some(Value::String(s)) if s.is_empty() => err(errs, "must be more than 0 characters", &format!("{at}/text")),
        Some(t) => check_len(t, max, &format!("{at}/text"), errs),
        None => err(errs, "missing required field: text", at),
    }
}

fn check_action_id(o: &serde_json::Map<String, Value>, at: &str, ids: &mut HashSet<String>, errs: &mut Vec<String>) {
    if let Some(a) = o.get("action_id") {
        check_len(a, 255, &format!("{at}/action_id"), errs);
        if let Some(s) = a.as_str()
            && !ids.insert(s.to_string())
        {
            err(errs, "action_id already exists", &format!("{at}/action_id"));
        }
    }
}

fn check_element(e: &Value, at: &str, allowed: &[&str], action_ids: &mut HashSet<String>, errs: &mut Vec<String>) {
    let Some(o) = e.as_object() else {
        err(errs, "must be an object", at);
        return;
    };
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
    if !allowed.contains(&kind) {
        err(errs, &format!("must be one of {}", allowed.join(", ")), &format!("{at}/type"));
        return;
    }
    match kind {
        "button" => {
            match o.get("text") {
                Some(t) => check_text(t, 75, true, &format!("{at}/text"), errs),
                None => err(errs, "missing required field: text", at),
            }
            if let Some(v) = o.get("value") {
                check_len(v, 2000, &format!("{at}/value"), errs);
            }
            if let Some(u) = o.get("url") {
                check_len(u, 3000, &format!("{at}/url"), errs);
            }
            if let Some(s) = o.get("style")
                && !matches!(s.as_str(), Some("primary" | "danger"))
            {
                err(errs, "must be one of primary, danger", &format!("{at}/style"));
            }
            check_action_id(o, at, action_ids, errs);
        }
        "image" => {
            match o.get("image_url") {
                Some(u) => check_image_url(u, &format!("{at}/image_url"), errs),
                None if o.contains_key("slack_file") => {}
                None => err(errs, "missing required field: image_url", at),
            }
            match o.get("alt_text") {
                Some(a) => check_len(a, 2000, &format!("{at}/alt_text"), errs),
                None => err(errs, "missing required field: alt_text", at),
            }
        }
        "plain_text" | "mrkdwn" => check_text(e, 3000, false, at, errs),
        "plain_text_input" => {
            check_action_id(o, at, action_ids, errs);
            for k in ["min_length", "max_length"] {
                if let Some(v) = o.get(k)
                    && !v.is_u64()
                {
                    err(errs, "must be an integer", &format!("{at}/{k}"));
                }
            }
        }
        "number_input" => {
            check_action_id(o, at, action_ids, errs);
            if !o.get("is_decimal_allowed").is_some_and(Value::is_boolean) {
                err(errs, "missing required field: is_decimal_allowed", at);
            }
            for k in ["min_value", "max_value", "initial_value"] {
                if let Some(v) = o.get(k)
                    && !v.is_string()
                {
                    err(errs, "must be a string", &format!("{at}/{k}"));
                }
            }
        }
        "static_select" | "radio_buttons" | "checkboxes" => {
            check_action_id(o, at, action_ids, errs);
            match o.get("options").and_then(Value::as_array) {
                None => err(errs, "missing required field: options", at),
                Some(opts) => {
                    let max = if kind == "static_select" { 100 } else { 10 };
                    if opts.len() > max {
                        err(errs, &format!("no more than {max} items allowed"), &format!("{at}/options"));
                    }
                    if opts.is_empty() {
                        err(errs, "must provide at least 1 items", &format!("{at}/options"));
                    }
                    for (j, op) in opts.iter().enumerate() {
                        let oat = format!("{at}/options/{j}");
                        match op.get("text") {
                            Some(t) => check_text(t, 75, kind == "static_select", &format!("{oat}/text"), errs),
                            None => err(errs, "missing required field: text", &oat),
                        }
                        match op.get("value") {
                            Some(v) => check_len(v, 150, &format!("{oat}/value"), errs),
                            None => err(errs, "missing required field: value", &oat),
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn check_block(
    b: &Value,
    at: &str,
    surface: Surface,
    block_ids: &mut HashSet<String>,
    action_ids: &mut HashSet<String>,
    errs: &mut Vec<String>,
) {
    let Some(o) = b.as_object() else {
        err(errs, "must be an object", at);
        return;
    };
    if let Some(id) = o.get("block_id") {
        check_len(id, 255, &format!("{at}/block_id"), errs);
        if let Some(s) = id.as_str()
            && !block_ids.insert(s.to_string())
        {
            err(errs, "block_id already exists", &format!("{at}/block_id"));
        }
    }
    let kind = o.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "header" => match o.get("text") {
            Some(t) => check_text(t, 150, true, &format!("{at}/text"), errs),
            None => err(errs, "missing required field: text", at),
        },
        "section" => {
            let text = o.get("text");
            let fields = o.get("fields");
            if text.is_none() && fields.is_none() {
                err(errs, "must provide either text or fields", at);
            }
            if let Some(t) = text {
                check_text(t, 3000, false, &format!("{at}/text"), errs);
            }
            if let Some(f) = fields {
                match f.as_array() {
                    None => err(errs, "must be an array", &format!("{at}/fields")),
                    Some(list) => {
                        if list.len() > 10 {
                            err(errs, "no more than 10 items allowed", &format!("{at}/fields"));
                        }
                        for (j, x) in list.iter().enumerate() {
                            check_text(x, 2000, false, &format!("{at}/fields/{j}"), errs);
                        }
                    }
                }
            }
            if let Some(a) = o.get("accessory") {
                check_element(a, &format!("{at}/accessory"), &["button", "image"], action_ids, errs);
            }
        }
        "context" => match o.get("elements").and_then(Value::as_array) {
            None => err(errs, "missing required field: elements", at),
            Some(list) => {
                if list.is_empty() || list.len() > 10 {
                    err(errs, "must have 1 to 10 items", &format!("{at}/elements"));
                }
                for (j, e) in list.iter().enumerate() {
                    check_element(
                        e,
                        &format!("{at}/elements/{j}"),
                        &["image", "plain_text", "mrkdwn"],
                        action_ids,
                        errs,
                    );
                }
            }
        },
        "divider" => {}
        "actions" => match o.get("elements").and_then(Value::as_array) {
            None => err(errs, "missing required field: elements", at),
            Some(list) => {
                if list.is_empty() || list.len() > 25 {
                    err(errs, "must have 1 to 25 items", &format!("{at}/elements"));
                }
                for (j, e) in list.iter().enumerate() {
                    check_element(
                        e,
                        &format!("{at}/elements/{j}"),
                        &["button", "static_select", "checkboxes", "radio_buttons"],
                        action_ids,
                        errs,
                    );
                }
            }
        },
        "image" => {
            match o.get("image_url") {
                Some(u) => check_image_url(u, &format!("{at}/image_url"), errs),
                None if o.contains_key("slack_file") => {}
                None => err(errs, "missing required field: image_url", at),
            }
            match o.get("alt_text") {
                Some(a) => check_len(a, 2000, &format!("{at}/alt_text"), errs),
                None => err(errs, "missing required field: alt_text", at),
            }
            if let Some(t) = o.get("title") {
                check_text(t, 2000, true, &format!("{at}/title"), errs);
            }
        }
        // What Slack clients send for what people type; accepted loosely.
        "rich_text" => {}
        "input" if surface == Surface::Modal => {
            match o.get("label") {
                Some(l) => check_text(l, 2000, true, &format!("{at}/label"), errs),
                None => err(errs, "missing required field: label", at),
            }
            match o.get("element") {
                Some(e) => check_element(
                    e,
                    &format!("{at}/element"),
                    &["plain_text_input", "number_input", "static_select", "checkboxes", "radio_buttons"],
                    action_ids,
                    errs,
                ),
                None => err(errs, "missing required field: element", at),
            }
            if let Some(h) = o.get("hint") {
                check_text(h, 2000, true, &format!("{at}/hint"), errs);
            }
            if let Some(x) = o.get("optional")
                && !x.is_boolean()
            {
                err(errs, "must be a boolean", &format!("{at}/optional"));
            }
        }
        "" => err(errs, "missing required field: type", at),
        other => err(errs, &format!("unsupported type: {other}"), &format!("{at}/type")),
    }
}

/// Checks a modal view for `views.open`; `Err(messages)` for `invalid_arguments`.
pub fn validate_view(view: &Value) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let Some(o) = view.as_object() else {
        return Err(vec!["[ERROR] must be an object [json-pointer:/view]".into()]);
    };
    if o.get("type").and_then(Value::as_str) != Some("modal") {
        err(&mut errs, "must be one of modal, home", "/view/type");
    }
    match o.get("title") {
        Some(t) => check_text(t, 24, true, "/view/title", &mut errs),
        None => err(&mut errs, "missing required field: title", "/view"),
    }
    for k in ["submit", "close"] {
        if let Some(t) = o.get(k) {
            check_text(t, 24, true, &format!("/view/{k}"), &mut errs);
        }
    }
    if let Some(m) = o.get("private_metadata") {
        check_len(m, 3000, "/view/private_metadata", &mut errs);
    }
    if let Some(c) = o.get("callback_id") {
        check_len(c, 255, "/view/callback_id", &mut errs);
    }
    match o.get("blocks") {
        None => err(&mut errs, "missing required field: blocks", "/view"),
        Some(b) => {
            if let Err(e) = validate_blocks(b, Surface::Modal) {
                errs.extend(e);
            }
            let has_input = b
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x.get("type").and_then(Value::as_str) == Some("input")));
            if has_input && !o.contains_key("submit") {
                err(
                    &mut errs,
                    "submit is required when an input block is within the blocks array",
                    "/view/submit",
                );
            }
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_a_typical_message_and_refuses_limits() {
        let ok = json!([
            {"type":"header","text":{"type":"plain_text","text":"#1 queued"}},
            {"type":"section","text":{"type":"mrkdwn","text":"hi"},"fields":[{"type":"mrkdwn","text":"*a*"}]},
            {"type":"divider"},
            {"type":"context","elements":[{"type":"mrkdwn","text":"x"}]},
            {"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"Go"},"action_id":"a1","value":"!run"}]},
            {"type":"image","image_url":"https://x/y.png","alt_text":"y"}
        ]);
        assert!(validate_blocks(&ok, Surface::Message).is_ok());
        let long = json!([{"type":"section","text":{"type":"mrkdwn","text":"x".repeat(3001)}}]);
        assert!(validate_blocks(&long, Surface::Message).is_err());
        let dup = json!([{"type":"actions","elements":[
            {"type":"button","text":{"type":"plain_text","text":"a"},"action_id":"x"},
            {"type":"button","text":{"type":"plain_text","text":"b"},"action_id":"x"}]}]);
        assert!(validate_blocks(&dup, Surface::Message).is_err());
        let many: Vec<Value> = (0..51).map(|_| json!({"type":"divider"})).collect();
        assert!(validate_blocks(&Value::Array(many), Surface::Message).is_err());
        let input = json!([{"type":"input","label":{"type":"plain_text","text":"x"},"element":{"type":"plain_text_input"}}]);
        assert!(validate_blocks(&input, Surface::Message).is_err());
        assert!(validate_blocks(&input, Surface::Modal).is_ok());
        let data_url = json!([{"type":"image","image_url":"data:image/png;base64,AAAA","alt_text":"x"}]);
        assert!(validate_blocks(&data_url, Surface::Message).is_err());
        let bad_header = json!([{"type":"header","text":{"type":"mrkdwn","text":"x"}}]);
        assert!(validate_blocks(&bad_header, Surface::Message).is_err());
    }

    #[test]
    fn modal_needs_submit_with_inputs_and_a_short_title() {
        let input = json!({"type":"input","label":{"type":"plain_text","text":"x"},"element":{"type":"plain_text_input","action_id":"x"}});
        let no_submit = json!({"type":"modal","title":{"type":"plain_text","text":"Deploy"},"blocks":[input]});
        assert!(validate_view(&no_submit).is_err());
        let ok = json!({"type":"modal","title":{"type":"plain_text","text":"Deploy"},"submit":{"type":"plain_text","text":"Run"},"blocks":[input]});
        assert!(validate_view(&ok).is_ok());
        let long = json!({"type":"modal","title":{"type":"plain_text","text":"x".repeat(25)},"blocks":[]});
        assert!(validate_view(&long).is_err());
    }
}
