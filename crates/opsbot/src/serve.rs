//! `opsbot serve`: the long-running process.

use crate::runtime::Runtime;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Raises the soft limit on open files to the hard limit: a server holding many connections
/// should meet the system's real ceiling, not the 1024 default (jobs need descriptors too).
/// Returns the limit now in force, if it could be read.
fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain get/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("cannot raise the open-file limit");
                return Some(old);
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Descriptors a running job holds (its stdout and stderr pipes and a pidfd), and what the
/// process needs besides (store, connections, listeners).
const FDS_PER_RUN: u64 = 3;
const FDS_RESERVE: u64 = 200;

/// A warning when the worker could run more jobs at once than the open-file limit allows.
fn fd_warning(limit: u64, concurrency: u64) -> Option<String> {
    let need = concurrency * FDS_PER_RUN + FDS_RESERVE;
    (need > limit).then(|| {
        format!(
            "opsbot: warning: [worker] concurrency = {concurrency} needs about {need} open files, but the limit is {limit}; \
             runs beyond about {} at once will fail to start. Raise the limit (`ulimit -n`, systemd `LimitNOFILE`) or lower the concurrency.",
            limit.saturating_sub(FDS_RESERVE) / FDS_PER_RUN
        )
    })
}

/// How often due scheduled runs are looked for.
const SCHEDULE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// How long open HTTP connections may take to finish at shutdown.
const WEB_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs engine, worker, notifier and the HTTP server until SIGINT or SIGTERM, then shuts down
/// gracefully.
pub async fn serve(config: &Path, db: Option<PathBuf>, listen: Option<SocketAddr>, no_web: bool) -> Result<ExitCode> {
    let fd_limit = raise_open_file_limit();
    let mut rt = Runtime::start(config, db, false).await?;
    if let Some(w) = fd_limit.and_then(|l| fd_warning(l, rt.config.worker.concurrency as u64)) {
        eprintln!("{w}");
    }
    // Chat adapters: built from [adapters.*]; messages they make for web conversations come
    // back through `to_web`, and the web door hands theirs to the runtime.
    let (to_web, mut for_web) = tokio::sync::mpsc::unbounded_channel::<opsbot_engine::Elsewhere>();
    let chat = start_adapters(&rt, to_web).await?;
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut web = None;
    let mut web_state = None;
    let mut web_line = "web server off".to_string();
    if rt.config.web.enabled && !no_web {
        let addr = listen.unwrap_or(rt.config.web.listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}; set [web] listen in the config or pass --listen ADDR (or --no-web)"))?;
        let bound = listener.local_addr()?;
        let (settings, generated) = opsbot_web::session::prepare(&rt.config.web, rt.engine.store().as_ref())
            .await
            .context("cannot prepare the web users")?;
        // Hashing the web passwords (Argon2, 19 MiB each) leaves that much heap behind, which the
        // allocator would keep for the life of the process; give it back now.
        // SAFETY: malloc_trim only releases free memory at the top of the heap.
        unsafe {
            libc::malloc_trim(0);
        }
        let url = rt.config.web.public_url.clone().unwrap_or_else(|| format!("http://{bound}"));
        let users = settings.users.iter().map(|u| u.name.clone()).collect::<Vec<_>>();
        let state = opsbot_web::AppState::with_web(rt.engine.clone(), settings);
        if let Some(c) = &chat {
            state.set_chat_runtime(c.clone());
        }
        web_state = Some(state.clone());
        web = Some(tokio::spawn(opsbot_web::serve(listener, state, async {
            let _ = web_stopped.await;
        })));
        web_line = format!(
            "web console on {url}/ (REST API under /api/v1, tokens: `opsbot token create --user NAME`; health on /healthz, metrics on /metrics)"
        );
        eprintln!("opsbot: open {url}/ in a browser to use the web chat and console.");
        if users.is_empty() {
            eprintln!(
                "opsbot: no web users are configured, so nobody can sign in; add [web.users.NAME] with a password_hash from `opsbot user hash-password` (see docs/configuration.md)."
            );
        }
        for g in &generated {
            eprintln!(
                "opsbot: web user `{}` has the generated password  {}  — it is shown only this once (only its hash is stored). Set {} to choose it, or `opsbot user reset-password {}` for a new one.",
                g.user,
                g.password,
                opsbot_core::config::WebPassword::env_var_for(&g.user),
                g.user
            );
        }
        for u in &rt.config.web.users {
            if let opsbot_core::config::WebPassword::Generated { env } = &u.password
                && !generated.iter().any(|g| g.user == u.name)
            {
                let how = if std::env::var_os(env).is_some_and(|v| !v.is_empty()) {
                    format!("its password is the value of {env}")
                } else {
                    format!(
                        "its generated password was printed at the first start; `opsbot user reset-password {}` makes a new one",
                        u.name
                    )
                };
                eprintln!("opsbot: web user `{}`: {how}.", u.name);
            }
        }
    }
    eprintln!(
        "opsbot serving {} jobs from {} (store {}, {} worker slots); {web_line}. Ctrl-C to stop.",
        rt.config.catalog.len(),
        rt.config.path.display(),
        rt.db.display(),
        rt.config.worker.concurrency
    );
    for n in std::mem::take(&mut rt.lost_at_start) {
        tracing::warn!(execution = n.execution, "{}", n.reply.plain_text().trim());
        if let Some(s) = &web_state {
            s.deliver_notice(&n).await;
        }
        if let Some(c) = &chat {
            c.deliver_notice(&n).await;
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut schedule_tick = tokio::time::interval(SCHEDULE_EVERY);
    schedule_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = schedule_tick.tick() => {
                // Scheduled runs and cron runs that are due: started here, announced in their place.
                match rt.engine.fire_due(chrono::Utc::now()).await {
                    Ok(msgs) if !msgs.is_empty() => match (&web_state, &chat) {
                        (Some(s), _) => s.deliver_elsewhere(&msgs).await,
                        (None, Some(c)) => c.deliver_elsewhere(msgs).await,
                        (None, None) => {}
                    },
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "cannot start scheduled runs"),
                }
            },
            n = rt.notices.recv() => match n {
                Some(n) => {
                    tracing::info!(execution = n.execution, state = %n.state, place = %n.place, "{}", n.reply.plain_text().lines().next().unwrap_or(""));
                    if let Some(s) = &web_state {
                        s.deliver_notice(&n).await;
                    }
                    if let Some(c) = &chat {
                        c.deliver_notice(&n).await;
                    }
                }
                None => break,
            },
            Some(e) = for_web.recv() => {
                match &web_state {
                    Some(s) => s.deliver_elsewhere(std::slice::from_ref(&e)).await,
                    None => tracing::warn!(place = %e.place, "the web server is off; a message for the web chat is dropped"),
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    eprintln!("opsbot: stopping (running jobs get 10 s to finish, then are cancelled)…");
    let _ = stop_web.send(());
    // The worker winds down at the same time as the web server, and open connections get at
    // most WEB_DRAIN to finish: a client that never reads must not keep opsbot up.
    let web_done = async {
        if let Some(mut w) = web {
            match tokio::time::timeout(WEB_DRAIN, &mut w).await {
                Ok(Ok(Err(e))) => tracing::error!(error = %e, "the web server ended with an error"),
                Ok(Err(e)) => tracing::error!(error = %e, "the web server task failed"),
                Ok(Ok(Ok(()))) => {}
                Err(_) => {
                    tracing::warn!("open HTTP connections did not finish within {WEB_DRAIN:?}; closing them");
                    w.abort();
                }
            }
        }
    };
    let chat_done = async {
        if let Some(c) = &chat {
            c.stop().await;
        }
    };
    tokio::join!(web_done, chat_done, rt.stop());
    Ok(ExitCode::SUCCESS)
}

/// Builds and starts the configured chat adapters; `None` when there are none.
async fn start_adapters(
    rt: &Runtime,
    to_web: opsbot_engine::chat::Forward,
) -> Result<Option<std::sync::Arc<opsbot_engine::chat::ChatRuntime>>> {
    if rt.config.adapters.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::new();
    for a in &rt.config.adapters {
        // The accounts [people.*] lists on this adapter (for "join when a person invites").
        let people: Vec<String> = rt
            .config
            .access
            .people
            .iter()
            .flat_map(|p| p.accounts.iter())
            .filter(|acc| acc.platform == a.name)
            .map(|acc| acc.id.clone())
            .collect();
        let adapter = opsbot_adapters::build(a, &people).map_err(|e| anyhow::anyhow!(e))?;
        eprintln!(
            "opsbot: chat adapter `{}` ({}) can {}.",
            a.name,
            a.kind.type_name(),
            match adapter.capabilities().names() {
                n if n.is_empty() => "send plain messages".to_string(),
                n => n.join(", "),
            }
        );
        specs.push(opsbot_engine::chat::AdapterSpec {
            adapter,
            kind: a.kind.type_name().to_string(),
            send_rate: a.send_rate,
            send_burst: a.send_burst,
        });
    }
    Ok(Some(
        opsbot_engine::chat::ChatRuntime::start(rt.engine.clone(), specs, Some(to_web)).await,
    ))
}

#[cfg(test)]
mod tests {
    use super::fd_warning;

    #[test]
    fn warns_when_the_worker_could_run_out_of_descriptors() {
        assert_eq!(fd_warning(1024, 8), None);
        assert_eq!(fd_warning(20_000, 6_000), None);
        let w = fd_warning(20_000, 10_000).expect("10,000 runs need 30,200 descriptors");
        assert!(w.contains("needs about 30200 open files, but the limit is 20000"), "{w}");
        assert!(w.contains("beyond about 6600 at once"), "{w}");
    }
}
