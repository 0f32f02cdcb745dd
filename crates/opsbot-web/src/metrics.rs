//! Prometheus metrics on a recorder owned by the [`crate::AppState`] (never a global one, so
//! several servers can live in one process): request counts, run outcomes, and execution counts
//! read from the store at scrape time (at most once per [`COUNTS_TTL`], see [`CountsCache`]).

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
use opsbot_core::ExecState;
use opsbot_store::{Store, StoreError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long execution counts read from the store are reused before a scrape reads them again.
pub(crate) const COUNTS_TTL: Duration = Duration::from_secs(5);

/// Execution counts by state, as read from the store at some instant.
type Counts = Arc<Vec<(ExecState, u64)>>;

/// The execution counts of `/metrics`, read from the store at most once per [`COUNTS_TTL`] and
/// by one scrape at a time (the `GROUP BY` is costly on a big store and the pool is shared with
/// the worker), however many scrapes come in.
#[derive(Default)]
pub(crate) struct CountsCache {
    /// The last counts read and when.
    value: Mutex<Option<(Instant, Counts)>>,
    /// Held by the one scrape refreshing the counts.
    refresh: tokio::sync::Mutex<()>,
}

impl CountsCache {
    /// The cached counts if younger than the TTL (`fresh`), or any cached counts.
    fn cached(&self, fresh: bool) -> Option<Counts> {
        let v = self.value.lock().unwrap_or_else(|p| p.into_inner());
        v.as_ref()
            .filter(|(at, _)| !fresh || at.elapsed() < COUNTS_TTL)
            .map(|(_, c)| c.clone())
    }

    /// The counts: cached ones while fresh; otherwise read from `store` by this caller, unless
    /// another caller is already reading them — then the stale ones are used if there are any,
    /// else this caller waits for that read.
    pub async fn get(&self, store: &dyn Store) -> Result<Counts, StoreError> {
        if let Some(c) = self.cached(true) {
            return Ok(c);
        }
        let _flight = match self.refresh.try_lock() {
            Ok(g) => g,
            Err(_) => match self.cached(false) {
                Some(stale) => return Ok(stale),
                None => self.refresh.lock().await,
            },
        };
        // Whoever held the lock before may just have refreshed them.
        if let Some(c) = self.cached(true) {
            return Ok(c);
        }
        let counts: Counts = Arc::new(store.count_by_state().await?);
        *self.value.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), counts.clone()));
        Ok(counts)
    }
}

/// Buckets of the execution duration histogram, in seconds: from a quick health check to a
/// long migration.
const DURATION_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// How a run request ended, the `outcome` label of `opsbot_api_runs_total`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RunOutcome {
    /// An execution was queued.
    Queued,
    /// The engine refused it (unknown job, bad value, …).
    Refused,
    /// A sensitive job was not confirmed.
    ConfirmationRequired,
    /// A required parameter was missing.
    MissingParam,
    /// The request itself was unusable (bad parameter values in JSON).
    Invalid,
    /// Something failed on our side.
    Error,
    /// A permission or a policy refused it.
    Forbidden,
    /// It waits for approval.
    ApprovalRequired,
}

impl RunOutcome {
    const ALL: [RunOutcome; 8] = [
        RunOutcome::Queued,
        RunOutcome::Refused,
        RunOutcome::ConfirmationRequired,
        RunOutcome::MissingParam,
        RunOutcome::Invalid,
        RunOutcome::Error,
        RunOutcome::Forbidden,
        RunOutcome::ApprovalRequired,
    ];

    fn label(self) -> &'static str {
        match self {
            RunOutcome::Queued => "queued",
            RunOutcome::Refused => "refused",
            RunOutcome::ConfirmationRequired => "confirmation_required",
            RunOutcome::MissingParam => "missing_param",
            RunOutcome::Invalid => "invalid_params",
            RunOutcome::Error => "error",
            RunOutcome::Forbidden => "forbidden",
            RunOutcome::ApprovalRequired => "approval_required",
        }
    }
}

/// The recorder and what is counted on it.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
}

