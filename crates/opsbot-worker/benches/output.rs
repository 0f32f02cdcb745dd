//! Output ingestion: one execution of a job that prints as fast as it can
//! (`yes '<64 characters>' | head -n N`, 65 bytes a line), through the real exec runner and
//! worker into a file SQLite store (WAL), timed from the worker's start until the execution is
//! final in the store (so every stored line is in). Reported per case: MB/s and lines/s of job
//! output taken in, what was stored (lines, text bytes, chunks, growth of the database file and
//! size of its WAL), the bench process's CPU time per MB, and its peak RSS during the run (VmHWM,
//! reset before each run through `/proc/self/clear_refs`).
//!
//! Cases: 10 MB and 130 MB of output, each with `output_limit = "1GiB"` (everything is stored)
//! and with the default limit of 1 MiB (the runner keeps the first 1 MiB of lines plus one
//! "output truncated" note and drains the rest of the pipe unread into lines: that row is the
//! read-and-discard speed).
//!
//! Why a harness-less bench that prints a table rather than criterion: criterion needs at
//! least 10 samples per benchmark, and one 130 MB run takes seconds, so 4 cases × 10 samples
//! would not fit in a few minutes; and what matters here — bytes and lines per second, bytes
//! stored, memory — is not what criterion reports. Each case runs `RUNS` times (1 with
//! `--quick`); the table gives the median run and the range. Nothing here asserts on timings;
//! a run whose stored output is not what the job printed fails the bench.
//!
//! Run with `cargo bench -p opsbot-worker --bench output [-- --quick] [-- --only NAME]` (or
//! `bench/run.sh`).

mod common;

use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Catalog, ExecState, Runner};
use opsbot_runners::ExecRunner;
use opsbot_store::{SqliteStore, Store};
use opsbot_worker::{Worker, WorkerOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Runs per case in a full run.
const RUNS: usize = 3;
/// The line the job prints: 64 characters, 65 bytes with its newline.
const LINE: &str = "a line of text that is about sixty characters long, give or take";

/// (name, lines printed, output_limit or None for the default of 1 MiB)
const CASES: &[(&str, u64, Option<&str>)] = &[
    ("stored_10mb", 160_000, Some("1GiB")),
    ("stored_130mb", 2_000_000, Some("1GiB")),
    ("capped_1mib_of_10mb", 160_000, None),
    ("capped_1mib_of_130mb", 2_000_000, None),
];

fn config(name: &str, lines: u64, limit: Option<&str>) -> Arc<Catalog> {
    let limit = limit.map(|l| format!("output_limit = \"{l}\"\n")).unwrap_or_default();
    let text = format!(
        r#"
[bot]
name = "opsbot"

[jobs.{name}]
description = "Prints {lines} lines as fast as it can"
runner = {{ type = "exec", argv = ["sh", "-c", "yes '{LINE}' | head -n {lines}"] }}
timeout = "10m"
{limit}"#
    );
    match Config::parse(&text, Path::new("bench-opsbot.toml"), LoadOptions { resolve_secrets: false }) {
        Ok(c) => Arc::new(c.catalog),
        Err(e) => panic!("the bench config does not load: {e:?}"),
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
struct Run {
    wall: Duration,
    /// Spawn to reap of the job, as the runner recorded it.
    job_ms: i64,
    stored_lines: i64,
    stored_bytes: i64,
    chunks: i64,
    /// Growth of the main database file, and the WAL file's size, when the run is final.
    db_growth: u64,
    wal: u64,
    cpu: Duration,
    hwm_kb: u64,
    detail: Option<String>,
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0); false when it cannot.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| Duration::from_micros((t.tv_sec * 1_000_000 + t.tv_usec).max(0) as u64);
    us(u.ru_utime) + us(u.ru_stime)
}

fn file_size(db: &Path, ext: &str) -> u64 {
    std::fs::metadata(format!("{}{ext}", db.display())).map(|m| m.len()).unwrap_or(0)
}

fn one_run(rt: &tokio::runtime::Runtime, name: &str, catalog: &Arc<Catalog>, runner: &Arc<dyn Runner>, lines: u64, capped: bool) -> Run {
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("opsbot.db");
        let sqlite = SqliteStore::open(&db).await.expect("open the store");
        let maint = sqlite.clone();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let e = store.create_execution(&common::queued(name)).await.expect("queue the execution");
        let size_before = file_size(&db, "");
        let mut events = store.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = Worker::new(store.clone(), catalog.clone(), runner.clone(), WorkerOptions::new(1));
        reset_peak_rss();
        let cpu0 = cpu_time();
        let start = Instant::now();
        let handle = tokio::spawn(worker.run(stop_rx, Duration::from_secs(30)));
        loop {
            match events.recv().await {
                Ok(ev) if ev.id == e.id && ev.state.is_final() => break,
                Ok(_) => {}
                Err(_) => {
                    // Lagged (cannot happen with one execution) or closed: ask the store.
                    if store.execution(e.id).await.expect("read").is_some_and(|x| x.state.is_final()) {
                        break;
                    }
                }
            }
        }
        let wall = start.elapsed();
        let cpu = cpu_time().saturating_sub(cpu0);
        let (main_size, wal) = (file_size(&db, ""), file_size(&db, "-wal"));
        let hwm_kb = common::status_kb("VmHWM:");
        let _ = stop_tx.send(true);
        handle.await.expect("the worker task");

        let x = store.execution(e.id).await.expect("read").expect("the execution");
        assert_eq!(x.state, ExecState::Succeeded, "{name}: the job did not succeed: {:?}", x.detail);
        let (stored_lines, stored_bytes, chunks) = maint
            .conn()
            .expect("a connection")
            .query_row(
                "SELECT COUNT(*) AS chunks, COALESCE(SUM(n_lines), 0) AS lines, COALESCE(SUM(n_bytes), 0) AS bytes \
                 FROM output_chunks WHERE execution_id = ?1",
                [e.id],
                |r| Ok((r.get("lines")?, r.get("bytes")?, r.get("chunks")?)),
            )
            .expect("output totals");
        let run = Run {
            wall,
            job_ms: x.duration_ms.unwrap_or(0),
            stored_lines,
            stored_bytes,
            chunks,
            db_growth: main_size.saturating_sub(size_before),
            wal,
            cpu,
            hwm_kb,
            detail: x.detail,
        };
        let text_bytes = (LINE.len() as i64) * lines as i64;
        if capped {
            // The first 1 MiB of lines (each counted with its newline), then one System note.
            let kept = (1 << 20) / (LINE.len() as i64 + 1);
            assert_eq!(run.stored_lines, kept + 1, "{name}: not the first 1 MiB of lines plus the note");
            assert!(
                run.detail.as_deref().is_some_and(|d| d.contains("truncated")),
                "{name}: no truncation noted"
            );
        } else {
            assert_eq!(run.stored_lines, lines as i64, "{name}: lines stored");
            assert_eq!(run.stored_bytes, text_bytes, "{name}: text bytes stored");
        }
        maint.close().await;
        run
    })
}

