//! `opsbot serve`: the long-running process.

use crate::runtime::Runtime;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs engine, worker and notifier until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn serve(config: &Path, db: Option<PathBuf>) -> Result<ExitCode> {
    let mut rt = Runtime::start(config, db, false).await?;
    eprintln!(
        "opsbot serving {} jobs from {} (store {}, {} worker slots). No chat adapters are configured in this build yet; use `opsbot shell` or `opsbot run` on the same config. Ctrl-C to stop.",
        rt.config.catalog.len(),
        rt.config.path.display(),
        rt.db.display(),
        rt.config.worker.concurrency
    );
    for n in std::mem::take(&mut rt.lost_at_start) {
        tracing::warn!(execution = n.execution, "{}", n.reply.plain_text().trim());
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            n = rt.notices.recv() => match n {
                Some(n) => tracing::info!(execution = n.execution, state = %n.state, place = %n.place, "{}", n.reply.plain_text().lines().next().unwrap_or("")),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("opsbot: stopping (running jobs get 10 s to finish, then are cancelled)…");
    rt.stop().await;
    Ok(ExitCode::SUCCESS)
}
