//! Trivial jobs (`true`) end to end through the worker, with every record in a file-backed
//! SQLite store (WAL): queue N executions, start a worker, time until all N are final.
//!
//! One criterion iteration is one run, so criterion's time is "time per run" at that
//! concurrency and its throughput line is runs per second. A table of runs/s per concurrency
//! is printed at the end as well. Nothing here asserts on timings.
//!
//! Run with `cargo bench -p opsbot-worker --bench throughput` (or `bench/run.sh`).

mod common;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Catalog, ExecState, ExecutionId, Runner};
use opsbot_runners::ExecRunner;
use opsbot_store::{SqliteStore, Store};
use opsbot_worker::{Worker, WorkerOptions};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

/// Worker concurrencies measured.
const CONCURRENCY: &[usize] = &[2, 8, 16];

/// The job as an operator would write it.
const CONFIG: &str = r#"
[bot]
name = "opsbot"

[jobs.noop]
description = "Does nothing, successfully"
runner = { type = "exec", argv = ["true"] }
timeout = "30s"
"#;

/// Runs and time measured per concurrency, for the table at the end (warm-up included).
type Tally = BTreeMap<usize, (u64, Duration, Vec<f64>)>;

fn catalog() -> Arc<Catalog> {
    let config = match Config::parse(CONFIG, Path::new("bench-opsbot.toml"), LoadOptions { resolve_secrets: false }) {
        Ok(c) => c,
        Err(e) => panic!("the bench config does not load: {e:?}"),
    };
    Arc::new(config.catalog)
}

/// Queues `n` runs in a fresh file store, then times a worker of `concurrency` until every
/// one is final. Store opening and queueing are not timed; the worker's start is.
fn batch(rt: &Runtime, catalog: &Arc<Catalog>, runner: &Arc<dyn Runner>, concurrency: usize, n: u64) -> Duration {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("open the store"));
        let mut pending: HashSet<ExecutionId> = HashSet::with_capacity(n as usize);
        for _ in 0..n {
            let e = store.create_execution(&common::queued("noop")).await.expect("queue an execution");
            pending.insert(e.id);
        }
        let mut events = store.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = Worker::new(store.clone(), catalog.clone(), runner.clone(), WorkerOptions::new(concurrency));

        let start = Instant::now();
        let handle = tokio::spawn(worker.run(stop_rx, Duration::from_secs(30)));
        let mut failed = 0u64;
        while !pending.is_empty() {
            match events.recv().await {
                Ok(ev) if ev.state.is_final() => {
                    if pending.remove(&ev.id) && ev.state != ExecState::Succeeded {
                        failed += 1;
                    }
                }
                Ok(_) => {}
                // Fell behind the event channel: ask the store about what is still pending.
                Err(RecvError::Lagged(_)) => {
                    let ids: Vec<ExecutionId> = pending.iter().copied().collect();
                    for id in ids {
                        if let Some(e) = store.execution(id).await.expect("read an execution")
                            && e.state.is_final()
                        {
                            pending.remove(&id);
                            if e.state != ExecState::Succeeded {
                                failed += 1;
                            }
                        }
                    }
                }
                Err(RecvError::Closed) => panic!("the store's event channel closed"),
            }
        }
        let elapsed = start.elapsed();

        let _ = stop_tx.send(true);
        handle.await.expect("the worker task");
        if failed > 0 {
            panic!("{failed} of {n} runs of `true` did not succeed; the measurement would be meaningless");
        }
        elapsed
    })
}

fn bench_throughput(c: &mut Criterion, tally: &Mutex<Tally>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let catalog = catalog();
    let runner: Arc<dyn Runner> = Arc::new(ExecRunner::new());

    let mut g = c.benchmark_group("worker_true_runs");
    // Same number of runs in every sample (≈ measurement time / samples / time per run; about
    // 500 with the defaults in `main`), so the worker's start-up weighs the same in each.
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1));
    for &conc in CONCURRENCY {
        g.bench_function(BenchmarkId::new("concurrency", conc), |b| {
            b.iter_custom(|iters| {
                let t = batch(&rt, &catalog, &runner, conc, iters);
                let mut tally = tally.lock().expect("tally lock");
                let row = tally.entry(conc).or_default();
                row.0 += iters;
                row.1 += t;
                row.2.push(iters as f64 / t.as_secs_f64());
                t
            })
        });
    }
    g.finish();
}

fn print_table(tally: &Tally) {
    // Nothing worth a table in `--test` mode (one run per bench) or when filtered out.
    if tally.values().all(|(runs, _, _)| *runs < 50) {
        return;
    }
    println!();
    println!("worker throughput, trivial job `true`, file SQLite (WAL), {} CPUs", num_cpus());
    println!("(batches include criterion's warm-up ones; each batch is timed from the worker's start to the last run's end)");
    println!("| concurrency | batches | runs | runs/s (all batches) | runs/s (median batch) |");
    println!("|---:|---:|---:|---:|---:|");
    for (conc, (runs, time, rates)) in tally {
        let mut r = rates.clone();
        r.sort_by(f64::total_cmp);
        let median = if r.is_empty() { 0.0 } else { r[r.len() / 2] };
        println!(
            "| {conc} | {} | {runs} | {:.0} | {:.0} |",
            r.len(),
            *runs as f64 / time.as_secs_f64(),
            median
        );
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn main() {
    let tally = Mutex::new(Tally::new());
    // Defaults that command-line options (`--measurement-time`, `--warm-up-time`,
    // `--sample-size`) still override.
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    bench_throughput(&mut c, &tally);
    c.final_summary();
    print_table(&tally.lock().expect("tally lock"));
}
