//! `opsbot`: the command line. Reads the config and wires the parts together; with `--server URL`,
//! `run`, `status` and `logs` are a client of another opsbot's REST API instead ([`client`]).

mod audit;
mod can;
mod check;
mod client;
mod run;
mod runtime;
mod serve;
mod shell;
mod status;
mod token;
mod understand;
mod user;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// opsbot — run, watch and audit your ops jobs from chat, the terminal and the command line.
#[derive(Parser)]
#[command(
    name = "opsbot",
    version,
    about,
    long_about = None,
    after_help = "Start with: opsbot serve --config examples/opsbot.toml  (then open the printed URL; the demo user's\n\
  password is printed at the first start) — or opsbot shell --config examples/opsbot.toml in the terminal\n\
Remote: `run`, `status` and `logs` with --server URL (or OPSBOT_SERVER) use that opsbot's REST API,\n\
  with the API token in OPSBOT_TOKEN (never a flag): OPSBOT_TOKEN=opsb_… opsbot --server URL logs 12\n\
Docs: docs/configuration.md, docs/web-console.md, docs/api.md, docs/architecture.md, docs/security.md"
)]
struct Cli {
    /// The config file.
    #[arg(
        long,
        short,
        global = true,
        env = "OPSBOT_CONFIG",
        default_value = "opsbot.toml",
        value_name = "PATH"
    )]
    config: PathBuf,
    /// Use this SQLite file instead of the config's `[store] path`.
    #[arg(long, global = true, env = "OPSBOT_DB", value_name = "PATH")]
    db: Option<PathBuf>,
    /// Log filter for opsbot's own log on stderr (e.g. `info`, `opsbot_worker=debug`;
    /// `opsbot_store::sql=trace` logs every SQL statement with its time).
    #[arg(long, global = true, env = "OPSBOT_LOG", default_value = "warn", value_name = "FILTER")]
    log: String,
    /// For `run`, `status` and `logs`: talk to the opsbot server at URL (`opsbot serve`'s REST
    /// API, http:// or https://) instead of the local store; the config file is then not read.
    /// The API token comes from the environment variable OPSBOT_TOKEN (never a flag, so it does
    /// not show up in `ps`); an admin creates one on the server with `opsbot token create --user NAME`.
    #[arg(long, global = true, env = "OPSBOT_SERVER", value_name = "URL")]
    server: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Talk to the bot in the terminal (interactive, or lines from a pipe).
    ///
    /// Every line is a message to the bot, as the given user. Try `help`, `list`,
    /// `deploy web to staging`, `status 1`. At end of input the shell waits for the runs it
    /// started to finish and prints their results (unless --no-wait).
    Shell {
        /// Who you are in this chat (default: $USER).
        #[arg(long, short)]
        user: Option<String>,
        /// At end of input, do not wait for runs started in this session to finish: runs still
        /// going get 10 s, then are cancelled (this process is their worker). With
        /// --no-worker they go on in the process that runs them.
        #[arg(long)]
        no_wait: bool,
        /// Do not run jobs in this process: queue them for another opsbot process on the same
        /// store (e.g. `opsbot serve`) and report their ends from the records.
        #[arg(long)]
        no_worker: bool,
        /// Colours: auto (when stdout is a terminal and NO_COLOR is unset), always, never.
        #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
        color: String,
    },
    /// Check the config file and report every problem with file:line:col.
    Check {
        /// Do not resolve ${env:…} / ${file:…} secret references (for CI without secrets).
        #[arg(long)]
        no_secrets: bool,
    },
    /// Run a job from the command line with the same checks as chat, wait and print the result.
    ///
    /// Example: opsbot run deploy app=web env=staging. Exit code: 0 succeeded, 1 failed,
    /// timed out, cancelled or lost (or the server could not be reached), 2 refused (unknown job,
    /// bad or missing parameters, not confirmed, not allowed, no valid API token), 3 waiting for
    /// approval (a policy asks for it; the run starts once approvers say `approve ID`). Ctrl-C
    /// stops the job.
    ///
    /// With --server URL (or OPSBOT_SERVER) the job runs on that opsbot server, through its REST
    /// API, as the web user of the API token in the environment variable OPSBOT_TOKEN; its output
    /// is streamed back the same way and no config file is read.
    Run {
        /// The job.
        job: String,
        /// Parameters: key=value, or values in declared order; `--` ends options.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
        /// Who is asking (default: $USER). Not with --server: there the token's user asks.
        #[arg(long, short)]
        user: Option<String>,
        /// Confirm a sensitive job without asking.
        #[arg(long, short)]
        yes: bool,
    },
    /// Show one execution: state, who asked, when, duration, exit code and its last output lines.
    ///
    /// The same as `status ID` in chat. Exit code: 0 when it exists, 1 when it does not. Reads
    /// the config's store (or --db); with --server URL (or OPSBOT_SERVER) asks that opsbot server
    /// instead, with the API token in the environment variable OPSBOT_TOKEN.
    Status {
        /// The execution (`12` or `#12`).
        #[arg(value_name = "ID", value_parser = execution_id)]
        id: i64,
    },
    /// Print an execution's output: the last 50 lines, all of them with --all.
    ///
    /// stderr lines start with `[stderr] `, opsbot's own notes with `[opsbot] `. --follow keeps
    /// printing new lines until the execution ends, then its summary. Exit code: 0 when it exists
    /// (with --follow: when it succeeded), 1 otherwise. Reads the config's store (or --db); with
    /// --server URL (or OPSBOT_SERVER) asks that opsbot server instead, with the API token in the
    /// environment variable OPSBOT_TOKEN.
    Logs {
        /// The execution (`12` or `#12`).
        #[arg(value_name = "ID", value_parser = execution_id)]
        id: i64,
        /// All lines, not only the last 50.
        #[arg(long, short)]
        all: bool,
        /// Keep printing new lines until the execution ends; exit 0 if it succeeded, else 1.
        #[arg(long, short)]
        follow: bool,
    },
    /// Run the engine, the worker, the chat adapters and the HTTP server until stopped (SIGINT/SIGTERM).
    ///
    /// Chat adapters are the config's `[adapters.NAME]` tables (Slack, Mattermost, IRC, Matrix,
    /// XMPP; see docs/adapters/), all connected at once and reconnected by themselves. The HTTP server (`[web] listen`, default 127.0.0.1:8080) has the web console and web chat
    /// (sign in as a `[web.users.NAME]`; a user with `generated_password = true` gets a password
    /// printed at the first start), the REST API under /api/v1, /healthz, /readyz, /metrics, and
    /// /hooks/NAME/… where Slack (Events API mode) and Mattermost call their adapters back
    /// (`opsbot check` prints the exact URLs). The address to open is printed at start.
    Serve {
        /// Listen here instead of the config's `[web] listen` (e.g. 127.0.0.1:0 for any free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Do not start the HTTP server.
        #[arg(long)]
        no_web: bool,
    },
    /// Explain what the access rules and policies decide for a person, without running anything.
    ///
    /// WHO is a person of the config (`ana`) or an account (`slack:U024BE7LH`, `web:ana`);
    /// VERB is run, cancel, approve, view or admin. Prints the rule that allowed or denied it
    /// and, for `run`, what the policies say right now (approvals needed, a freeze, hours).
    /// Example: opsbot can ana run deploy app=web env=prod. Exit code: 0 allowed, 1 denied,
    /// 2 a question that does not fit the config.
    Can {
        /// A person (`[people.KEY]`) or an account PLATFORM:ID.
        who: String,
        /// run, cancel, approve, view or admin.
        verb: String,
        /// The job.
        job: String,
        /// Parameter values, key=value (defaults fill the rest).
        args: Vec<String>,
        /// The place asked from, PLATFORM/CHANNEL (default: the web chat's first channel, e.g. web/ops).
        #[arg(long = "in", value_name = "PLACE")]
        place: Option<String>,
    },
    /// Explain what opsbot would make of a text, without running anything.
    ///
    /// Prints the language, the layer that read it (the command grammar and alias templates,
    /// or natural language), the verdict (proceed, confirm "Did you mean …?", choose between
    /// readings, refuse, or not understood), the command with its values, the time it would be
    /// scheduled for, the confidence and why. Use it to debug a catalog's aliases and synonyms.
    /// `--eval FILE.tsv` scores a labelled file instead (see bench/nlu/dev.tsv for the format)
    /// and prints accuracy, must-not-run cases that would run, and time per utterance with this
    /// catalog and a generated one of `--jobs` jobs; its exit code is 1 when a must-not-run case
    /// would run.
    /// Examples: opsbot understand "push worker 3.1.0 out to staging" · opsbot understand "看一下
    /// web 最近 50 行日志" --json · opsbot understand --eval bench/nlu/dev.tsv
    Understand {
        /// The text, as someone would write it to the bot (without the mention).
        text: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Score a labelled file (TEXT<TAB>EXPECTED[<TAB>WHEN] lines, `# now:` and `# tz:` headers).
        #[arg(long, value_name = "FILE.tsv")]
        eval: Option<PathBuf>,
        /// Read times (`at 23:30`, `in 2 hours`) relative to this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        now: Option<String>,
        /// With --eval: the size of the generated catalog to time (default 500 jobs).
        #[arg(long, value_name = "N")]
        jobs: Option<usize>,
    },
    /// Manage API tokens for the REST API (stored hashed; shown once).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// The audit trail: prove its hash chain (`verify`), print its records (`export`).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Web console users: hash a password for the config, reset a generated one.
    #[command(subcommand)]
    User(user::UserCmd),
}

