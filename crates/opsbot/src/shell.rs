//! `opsbot shell`: the terminal chat.

use crate::runtime::Runtime;
use anyhow::Result;
use opsbot_adapters::terminal::TerminalAdapter;
use opsbot_core::Adapter;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Runs the terminal chat until end of input (then waits for this session's runs) or Ctrl-C.
pub async fn shell(config: &Path, db: Option<PathBuf>, user: Option<String>, wait: bool, worker: bool, color: &str) -> Result<ExitCode> {
    let mut rt = Runtime::start(config, db, !worker).await?;
    let tty_out = std::io::stdout().is_terminal();
    let interactive = tty_out && std::io::stdin().is_terminal();
    let color = match color {
        "always" => true,
        "never" => false,
        _ => tty_out && std::env::var_os("NO_COLOR").is_none(),
    };
    let user = crate::default_user(user);
    let adapter = Arc::new(TerminalAdapter::new(&user, color, interactive));
    if interactive {
        eprintln!(
            "opsbot shell — {} jobs from {}. You are terminal:{user}. Type `help`; Ctrl-D to leave.",
            rt.config.catalog.len(),
            rt.config.path.display()
        );
    }
    for n in std::mem::take(&mut rt.lost_at_start) {
        adapter.print(&n.reply);
    }

    let (ctx, mut inbox, _stop) = opsbot_core::AdapterContext::standalone();
    let reader = {
        let a = adapter.clone();
        tokio::spawn(async move { a.run(&ctx).await })
    };
    let mut pending: BTreeSet<i64> = BTreeSet::new();
    let mut ended: BTreeSet<i64> = BTreeSet::new();
    let mut input_open = true;
    let mut interrupted = false;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        if !input_open && (!wait || pending.is_empty()) {
            break;
        }
        tokio::select! {
            env = inbox.recv(), if input_open => match env {
                Some(env) => {
                    let out = rt.engine.handle(&env).await;
                    for r in &out.replies {
                        adapter.print(r);
                    }
                    if let Some(id) = out.queued {
                        pending.insert(id);
                    }
                    adapter.show_prompt();
                }
                None => {
                    input_open = false;
                    if wait && !pending.is_empty() {
                        let ids: Vec<String> = pending.iter().map(|i| format!("#{i}")).collect();
                        eprintln!("{}waiting for {} to finish (Ctrl-C to stop them)…", if interactive { "\n" } else { "" }, ids.join(", "));
                    }
                }
            },
            n = rt.notices.recv() => {
                let Some(n) = n else { break };
                let ours = &n.place == adapter.place() || pending.contains(&n.execution);
                // Each end report is printed once, whether the event or the record got here first.
                if ours && !ended.contains(&n.execution) {
                    adapter.print(&n.reply);
                    adapter.show_prompt();
                }
                if n.state.is_final() {
                    ended.insert(n.execution);
                    pending.remove(&n.execution);
                }
            }
            _ = tick.tick(), if !pending.is_empty() => {
                // A run may have been claimed by another process's worker sharing this store; its
                // events never reach this process, so look at the records for our pending runs.
                for id in pending.clone() {
                    if let Ok(Some(e)) = rt.engine.store().execution(id).await
                        && e.state.is_final()
                        && let Ok(Some(n)) = rt.engine.notice_for(id).await
                        && ended.insert(id)
                    {
                        adapter.print(&n.reply);
                        adapter.show_prompt();
                        pending.remove(&id);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                break;
            }
            _ = term.recv() => {
                interrupted = true;
                break;
            }
            _ = hup.recv() => {
                interrupted = true;
                break;
            }
        }
    }
    reader.abort();
    if interrupted && !pending.is_empty() {
        eprintln!("\nstopping {} run(s) started here…", pending.len());
        for id in &pending {
            // Through the engine, as if typed, so the cancel is audited like any other.
            let _ = rt.engine.handle(&adapter.envelope(&format!("cancel {id}"))).await;
        }
        // Let the worker (ours, or another process's) pick up the cancel requests and record
        // the ends; the records say when.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
        while !pending.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            for id in pending.clone() {
                if let Ok(Some(e)) = rt.engine.store().execution(id).await
                    && e.state.is_final()
                {
                    if let Ok(Some(n)) = rt.engine.notice_for(id).await {
                        adapter.print(&n.reply);
                    }
                    pending.remove(&id);
                }
            }
        }
    }
    rt.stop().await;
    Ok(ExitCode::SUCCESS)
}
