//! `opsbot serve`: the long-running process.

use crate::runtime::Runtime;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs engine, worker, notifier and the HTTP server until SIGINT or SIGTERM, then shuts down
/// gracefully.
pub async fn serve(config: &Path, db: Option<PathBuf>, listen: Option<SocketAddr>, no_web: bool) -> Result<ExitCode> {
    let mut rt = Runtime::start(config, db, false).await?;
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut web = None;
    let mut web_line = "web server off".to_string();
    if rt.config.web.enabled && !no_web {
        let addr = listen.unwrap_or(rt.config.web.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; set [web] listen in the config or pass --listen ADDR (or --no-web)"))?;
        let bound = listener.local_addr()?;
        let state = opsbot_web::AppState::new(rt.engine.clone());
        web = Some(tokio::spawn(opsbot_web::serve(listener, state, async {
            let _ = web_stopped.await;
        })));
        web_line = format!(
            "REST API on http://{bound}/api/v1 (tokens: `opsbot token create --user NAME`), health on /healthz, metrics on /metrics"
        );
    }
    eprintln!(
        "opsbot serving {} jobs from {} (store {}, {} worker slots); {web_line}. No chat adapters are configured in this build yet; use `opsbot shell` or `opsbot run` on the same config. Ctrl-C to stop.",
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
    let _ = stop_web.send(());
    if let Some(w) = web {
        match w.await {
            Ok(Err(e)) => tracing::error!(error = %e, "the web server ended with an error"),
            Err(e) => tracing::error!(error = %e, "the web server task failed"),
            Ok(Ok(())) => {}
        }
    }
    rt.stop().await;
    Ok(ExitCode::SUCCESS)
}