/// An execution id on the command line: `12` or `#12`.
fn execution_id(s: &str) -> Result<i64, String> {
    opsbot_engine::grammar::parse_id(s).ok_or_else(|| format!("`{s}` is not an execution id (a whole number like 12 or #12)"))
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // --server on the command line is for the commands that can use it; from the environment
    // it is simply not used by the others (OPSBOT_SERVER may be set for a whole session).
    let server_flag = matches.value_source("server") == Some(ValueSource::CommandLine);
    let server = cli.server.clone().filter(|s| !s.trim().is_empty());
    // The one TLS implementation for HTTPS servers: rustls with ring, installed before any client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // The certificate verifier logs a failed verification as an error of its own; the client
    // already reports it, naming the server. Shown when asked for by name.
    if !cli.log.contains("rustls")
        && let Ok(d) = "rustls_platform_verifier=off".parse()
    {
        filter = filter.add_directive(d);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsbot: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match (server, cli.command) {
            (Some(url), Cmd::Run { job, args, user, yes }) => Ok(client::run(&url, job, args, user, yes).await),
            (Some(url), Cmd::Status { id }) => Ok(client::status(&url, id).await),
            (Some(url), Cmd::Logs { id, all, follow }) => Ok(client::logs(&url, id, all, follow).await),
            (Some(_), _) if server_flag => {
                eprintln!(
                    "opsbot: --server works with `run`, `status` and `logs`; `opsbot {}` works on the local config and store",
                    matches.subcommand_name().unwrap_or("")
                );
                Ok(ExitCode::from(2))
            }
            (_, command) => local(&cli.config, cli.db, command).await,
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("opsbot: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// Runs a command on the local config and store.
async fn local(config: &std::path::Path, db: Option<PathBuf>, command: Cmd) -> anyhow::Result<ExitCode> {
    match command {
        Cmd::Check { no_secrets } => check::check(config, no_secrets),
        Cmd::Understand {
            text,
            json,
            eval,
            now,
            jobs,
        } => understand::understand(config, text, json, eval.as_deref(), now, jobs),
        Cmd::Shell {
            user,
            no_wait,
            no_worker,
            color,
        } => shell::shell(config, db, user, !no_wait, !no_worker, &color).await,
        Cmd::Run { job, args, user, yes } => run::run(config, db, job, args, user, yes).await,
        Cmd::Status { id } => status::status(config, db, id).await,
        Cmd::Logs { id, all, follow } => status::logs(config, db, id, all, follow).await,
        Cmd::Serve { listen, no_web } => serve::serve(config, db, listen, no_web).await,
        Cmd::Can {
            who,
            verb,
            job,
            args,
            place,
        } => can::can(config, db, who, verb, job, args, place).await,
        Cmd::Token(cmd) => token::token(config, db, cmd).await,
        Cmd::Audit(cmd) => audit::audit(config, db, cmd).await,
        Cmd::User(cmd) => user::user(config, db, cmd).await,
    }
}

/// An error and its causes on one line, leaving out causes that only repeat what was said
/// (database errors tend to quote their source in their own message).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The user name to act as: the flag, else $USER, else `user`.
pub fn default_user(flag: Option<String>) -> String {
    flag.filter(|u| !u.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "user".to_string())
}
