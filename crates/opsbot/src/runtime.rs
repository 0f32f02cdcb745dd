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

/// The engine of a config: access rules, natural language (`[nlu]`), the LLM provider
/// (`[nlu.llm]`) and the cron runs (`[schedules.*]`).
pub fn build_engine(config: &Config, catalog: Arc<opsbot_core::Catalog>, store: Arc<dyn Store>) -> Result<Engine> {
    let mut engine = Engine::new(catalog.clone(), config.bot.clone(), store)
        .with_access(config.access.clone())
        .with_crons(config.schedules.clone());
    if config.nlu.enabled {
        engine = engine.with_understander(Arc::new(opsbot_nlu::Nlu::new(&catalog)));
    }
    if let Some(llm) = &config.nlu.llm {
        let client = opsbot_nlu::llm::Llm::new(llm).map_err(|e| anyhow::anyhow!("[nlu.llm]: {e}"))?;
        // The config's secrets never go to the provider, even if someone pastes one.
        let mut scrub = Vec::new();
        for job in catalog.jobs() {
            let opsbot_core::RunnerSpec::Exec { env, secret_env, .. } = &job.runner;
            for k in secret_env {
                if let Some(v) = env.get(k) {
                    scrub.push(v.clone());
                }
            }
        }
        // And every secret the config resolved: adapter credentials, the provider's own key.
        for a in &config.adapters {
            scrub.extend(adapter_secrets(&a.kind));
        }
        scrub.extend(llm.api_key.clone());
        // (Secret params' defaults the client masks by itself.)
        scrub.retain(|s| s.chars().count() >= 4);
        engine = engine.with_llm(Arc::new(client), scrub);
    }
    Ok(engine)
}

/// The secret values of an adapter's settings (tokens, passwords), resolved.
fn adapter_secrets(kind: &opsbot_core::config::AdapterKind) -> Vec<String> {
    use opsbot_core::config::AdapterKind as K;
    match kind {
        K::Irc(c) => c
            .server_password
            .iter()
            .chain(&c.sasl_password)
            .chain(&c.nickserv_password)
            .cloned()
            .collect(),
        K::Matrix(c) => c.access_token.iter().chain(&c.password).cloned().collect(),
        K::Xmpp(c) => vec![c.password.clone()],
        K::Slack(c) => std::iter::once(&c.bot_token)
            .chain(&c.app_token)
            .chain(&c.signing_secret)
            .cloned()
            .collect(),
        K::Mattermost(c) => std::iter::once(&c.token).chain(&c.command_token).cloned().collect(),
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
        let engine = Arc::new(build_engine(&config, catalog.clone(), store.clone())?);

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
