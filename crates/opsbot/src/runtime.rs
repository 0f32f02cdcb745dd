//! Wiring shared by `shell`, `run` and `serve`: config, store, engine, worker, notifier.

use anyhow::{Context, Result, bail};
use opsbot_core::config::{Config, LoadError, LoadOptions};
use opsbot_engine::{Engine, Notice};
use opsbot_runners::ExecRunner;
use opsbot_store::{SqliteStore, Store};
use opsbot_worker::{Worker, WorkerOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How often executions of dead workers are looked for while running.
const RECOVERY_EVERY: Duration = Duration::from_secs(10);

/// The running parts.
pub struct Runtime {
    pub config: Config,
    /// The SQLite file in use (`--db` or the config's `[store] path`).
    pub db: PathBuf,
    pub engine: Arc<Engine>,
    pub notices: mpsc::Receiver<Notice>,
    /// Executions found lost at start-up, already audited.
    pub lost_at_start: Vec<Notice>,
    shutdown: watch::Sender<bool>,
    worker: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Loads the config, printing every problem if it is invalid.
pub fn load_config(path: &Path) -> Result<Config> {
    load_config_with(path, LoadOptions::default())
}

/// [`load_config`] with options (e.g. secret references left unresolved).
pub fn load_config_with(path: &Path, opts: LoadOptions) -> Result<Config> {
    match Config::load_with(path, opts) {
        Ok(c) => Ok(c),
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprint!("{d}");
            }
            bail!(
                "{} problem(s) in {}; `opsbot check --config {}` lists them",
                diags.len(),
                path.display(),
                path.display()
            )
        }
        Err(LoadError::Io { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no config file at `{}`. Pass --config PATH or set OPSBOT_CONFIG; the example is examples/opsbot.toml",
                path.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks runs of dead workers `lost` (audited, announced) and stops what is left of their
/// processes on this host.
async fn recover(engine: &Engine) -> Result<Vec<opsbot_core::Execution>, opsbot_engine::EngineError> {
    let lost = engine.recover_lost(&opsbot_worker::is_dead).await?;
    for e in &lost {
        if let (Some(pgid), Some(worker)) = (e.pgid, e.worker.as_deref())
            && opsbot_worker::is_local(worker)
        {
            let id = e.id;
            let stopped = tokio::task::spawn_blocking(move || opsbot_worker::stop_orphaned_group(id, pgid, Duration::from_secs(5)))
                .await
                .unwrap_or(0);
            if stopped > 0 {
                tracing::warn!(execution = id, pgid, processes = stopped, "stopped the processes of a lost run");
            }
        }
    }
    Ok(lost)
}

impl Runtime {
    /// Starts store, engine, notifier and an in-process worker (none when `no_worker`; `opsbot
    /// run` then adds its own with [`Runtime::run_only`]).
    pub async fn start(config_path: &Path, db: Option<PathBuf>, no_worker: bool) -> Result<Runtime> {
        let config = load_config(config_path)?;
        let db = db.unwrap_or_else(|| config.store.path.clone());
        let store = Arc::new(
            SqliteStore::open(&db)
                .await
                .with_context(|| format!("cannot open the store at {}", db.display()))?,
        );
        let store: Arc<dyn Store> = store;
        let catalog = Arc::new(config.catalog.clone());
        let engine = Arc::new(Engine::new(catalog.clone(), config.bot.clone(), store.clone()).with_access(config.access.clone()));

        let mut lost_at_start = Vec::new();
        for e in recover(&engine).await? {
            if let Some(n) = engine.notice_for(e.id).await? {
                lost_at_start.push(n);
            }
        }

        let (tx, notices) = mpsc::channel(1024);
        let mut background = vec![tokio::spawn(engine.clone().notifier(tx))];
        let recovery_engine = engine.clone();
        background.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(RECOVERY_EVERY).await;
                if let Err(e) = recover(&recovery_engine).await {
                    tracing::error!(error = %e, "lost-execution recovery failed");
                }
            }
        }));

        let (shutdown, shutdown_rx) = watch::channel(false);
        let worker = if no_worker {
            tokio::spawn(async {})
        } else {
            let w = Worker::new(
                store.clone(),
                catalog,
                Arc::new(ExecRunner::new()),
                WorkerOptions::new(config.worker.concurrency),
            );
            tokio::spawn(w.run(shutdown_rx, Duration::from_secs(10)))
        };
        Ok(Runtime {
            config,
            db,
            engine,
            notices,
            lost_at_start,
            shutdown,
            worker,
            background,
        })
    }

    /// Starts a worker that runs only execution `id` and stops after it.
    pub fn run_only(&mut self, id: i64) {
        let mut opts = WorkerOptions::new(1);
        opts.only = Some(id);
        let w = Worker::new(
            self.engine.store().clone(),
            Arc::new(self.config.catalog.clone()),
            Arc::new(ExecRunner::new()),
            opts,
        );
        let rx = self.shutdown.subscribe();
        self.worker = tokio::spawn(w.run(rx, Duration::from_secs(10)));
    }

    /// Stops the worker (running executions get `grace` to end, then are cancelled).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.worker.await;
        // Give the notifier a moment to pass on the last state changes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for b in self.background {
            b.abort();
        }
    }
}
