//! The presenter: turns catalog entries and records into `Reply` documents.

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
        ExecState::Failed => match e.exit_code {
            Some(c) => format!("failed (exit {c})"),
            None => "failed".into(),
        },
        ExecState::TimedOut => "timed out".into(),
        s => s.to_string(),
    }
}

/// Help: built-in verbs and the jobs.
pub fn help(catalog: &Catalog, bot: &str) -> Reply {
    let mut r = Reply::new(Tone::Info).heading(format!("{bot} — run and watch ops jobs"));
    let verbs = vec![
        (
            "help [JOB]".to_string(),
            "this help, or one job's parameters and examples".to_string(),
        ),
        ("list".into(), "the jobs you can run".into()),
        (
            "run JOB key=value …".into(),
            "run a job (also: `JOB key=value`, `!JOB value value`)".into(),
        ),
        ("status ID".into(), "state, timings and last lines of a run".into()),
        ("logs ID [--all]".into(), "output of a run".into()),
        ("cancel ID".into(), "stop a queued or running run".into()),
        ("history [JOB] [--mine] [--limit N]".into(), "recent runs".into()),
        ("whoami".into(), "who opsbot thinks you are, your roles and what they allow".into()),
        (
            "approvals · approve ID · deny ID [why]".into(),
            "open approval requests; vote on one (your own `deny` withdraws it)".into(),
        ),
        (
            "lock [JOB] key=value --reason \"…\" · unlock … · locks".into(),
            "stop runs of a job or a value until unlocked".into(),
        ),
        (
            "link · link CODE · unlink PLATFORM:ID".into(),
            "tie another chat account to you".into(),
        ),
    ];
    r = r.fields(verbs);
    let names: Vec<&str> = catalog.jobs().iter().map(|j| j.name.as_str()).collect();
    if names.is_empty() {
        return r;
    }
    r.para(format!(
        "Jobs you may run: {}. Try `help {}`.",
        names.join(", "),
        names.first().copied().unwrap_or("JOB")
    ))
}

