//! `opsbot status ID` and `opsbot logs ID` on the local store, and the presentation they share
//! with `opsbot run` and the remote client (`--server`).

use crate::run::print_new_output;
use anyhow::{Context, Result};
use opsbot_adapters::terminal::render;
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::job::JobSpec;
use opsbot_core::{Block, ExecutionId, Reply};
use opsbot_engine::present;
use opsbot_store::{SqliteStore, Store};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Output lines `logs ID` shows without `--all` (as in chat).
pub const LOG_TAIL: usize = 50;
/// Output lines `status ID` shows (as in chat).
pub const STATUS_TAIL: usize = 5;
/// How often `logs --follow` looks for new output in the local store.
const POLL: Duration = Duration::from_millis(200);

/// Whether to colour what goes to stdout: a terminal, and NO_COLOR unset.
pub fn color_stdout() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether to colour what goes to stderr.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// An end-of-run report without its output (already printed above it): state, duration, exit
/// code, note.
pub fn without_output(mut reply: Reply) -> Reply {
    reply.blocks.retain(|b| match b {
        Block::Code { .. } => false,
        Block::Text { text } => !text.contains("earlier line") && !text.contains("(no output)"),
        _ => true,
    });
    reply
}

/// The short summary printed on stderr when a followed execution ends.
pub fn summary(e: &opsbot_core::Execution, job: Option<&JobSpec>) -> Reply {
    without_output(present::finished(e, job, &[], 0))
}

/// The note for a log shown in part.
pub fn partial_note(id: ExecutionId, shown: usize, total: u64) -> String {
    format!("(last {shown} of {total} lines; `opsbot logs {id} --all` prints all of them)")
}

/// Config (secret references left unresolved: reading records needs none) and the store it names.
async fn open(config: &Path, db: Option<PathBuf>) -> Result<(Config, SqliteStore, PathBuf)> {
    let config = crate::runtime::load_config_with(config, LoadOptions { resolve_secrets: false })?;
    let db = db.unwrap_or_else(|| config.store.path.clone());
    if !db.exists() {
        anyhow::bail!(
            "there is no store at {}: nothing has run with this config yet (--db PATH names another one)",
            db.display()
        );
    }
    let store = SqliteStore::open(&db)
        .await
        .with_context(|| format!("cannot open the store at {}", db.display()))?;
    Ok((config, store, db))
}

fn no_such(id: ExecutionId, db: &Path) -> ExitCode {
    eprintln!("opsbot: there is no execution #{id} in the store at {}", db.display());
    ExitCode::from(1)
}

/// `opsbot status ID`: the chat `status` reply for the terminal.
pub async fn status(config: &Path, db: Option<PathBuf>, id: ExecutionId) -> Result<ExitCode> {
    let (config, store, db) = open(config, db).await?;
    let Some(e) = store.execution(id).await? else {
        return Ok(no_such(id, &db));
    };
    let (tail, total) = store.output_tail(id, STATUS_TAIL).await?;
    let reply = present::status(&e, config.catalog.get(&e.job), &tail, total);
    println!("{}", render(&reply, color_stdout()));
    Ok(ExitCode::SUCCESS)
}

/// `opsbot logs ID [--all] [--follow]`: output lines on stdout; with `--follow`, new ones as
/// they are stored until the execution ends, then its summary on stderr.
pub async fn logs(config: &Path, db: Option<PathBuf>, id: ExecutionId, all: bool, follow: bool) -> Result<ExitCode> {
    let (config, store, db) = open(config, db).await?;
    let Some(e) = store.execution(id).await? else {
        return Ok(no_such(id, &db));
    };
    let (lines, total) = if all {
        let lines = store.output_all(id).await?;
        let n = lines.len() as u64;
        (lines, n)
    } else {
        store.output_tail(id, LOG_TAIL).await?
    };
    {
        let mut out = std::io::stdout().lock();
        for l in &lines {
            writeln!(out, "{}", present::render_lines(std::slice::from_ref(l)))?;
        }
        out.flush()?;
    }
    if total > lines.len() as u64 {
        eprintln!("{}", partial_note(id, lines.len(), total));
    }
    if !follow {
        if total == 0 {
            eprintln!("(no output yet: #{id} is {})", e.state);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Follow: the state is read before the output, so once it is final the last read of the
    // output had everything (the worker records the end after the last line).
    let mut printed = total;
    let e = loop {
        let e = store
            .execution(id)
            .await?
            .with_context(|| format!("execution #{id} disappeared from the store"))?;
        printed = print_new_output(&store, id, printed).await?;
        if e.state.is_final() {
            break e;
        }
        tokio::time::sleep(POLL).await;
    };
    eprintln!("{}", render(&summary(&e, config.catalog.get(&e.job)), color_stderr()));
    Ok(if e.state == opsbot_core::ExecState::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