impl Metrics {
    /// A fresh recorder with the metrics described and the run outcomes at 0.
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("opsbot_execution_duration_seconds".into()),
                DURATION_BUCKETS,
            )
            .expect("the buckets are not empty")
            .build_recorder();
        with_local_recorder(&recorder, || {
            describe_counter!("opsbot_http_requests_total", "HTTP requests answered, by route and status.");
            describe_counter!("opsbot_api_runs_total", "Run requests through the API, by outcome.");
            describe_gauge!("opsbot_executions", "Executions in the store, by state.");
            describe_gauge!("opsbot_queue_depth", "Executions waiting for a worker.");
            describe_counter!(
                "opsbot_messages_total",
                "Messages handed to the engine, by adapter (web_chat, api)."
            );
            describe_gauge!(
                "opsbot_adapter_up",
                "Whether an adapter is connected to its platform (1) or not (0)."
            );
            describe_gauge!(
                "opsbot_adapter_connections",
                "Open connections of an adapter (web_chat: browser sockets)."
            );
            metrics::describe_histogram!(
                "opsbot_execution_duration_seconds",
                metrics::Unit::Seconds,
                "Wall time of finished executions seen by this process, by job and final state."
            );
            gauge!("opsbot_adapter_up", "adapter" => "web_chat").set(1.0);
            gauge!("opsbot_adapter_connections", "adapter" => "web_chat").set(0.0);
            for a in ["web_chat", "api"] {
                counter!("opsbot_messages_total", "adapter" => a).absolute(0);
            }
            for o in RunOutcome::ALL {
                counter!("opsbot_api_runs_total", "outcome" => o.label()).absolute(0);
            }
        });
        Metrics { recorder }
    }

    /// Counts one answered request.
    pub fn request(&self, route: String, status: u16) {
        with_local_recorder(&self.recorder, || {
            counter!("opsbot_http_requests_total", "route" => route, "status" => status.to_string()).increment(1);
        });
    }

    /// Counts one run request by how it ended.
    pub fn run(&self, outcome: RunOutcome) {
        with_local_recorder(&self.recorder, || {
            counter!("opsbot_api_runs_total", "outcome" => outcome.label()).increment(1);
        });
    }

    /// Counts one message handed to the engine by `adapter`.
    pub fn message(&self, adapter: &'static str) {
        with_local_recorder(&self.recorder, || {
            counter!("opsbot_messages_total", "adapter" => adapter).increment(1);
        });
    }

    /// Adds `delta` to the open connections of `adapter`.
    pub fn connections(&self, adapter: &'static str, delta: f64) {
        with_local_recorder(&self.recorder, || {
            gauge!("opsbot_adapter_connections", "adapter" => adapter).increment(delta);
        });
    }

    /// Records the wall time of a finished execution.
    pub fn finished(&self, job: &str, state: ExecState, seconds: f64) {
        with_local_recorder(&self.recorder, || {
            metrics::histogram!("opsbot_execution_duration_seconds", "job" => job.to_string(), "state" => state.as_str()).record(seconds);
        });
    }

    /// Sets the execution gauges (every state, 0 when none) and renders the text format.
    pub fn render(&self, counts: &[(ExecState, u64)], adapters: &[opsbot_engine::chat::Health]) -> String {
        let count = |s: ExecState| counts.iter().filter(|(st, _)| *st == s).map(|(_, n)| *n).sum::<u64>();
        with_local_recorder(&self.recorder, || {
            for s in ExecState::ALL {
                gauge!("opsbot_executions", "state" => s.as_str()).set(count(s) as f64);
            }
            gauge!("opsbot_queue_depth").set(count(ExecState::Queued) as f64);
            for a in adapters {
                let up = if a.connected { 1.0 } else { 0.0 };
                gauge!("opsbot_adapter_connected", "adapter" => a.name.clone(), "type" => a.kind.clone()).set(up);
                gauge!("opsbot_adapter_reconnects", "adapter" => a.name.clone()).set(a.reconnects as f64);
                gauge!("opsbot_adapter_sent", "adapter" => a.name.clone()).set(a.sent as f64);
            }
        });
        self.recorder.handle().render()
    }
}

/// Middleware counting every answer by route template (never the raw path, so unknown paths
/// cannot blow up the label set) and status.
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    state.metrics().request(route, resp.status().as_u16());
    resp
}