fn median_by<T: Clone>(v: &[T], key: impl Fn(&T) -> f64) -> T {
    let mut s = v.to_vec();
    s.sort_by(|a, b| key(a).total_cmp(&key(b)));
    s[s.len() / 2].clone()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs every bench with `--test` (or `--list`): nothing to measure then.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let runs = if quick { 1 } else { RUNS };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let runner: Arc<dyn Runner> = Arc::new(ExecRunner::new());
    let hwm_works = reset_peak_rss();
    let mut rows = Vec::new();
    for &(name, lines, limit) in CASES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let catalog = config(name, lines, limit);
        let mut results = Vec::new();
        for i in 0..runs {
            let r = one_run(&rt, name, &catalog, &runner, lines, limit.is_none());
            eprintln!(
                "output bench: {name} run {}/{runs}: {:.2} s, {:.1} MB/s",
                i + 1,
                r.wall.as_secs_f64(),
                lines as f64 * (LINE.len() + 1) as f64 / r.wall.as_secs_f64() / 1e6
            );
            results.push(r);
        }
        rows.push((name, lines, limit, results));
    }

    println!();
    println!(
        "output ingestion: one execution of `yes '<64 chars>' | head -n N` (65 bytes a line) through the worker into file SQLite (WAL), {} CPUs; {runs} run(s) per case, median run shown (range of MB/s in brackets)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "| case | output (MB) | lines | time to final (s) | job spawn→exit (s) | MB/s taken in | lines/s | lines stored | text stored (MB) | chunks | DB file growth (MB) | WAL file (MB) | bench CPU s per 100 MB | peak RSS (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, lines, _limit, results) in &rows {
        let mb = *lines as f64 * (LINE.len() + 1) as f64 / 1e6;
        let rate = |r: &Run| mb / r.wall.as_secs_f64();
        let m = median_by(results, rate);
        let lo = results.iter().map(rate).fold(f64::INFINITY, f64::min);
        let hi = results.iter().map(rate).fold(0.0, f64::max);
        let range = if results.len() > 1 {
            format!(" [{lo:.1}–{hi:.1}]")
        } else {
            String::new()
        };
        let hwm = if hwm_works {
            format!("{:.1}", m.hwm_kb as f64 / 1024.0)
        } else {
            "n/a".into()
        };
        println!(
            "| {name} | {mb:.1} | {lines} | {:.2} | {:.2} | {:.1}{range} | {:.0} | {} | {:.2} | {} | {:.1} | {:.1} | {:.2} | {hwm} |",
            m.wall.as_secs_f64(),
            m.job_ms as f64 / 1000.0,
            rate(&m),
            *lines as f64 / m.wall.as_secs_f64(),
            m.stored_lines,
            m.stored_bytes as f64 / 1e6,
            m.chunks,
            m.db_growth as f64 / 1e6,
            m.wal as f64 / 1e6,
            m.cpu.as_secs_f64() / mb * 100.0,
        );
    }
}