/// Help for one job, generated from its schema.
/// `prefix` is how positional use is shown (the first configured prefix, or none).
pub fn job_help(job: &JobSpec, prefix: &str) -> Reply {
    let mut r = Reply::new(Tone::Info).heading(format!(
        "{} — {}",
        job.name,
        if job.description.is_empty() {
            "(no description)"
        } else {
            &job.description
        }
    ));
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
    r = r.para(format!("Usage: `{} {}`", job.name, usage.join(" ")));
    if !job.params.is_empty() {
        let rows = job
            .params
            .iter()
            .map(|p| {
                let allowed = p.kind.describe();
                let need = match (&p.default, p.required) {
                    (Some(_), _) if p.secret => "default ••••".into(),
                    (Some(d), _) => format!("default {d}"),
                    (None, true) => "required".into(),
                    (None, false) => "optional".into(),
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
            vec!["param".into(), "type".into(), "allowed".into(), "".into(), "help".into()],
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
                notes.push((format!("{} also accepts", p.name), syn.join("; ")));
            }
        }
    }
    if !job.aliases.is_empty() {
        notes.push((
            "Aliases".to_string(),
            job.aliases.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
        ));
    }
    if !job.examples.is_empty() {
        notes.push((
            "Examples".to_string(),
            job.examples.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
        ));
    }
    let order: Vec<&str> = job.params.iter().map(|p| p.name.as_str()).collect();
    if !order.is_empty() {
        notes.push(("Positional order".into(), format!("`{prefix}{} {}`", job.name, order.join(" "))));
    }
    let mut limits = vec![format!("timeout {}", humantime_short(job.timeout))];
    if let Some(c) = job.concurrency {
        limits.push(format!("at most {c} at a time"));
    }
    if job.sensitive {
        limits.push("asks you to confirm".into());
    }
    notes.push(("Limits".into(), limits.join(", ")));
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
        .heading(format!("{} jobs", catalog.len()))
        .table(vec!["job".into(), "params".into(), "description".into()], rows)
        .para("`help JOB` shows a job's parameters and examples.")
}

/// The acknowledgement sent as soon as a run is queued.
pub fn queued(e: &Execution, job: Option<&JobSpec>) -> Reply {
    Reply::new(Tone::Info)
        .status(Tone::Info, format!("#{} queued", e.id))
        .para(format!(
            "{} — I'll report here when it ends. `status {id}` · `logs {id}` · `cancel {id}`",
            describe_run(job, &e.job, &e.params),
            id = e.id
        ))
        .buttons(vec![
            Button {
                label: "Status".into(),
                command: format!("status {}", e.id),
                tone: Tone::Info,
            },
            Button {
                label: "Cancel".into(),
                command: format!("cancel {}", e.id),
                tone: Tone::Error,
            },
        ])
        .card(e.id)
}

/// A job card update when a run starts.
pub fn started(e: &Execution, job: Option<&JobSpec>) -> Reply {
    Reply::new(Tone::Progress)
        .status(Tone::Progress, format!("#{} running", e.id))
        .para(describe_run(job, &e.job, &e.params))
        .buttons(vec![
            Button {
                label: "Logs".into(),
                command: format!("logs {}", e.id),
                tone: Tone::Info,
            },
            Button {
                label: "Cancel".into(),
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
    let mut fields = vec![("requested by".to_string(), e.requester_name.clone())];
    if let Some(ms) = e.duration_ms {
        fields.push(("duration".into(), duration(ms)));
    }
    if let Some(c) = e.exit_code {
        fields.push(("exit code".into(), c.to_string()));
    }
    if let Some(d) = &e.detail {
        fields.push(("note".into(), d.clone()));
    }
    r = r.fields(fields);
    if !tail.is_empty() {
        r = r.code(render_lines(tail));
    }
    if total > tail.len() as u64 {
        r = r.para(format!(
            "… {} earlier line(s) not shown: `logs {} --all`",
            total - tail.len() as u64,
            e.id
        ));
    } else if total == 0 {
        r = r.para("(no output)");
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
            label: "Run again".into(),
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
        ("job".to_string(), describe_run(job, &e.job, &e.params)),
        ("state".into(), state_label(e)),
        ("requested by".into(), format!("{} ({})", e.requester_name, e.requested_by)),
        ("where".into(), e.place.to_string()),
        ("queued".into(), when(e.created_at)),
    ];
    if let Some(t) = e.started_at {
        fields.push(("started".into(), when(t)));
    }
    if let Some(t) = e.finished_at {
        fields.push(("finished".into(), when(t)));
    }
    if let Some(ms) = e.duration_ms {
        fields.push(("duration".into(), duration(ms)));
    } else if let (Some(s), None) = (e.started_at, e.finished_at) {
        fields.push(("running for".into(), duration((Utc::now() - s).num_milliseconds().max(0))));
    }
    if let Some(c) = e.exit_code {
        fields.push(("exit code".into(), c.to_string()));
    }
    if let Some(c) = e.cpu_ms {
        fields.push(("cpu time".into(), duration(c)));
    }
    if let Some(k) = e.max_rss_kb {
        fields.push(("max memory".into(), format!("{:.1} MiB", k as f64 / 1024.0)));
    }
    if let Some(d) = &e.detail {
        fields.push(("note".into(), d.clone()));
    }
    if e.cancel_requested && !e.state.is_final() {
        fields.push(("cancel".into(), "requested".into()));
    }
    let mut r = Reply::new(tone)
        .status(tone, format!("#{} {}", e.id, state_label(e)))
        .fields(fields);
    if !tail.is_empty() {
        r = r.code(render_lines(tail));
        if total > tail.len() as u64 {
            r = r.para(format!("last {} of {} lines — `logs {}` for more", tail.len(), total, e.id));
        }
    }
    r.card(e.id)
}

/// `history`.
pub fn history(list: &[Execution], catalog: &Catalog, title: String) -> Reply {
    if list.is_empty() {
        return Reply::text(Tone::Info, format!("{title}: nothing yet."));
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
            "id".into(),
            "run".into(),
            "state".into(),
            "by".into(),
            "queued".into(),
            "took".into(),
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
        title: format!("Run {}", job.name),
        command: format!("run {}", job.name),
        fields,
    }
}
