//! The presenter: turns catalog entries and records into `Reply` documents.

use crate::tr;
use chrono::{DateTime, Local, Utc};
use opsbot_core::job::{Catalog, JobSpec, ParamKind, shorten};
use opsbot_core::{Button, ExecState, Execution, OutputLine, Reply, Stream, Tone};

/// `#12 deploy app=web env=staging` with secret values hidden.
pub fn describe_run(job: Option<&JobSpec>, name: &str, params: &opsbot_core::Params) -> String {
    let mut s = name.to_string();
    let ordered: Vec<(&String, &String)> = match job {
        Some(j) => j.params.iter().filter_map(|p| params.get_key_value(&p.name)).collect(),
        None => params.iter().collect(),
    };
    for (k, v) in ordered {
        let secret = job.and_then(|j| j.param(k)).is_some_and(|p| p.secret);
        let shown = if secret { "••••".to_string() } else { display_value(v) };
        s.push_str(&format!(" {k}={shown}"));
    }
    s
}

fn display_value(v: &str) -> String {
    let v = shorten(v, 80);
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        format!("{:?}", v)
    } else {
        v
    }
}

/// A time for people, in the local time zone.
pub fn when(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// `1.2 s`, `3 min 04 s`, `420 ms`.
pub fn duration(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        let s = ms / 1000;
        if s < 3600 {
            format!("{} min {:02} s", s / 60, s % 60)
        } else {
            format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
        }
    }
}

/// Tone and one-word label of a state.
pub fn state_tone(state: ExecState) -> Tone {
    match state {
        ExecState::Queued => Tone::Info,
        ExecState::Running => Tone::Progress,
        ExecState::Succeeded => Tone::Success,
        ExecState::Cancelled => Tone::Warning,
        ExecState::Failed | ExecState::TimedOut | ExecState::Lost => Tone::Error,
    }
}

fn state_label(e: &Execution) -> String {
    match e.state {
        ExecState::Queued => tr!("state-queued"),
        ExecState::Running => tr!("state-running"),
        ExecState::Succeeded => tr!("state-succeeded"),
        ExecState::Failed => match e.exit_code {
            Some(c) => tr!("state-failed-exit", code = c),
            None => tr!("state-failed"),
        },
        ExecState::Cancelled => tr!("state-cancelled"),
        ExecState::TimedOut => tr!("state-timed-out"),
        ExecState::Lost => tr!("state-lost"),
    }
}

/// Help: built-in verbs and the jobs.
pub fn help(catalog: &Catalog, bot: &str) -> Reply {
    let mut r = Reply::new(Tone::Info).heading(tr!("help-heading", bot = bot));
    let verbs = vec![
        ("help [JOB]".to_string(), tr!("help-verb-help")),
        ("list".into(), tr!("help-verb-list")),
        ("run JOB key=value …".into(), tr!("help-verb-run")),
        ("status ID".into(), tr!("help-verb-status")),
        ("logs ID [--all]".into(), tr!("help-verb-logs")),
        ("cancel ID".into(), tr!("help-verb-cancel")),
        ("history [JOB] [--mine] [--limit N]".into(), tr!("help-verb-history")),
        ("whoami".into(), tr!("help-verb-whoami")),
        ("ping".into(), tr!("help-verb-ping")),
        ("approvals · approve ID · deny ID [why]".into(), tr!("help-verb-approvals")),
        (
            "lock [JOB] key=value --reason \"…\" · unlock … · locks".into(),
            tr!("help-verb-lock"),
        ),
        ("link · link CODE · unlink PLATFORM:ID".into(), tr!("help-verb-link")),
    ];
    r = r.fields(verbs);
    let names: Vec<&str> = catalog.jobs().iter().map(|j| j.name.as_str()).collect();
    if names.is_empty() {
        return r;
    }
    r.para(tr!(
        "help-jobs",
        jobs = names.join(", "),
        first = names.first().copied().unwrap_or("JOB")
    ))
}

