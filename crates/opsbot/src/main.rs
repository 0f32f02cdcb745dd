//! `opsbot`: the command line. Reads the config and wires the parts together.

mod check;
mod run;
mod runtime;
mod serve;
mod shell;
mod token;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// opsbot — run, watch and audit your ops jobs from chat, the terminal and the command line.
#[derive(Parser)]
#[command(name = "opsbot", version, about, long_about = None, after_help = "Start with: opsbot shell --config examples/opsbot.toml\nDocs: docs/configuration.md, docs/architecture.md")]
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
    /// Log filter for opsbot's own log on stderr (e.g. `info`, `opsbot_worker=debug`).
    #[arg(long, global = true, env = "OPSBOT_LOG", default_value = "warn", value_name = "FILTER")]
    log: String,
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
    /// timed out, cancelled or lost, 2 refused (unknown job, bad or missing parameters).
    Run {
        /// The job.
        job: String,
        /// Parameters: key=value, or values in declared order; `--` ends options.
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
        /// Who is asking (default: $USER).
        #[arg(long, short)]
        user: Option<String>,
        /// Confirm a sensitive job without asking.
        #[arg(long, short)]
        yes: bool,
    },
    /// Run the engine, the worker and the HTTP server (REST API, /healthz, /readyz, /metrics)
    /// until stopped (SIGINT/SIGTERM).
    Serve {
        /// Listen here instead of the config's `[web] listen` (e.g. 127.0.0.1:0 for any free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// Do not start the HTTP server.
        #[arg(long)]
        no_web: bool,
    },
    /// Manage API tokens for the REST API (stored hashed; shown once).
    #[command(subcommand)]
    Token(token::TokenCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("opsbot: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Cmd::Check { no_secrets } => check::check(&cli.config, no_secrets),
            Cmd::Shell {
                user,
                no_wait,
                no_worker,
                color,
            } => shell::shell(&cli.config, cli.db, user, !no_wait, !no_worker, &color).await,
            Cmd::Run { job, args, user, yes } => run::run(&cli.config, cli.db, job, args, user, yes).await,
            Cmd::Serve { listen, no_web } => serve::serve(&cli.config, cli.db, listen, no_web).await,
            Cmd::Token(cmd) => token::token(&cli.config, cli.db, cmd).await,
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