/// Help for one job, generated from its schema.
/// `prefix` is how positional use is shown (the first configured prefix, or none).
pub fn job_help(job: &JobSpec, prefix: &str) -> Reply {
    let description = if job.description.is_empty() {
        tr!("job-help-no-description")
    } else {
        job.description.clone()
    };
    let mut r = Reply::new(Tone::Info).heading(format!("{} — {description}", job.name));
    let usage: Vec<String> = job
        .params
        .iter()
        .map(|p| {
            if p.required {
                format!("{}=…", p.name)
            } else {
                format!("[{}=…]", p.name)
            }
        })
        .collect();
    r = r.para(tr!("job-help-usage", job = &job.name, params = usage.join(" ")));
    if !job.params.is_empty() {
        let rows = job
            .params
            .iter()
            .map(|p| {
                let allowed = p.kind.describe();
                let need = match (&p.default, p.required) {
                    (Some(_), _) if p.secret => tr!("job-help-default", value = "••••"),
                    (Some(d), _) => tr!("job-help-default", value = d),
                    (None, true) => tr!("job-help-required"),
                    (None, false) => tr!("job-help-optional"),
                };
                vec![
                    p.name.clone(),
                    p.kind.name().into(),
                    allowed,
                    need,
                    p.help.clone().unwrap_or_default(),
                ]
            })
            .collect();
        r = r.table(
            vec![
                tr!("header-param"),
                tr!("header-type"),
                tr!("header-allowed"),
                String::new(),
                tr!("header-help"),
            ],
            rows,
        );
    }
    let mut notes = Vec::new();
    for p in &job.params {
        if let ParamKind::Enum { values } = &p.kind {
            let syn: Vec<String> = values
                .iter()
                .filter(|v| !v.synonyms.is_empty())
                .map(|v| format!("{} = {}", v.value, v.synonyms.join(", ")))
                .collect();
            if !syn.is_empty() {
                notes.push((tr!("job-help-also-accepts", param = &p.name), syn.join("; ")));
            }
        }
    }
    if !job.aliases.is_empty() {
        notes.push((
            tr!("job-help-aliases"),
            job.aliases.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
        ));
    }
    if !job.examples.is_empty() {
        notes.push((
            tr!("job-help-examples"),
            job.examples.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
        ));
    }
    let order: Vec<&str> = job.params.iter().map(|p| p.name.as_str()).collect();
    if !order.is_empty() {
        notes.push((tr!("job-help-positional"), format!("`{prefix}{} {}`", job.name, order.join(" "))));
    }
    let mut limits = vec![tr!("job-help-timeout", timeout = humantime_short(job.timeout))];
    if let Some(c) = job.concurrency {
        limits.push(tr!("job-help-concurrency", n = c));
    }
    if job.sensitive {
        limits.push(tr!("job-help-confirms"));
    }
    notes.push((tr!("job-help-limits"), limits.join(&tr!("list-comma"))));
    r.fields(notes)
}

fn humantime_short(d: std::time::Duration) -> String {
    duration(d.as_millis() as i64)
}

/// The job list.
pub fn list(catalog: &Catalog) -> Reply {
    let rows = catalog
        .jobs()
        .iter()
        .map(|j| {
            let params: Vec<String> = j
                .params
                .iter()
                .map(|p| if p.required { p.name.clone() } else { format!("[{}]", p.name) })
                .collect();
            vec![j.name.clone(), params.join(" "), j.description.clone()]
        })
        .collect();
    Reply::new(Tone::Info)
        .heading(tr!("list-heading", n = catalog.len()))
        .table(vec![tr!("header-job"), tr!("header-params"), tr!("header-description")], rows)
        .para(tr!("list-footer"))
}

/// The acknowledgement sent as soon as a run is queued.
pub fn queued(e: &Execution, job: Option<&JobSpec>) -> Reply {
    Reply::new(Tone::Info)
        .status(Tone::Info, tr!("queued-status", id = e.id))
        .para(tr!("queued-para", run = describe_run(job, &e.job, &e.params), id = e.id))
        .buttons(vec![
            Button {
                label: tr!("button-status"),
                command: format!("status {}", e.id),
                tone: Tone::Info,
            },
            Button {
                label: tr!("button-cancel"),
                command: format!("cancel {}", e.id),
                tone: Tone::Error,
            },
        ])
        .card(e.id)
}

/// A job card update when a run starts.
pub fn started(e: &Execution, job: Option<&JobSpec>) -> Reply {
    Reply::new(Tone::Progress)
        .status(Tone::Progress, tr!("started-status", id = e.id))
        .para(describe_run(job, &e.job, &e.params))
        .buttons(vec![
            Button {
                label: tr!("button-logs"),
                command: format!("logs {}", e.id),
                tone: Tone::Info,
            },
            Button {
                label: tr!("button-cancel"),
                command: format!("cancel {}", e.id),
                tone: Tone::Error,
            },
        ])
        .card(e.id)
}

/// The end-of-run report: state, duration, exit code and the last lines of output.
pub fn finished(e: &Execution, job: Option<&JobSpec>, tail: &[OutputLine], total: u64) -> Reply {
    let tone = state_tone(e.state);
    let mut r = Reply::new(tone)
        .status(tone, format!("#{} {} {}", e.id, e.job, state_label(e)))
        .para(describe_run(job, &e.job, &e.params));
    let mut fields = vec![(tr!("field-requested-by"), e.requester_name.clone())];
    if let Some(ms) = e.duration_ms {
        fields.push((tr!("field-duration"), duration(ms)));
    }
    if let Some(c) = e.exit_code {
        fields.push((tr!("field-exit-code"), c.to_string()));
    }
    if let Some(d) = &e.detail {
        fields.push((tr!("field-note"), d.clone()));
    }
    r = r.fields(fields);
    if !tail.is_empty() {
        r = r.code(render_lines(tail));
    }
    if total > tail.len() as u64 {
        r = r.para(tr!("finished-more", n = total - tail.len() as u64, id = e.id));
    } else if total == 0 {
        r = r.para(tr!("finished-no-output"));
    }
    // Run it again with the same values, when they can be shown: not with a secret one.
    if let Some(job) = job
        && !job.params.iter().any(|p| p.secret && e.params.contains_key(&p.name))
    {
        let mut command = format!("run {}", e.job);
        for (k, v) in &e.params {
            command.push_str(&format!(" {k}={}", opsbot_core::reply::quote(v)));
        }
        r = r.buttons(vec![Button {
            label: tr!("button-run-again"),
            command,
            tone: Tone::Info,
        }]);
    }
    r.card(e.id)
}

/// Output lines as text; stderr and opsbot's own notes are marked.
pub fn render_lines(lines: &[OutputLine]) -> String {
    lines
        .iter()
        .map(|l| match l.stream {
            Stream::Stdout => l.text.clone(),
            Stream::Stderr => format!("[stderr] {}", l.text),
            Stream::System => format!("[opsbot] {}", l.text),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `status ID`.
pub fn status(e: &Execution, job: Option<&JobSpec>, tail: &[OutputLine], total: u64) -> Reply {
    let tone = state_tone(e.state);
    let mut fields = vec![
        (tr!("field-job"), describe_run(job, &e.job, &e.params)),
        (tr!("field-state"), state_label(e)),
        (tr!("field-requested-by"), format!("{} ({})", e.requester_name, e.requested_by)),
        (tr!("field-where"), e.place.to_string()),
        (tr!("field-queued"), when(e.created_at)),
    ];
    if let Some(t) = e.started_at {
        fields.push((tr!("field-started"), when(t)));
    }
    if let Some(t) = e.finished_at {
        fields.push((tr!("field-finished"), when(t)));
    }
    if let Some(ms) = e.duration_ms {
        fields.push((tr!("field-duration"), duration(ms)));
    } else if let (Some(s), None) = (e.started_at, e.finished_at) {
        fields.push((tr!("field-running-for"), duration((Utc::now() - s).num_milliseconds().max(0))));
    }
    if let Some(c) = e.exit_code {
        fields.push((tr!("field-exit-code"), c.to_string()));
    }
    if let Some(c) = e.cpu_ms {
        fields.push((tr!("field-cpu-time"), duration(c)));
    }
    if let Some(k) = e.max_rss_kb {
        fields.push((tr!("field-max-memory"), format!("{:.1} MiB", k as f64 / 1024.0)));
    }
    if let Some(d) = &e.detail {
        fields.push((tr!("field-note"), d.clone()));
    }
    if e.cancel_requested && !e.state.is_final() {
        fields.push((tr!("field-cancel"), tr!("status-cancel-requested")));
    }
    let mut r = Reply::new(tone)
        .status(tone, format!("#{} {}", e.id, state_label(e)))
        .fields(fields);
    if !tail.is_empty() {
        r = r.code(render_lines(tail));
        if total > tail.len() as u64 {
            r = r.para(tr!("status-tail", shown = tail.len(), total = total, id = e.id));
        }
    }
    r.card(e.id)
}

/// `history`.
pub fn history(list: &[Execution], catalog: &Catalog, title: String) -> Reply {
    if list.is_empty() {
        return Reply::text(Tone::Info, tr!("history-empty", title = title));
    }
    let rows = list
        .iter()
        .map(|e| {
            vec![
                format!("#{}", e.id),
                shorten(&describe_run(catalog.get(&e.job), &e.job, &e.params), 60),
                state_label(e),
                e.requester_name.clone(),
                when(e.created_at),
                e.duration_ms.map(duration).unwrap_or_default(),
            ]
        })
        .collect();
    Reply::new(Tone::Info).heading(title).table(
        vec![
            tr!("header-id"),
            tr!("header-run"),
            tr!("header-state"),
            tr!("header-by"),
            tr!("header-queued"),
            tr!("header-took"),
        ],
        rows,
    )
}

/// A job's parameters as a form (a Slack modal): the values known so far filled in (secret
/// ones only in a direct conversation, and never shown back), defaults otherwise.
pub fn form(job: &JobSpec, known: &opsbot_core::Params, direct: bool) -> opsbot_core::Form {
    use opsbot_core::{FormField, FormInput, ParamKind};
    let fields = job
        .params
        .iter()
        .filter(|p| direct || !p.secret)
        .map(|p| FormField {
            name: p.name.clone(),
            input: match &p.kind {
                ParamKind::String { .. } => FormInput::Text { secret: p.secret },
                ParamKind::Int { min, max } => FormInput::Number { min: *min, max: *max },
                ParamKind::Enum { values } => FormInput::Choice {
                    options: values.iter().map(|v| v.value.clone()).collect(),
                },
                ParamKind::Bool => FormInput::Bool,
            },
            required: p.required,
            value: if p.secret {
                None
            } else {
                known.get(&p.name).cloned().or_else(|| p.default.clone())
            },
            help: p.help.clone(),
        })
        .collect();
    opsbot_core::Form {
        title: tr!("form-title", job = &job.name),
        command: format!("run {}", job.name),
        fields,
    }
}
