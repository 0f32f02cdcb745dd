//! 10,000 concurrent sleeping executions in one worker: how long until all are running, what
//! the worker process holds meanwhile (RSS, threads, file descriptors), what watching them
//! costs in CPU per second, and how long from their end until all are final in the store.
//!
//! The job is `cat FIFO`: a child that sleeps (blocked in `read(2)` on a named pipe, no CPU,
//! no output) until the bench, which holds the pipe's only write end, closes it: then every
//! child reads end-of-file and exits 0 at the same instant. Unlike `sleep 20` this makes "from
//! their end until all are final" a measure from one moment, with all 10,000 ends arriving at
//! once (the worst case for the worker). (A first version used `flock -s LOCK true`; the
//! kernel checks each new waiter against every waiting one, so 10,000 waiters cost O(n²) CPU
//! in the children and slowed the ramp-up they share the machine with.)
//!
//! Steps: queue N executions (untimed), start a worker of concurrency N, poll the store until
//! every execution is running with its process group recorded (= spawned) or final (could not
//! start), measure the process for a steady window without touching the store, close the
//! pipe's write end, poll until all are final. A harness-less bench printing a table: criterion measures
//! time per iteration, not memory or CPU over a window. Nothing here asserts on timings.
//!
//! Open files: every running execution holds its stdout and stderr pipes and a pidfd, 3
//! descriptors. The bench raises its soft RLIMIT_NOFILE to the hard limit, as `opsbot serve`
//! does; `--nofile N` sets both limits to N first (raising the hard limit needs root or
//! CAP_SYS_RESOURCE). Executions that cannot start are reported (how many, from which one on,
//! with the error), not hidden.
//!
//! Run with `cargo bench -p opsbot-worker --bench sleepers [-- --count N] [-- --hold S]
//! [-- --nofile N] [-- --quick]` (or `bench/run.sh`). `--quick`: 1,000 executions, 3 s window.

mod common;

use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Catalog, Runner};
use opsbot_runners::ExecRunner;
use opsbot_store::{SqliteStore, Store};
use opsbot_worker::{Worker, WorkerOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest the bench waits for all executions to be running, and then final.
const PHASE_LIMIT: Duration = Duration::from_secs(300);

struct Args {
    count: usize,
    hold: Duration,
    nofile: Option<u64>,
}

fn args() -> Option<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --benches` runs every bench with `--test` (or `--list`): nothing to measure then.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return None;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str| {
        value(name).map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} takes a whole number, not `{v}`"))
        })
    };
    Some(Args {
        count: num("--count").map_or(if quick { 1_000 } else { 10_000 }, |n| n as usize),
        hold: Duration::from_secs(num("--hold").unwrap_or(if quick { 3 } else { 12 })),
        nofile: num("--nofile"),
    })
}

fn catalog(fifo: &Path) -> Arc<Catalog> {
    let text = format!(
        r#"
[bot]
name = "opsbot"

[jobs.wait]
description = "Sleeps until the bench closes the named pipe"
runner = {{ type = "exec", argv = ["cat", "{}"] }}
timeout = "30m"
"#,
        fifo.display()
    );
    match Config::parse(&text, Path::new("bench-opsbot.toml"), LoadOptions { resolve_secrets: false }) {
        Ok(c) => Arc::new(c.catalog),
        Err(e) => panic!("the bench config does not load: {e:?}"),
    }
}

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into a local struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (lim.rlim_cur, lim.rlim_max)
}

fn set_nofile(soft: u64, hard: u64) -> Result<(), std::io::Error> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads a local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let us = |t: libc::timeval| Duration::from_micros((t.tv_sec * 1_000_000 + t.tv_usec).max(0) as u64);
    us(u.ru_utime) + us(u.ru_stime)
}

/// Open descriptors of this process by kind: `pipe`, `pidfd`, `socket`, `file`, other anon inodes.
fn fds() -> Option<BTreeMap<&'static str, usize>> {
    let mut kinds = BTreeMap::new();
    // Reading the folder takes a descriptor itself: at the limit it fails.
    for e in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let target = std::fs::read_link(e.path())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = if target.starts_with("pipe:") {
            "pipe"
        } else if target.contains("pidfd") {
            "pidfd"
        } else if target.starts_with("socket:") {
            "socket"
        } else if target.starts_with("anon_inode:") {
            "anon_inode"
        } else {
            "file"
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    Some(kinds)
}

fn fds_text(k: &Option<BTreeMap<&str, usize>>) -> String {
    let Some(k) = k else {
        return "unreadable (no descriptor left to open /proc/self/fd)".into();
    };
    let total: usize = k.values().sum();
    let parts: Vec<String> = k.iter().map(|(n, c)| format!("{c} {n}")).collect();
    format!("{total} ({})", parts.join(", "))
}

/// Executions by state, and how many running ones have their process group recorded.
#[derive(Debug, Default, Clone)]
struct Counts {
    queued: i64,
    running: i64,
    spawned: i64,
    succeeded: i64,
    other_final: i64,
}

fn counts(conn: &opsbot_store::rusqlite::Connection) -> Counts {
    conn.query_row(
        "SELECT COALESCE(SUM(state = 'queued'), 0) AS q, COALESCE(SUM(state = 'running'), 0) AS r, \
         COALESCE(SUM(state = 'running' AND pgid IS NOT NULL), 0) AS s, COALESCE(SUM(state = 'succeeded'), 0) AS ok, \
         COALESCE(SUM(state NOT IN ('queued', 'running', 'succeeded')), 0) AS bad FROM executions",
        [],
        |row| {
            Ok(Counts {
                queued: row.get("q")?,
                running: row.get("r")?,
                spawned: row.get("s")?,
                succeeded: row.get("ok")?,
                other_final: row.get("bad")?,
            })
        },
    )
    .expect("count the executions")
}

fn mib(kb: u64) -> String {
    format!("{:.1}", kb as f64 / 1024.0)
}

fn main() {
    let Some(args) = args() else { return };
    let n = args.count;
    let (soft0, hard0) = nofile();
    if let Some(want) = args.nofile
        && let Err(e) = set_nofile(want, want)
    {
        panic!("cannot set RLIMIT_NOFILE to {want} (raising the hard limit needs root): {e}");
    }
    let (_, hard) = nofile();
    set_nofile(hard, hard).expect("raise the soft open-file limit to the hard one");
    let (soft, hard) = nofile();
    eprintln!("sleepers bench: RLIMIT_NOFILE {soft0}/{hard0} at start, {soft}/{hard} now; {n} executions");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("release.fifo");
    let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("a path without NUL");
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) },
        0,
        "mkfifo: {}",
        std::io::Error::last_os_error()
    );
    // Read-write, so opening does not wait for a reader and the children's opens do not wait
    // for a writer; this is the only write end.
    let hold = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the named pipe");
    let mut hold = Some(hold);
    let catalog = catalog(&fifo);
    let runner: Arc<dyn Runner> = Arc::new(ExecRunner::new());

    let mut report: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| {
        eprintln!("sleepers bench: {k}: {v}");
        report.push((k.to_string(), v));
    };
    row("executions", n.to_string());
    row("RLIMIT_NOFILE (soft/hard)", format!("{soft}/{hard} (was {soft0}/{hard0})"));

    rt.block_on(async {
        let db = dir.path().join("opsbot.db");
        let sqlite = SqliteStore::open(&db).await.expect("open the store");
        let maint = sqlite.clone();
        let store: Arc<dyn Store> = Arc::new(sqlite);
        let queue_start = Instant::now();
        for _ in 0..n {
            store
                .create_execution(&common::queued("wait"))
                .await
                .expect("queue an execution");
        }
        row("queueing (untimed part, create_execution × N)", format!("{:.1} s", queue_start.elapsed().as_secs_f64()));

        let (stop_tx, stop_rx) = watch::channel(false);
        let worker = Worker::new(store.clone(), catalog.clone(), runner.clone(), WorkerOptions::new(n));
        // Let the runtime's threads and the pool settle before the baseline.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss0 = common::status_kb("VmRSS:");
        let threads0 = common::status_kb("Threads:");
        let avail0 = common::meminfo_kb("MemAvailable:");
        let fds0 = fds();
        row("before: RSS / threads / open fds", format!("{} MiB / {threads0} / {}", mib(rss0), fds_text(&fds0)));

        let start = Instant::now();
        let cpu_start = cpu_time();
        let handle = tokio::spawn(worker.run(stop_rx, Duration::from_secs(5)));
        let (mut all_claimed, mut all_spawned) = (None, None);
        let mut last = Counts::default();
        let mut stalled_since = Instant::now();
        // (time, executions spawned) as the ramp goes, for its rate at the start and the end.
        let mut curve: Vec<(Duration, i64)> = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let c = counts(&maint.conn().expect("a connection"));
            let t = start.elapsed();
            curve.push((t, c.spawned));
            if c.queued == 0 && all_claimed.is_none() {
                all_claimed = Some(t);
            }
            if c.spawned == n as i64 && all_spawned.is_none() {
                all_spawned = Some(t);
            }
            let progressed = c.queued != last.queued || c.spawned != last.spawned || c.running != last.running;
            last = c.clone();
            if progressed {
                stalled_since = Instant::now();
            }
            // Done when nothing is queued and every running execution has its process; or
            // when nothing moved for 5 s (say, the worker gave up on claiming).
            if (c.queued == 0 && c.spawned == c.running) || stalled_since.elapsed() > Duration::from_secs(5) || t > PHASE_LIMIT {
                break;
            }
        }
        let ramp = start.elapsed();
        let ramp_cpu = cpu_time().saturating_sub(cpu_start);
        let fmt_t = |t: Option<Duration>| t.map_or("never".to_string(), |t| format!("{:.2} s", t.as_secs_f64()));
        row("time until all claimed (state running or final)", fmt_t(all_claimed));
        row("time until all running with their process spawned", fmt_t(all_spawned));
        // When the spawned count first reached `k`.
        let reached = |k: i64| curve.iter().find(|(_, s)| *s >= k).map(|(t, _)| *t);
        let step = (n as i64 / 10).max(1);
        if let (Some(a), Some(b), Some(c)) = (reached(step), reached(n as i64 - step), reached(n as i64)) {
            row(
                "ramp rate: first / last tenth of the executions spawned",
                format!(
                    "{step} in {:.2} s ({:.0}/s) / {step} in {:.2} s ({:.0}/s)",
                    a.as_secs_f64(),
                    step as f64 / a.as_secs_f64(),
                    (c - b).as_secs_f64(),
                    step as f64 / (c - b).as_secs_f64().max(1e-3)
                ),
            );
        }
        row(
            "at the end of the ramp: queued / running (spawned) / succeeded / failed or other",
            format!("{} / {} ({}) / {} / {}", last.queued, last.running, last.spawned, last.succeeded, last.other_final),
        );
        row(
            "ramp: bench CPU time / wall",
            format!("{:.2} s / {:.2} s", ramp_cpu.as_secs_f64(), ramp.as_secs_f64()),
        );
        if last.other_final > 0 {
            let (id, state, detail, before): (i64, String, Option<String>, i64) = maint
                .conn()
                .expect("a connection")
                .query_row(
                    "SELECT id, state, detail, (SELECT COUNT(*) FROM executions r WHERE r.state = 'running' AND r.started_at <= e.started_at) AS running_before \
                     FROM executions e WHERE state NOT IN ('queued', 'running', 'succeeded') ORDER BY started_at, id LIMIT 1",
                    [],
                    |r| Ok((r.get("id")?, r.get("state")?, r.get("detail")?, r.get("running_before")?)),
                )
                .expect("the first execution that did not start");
            row(
                "FIRST EXECUTION THAT DID NOT START",
                format!("#{id} ({state}) with {before} running: {}", detail.unwrap_or_default()),
            );
            let output = store.output_all(id).await.map(|l| l.into_iter().map(|l| l.text).collect::<Vec<_>>().join(" | "));
            row("its output", output.unwrap_or_else(|e| e.to_string()));
        }

        // Steady state: nobody touches the store; the worker watches its children.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu0 = cpu_time();
        let w0 = Instant::now();
        tokio::time::sleep(args.hold).await;
        let cpu = cpu_time().saturating_sub(cpu0);
        let wall = w0.elapsed();
        let rss = common::status_kb("VmRSS:");
        let hwm = common::status_kb("VmHWM:");
        let threads = common::status_kb("Threads:");
        let avail = common::meminfo_kb("MemAvailable:");
        let fds1 = fds();
        let running = last.running.max(1) as u64;
        row(
            "while all sleep: RSS (VmRSS) / peak (VmHWM)",
            format!(
                "{} MiB / {} MiB; +{} MiB over the baseline = {:.1} KiB per running execution",
                mib(rss),
                mib(hwm),
                mib(rss.saturating_sub(rss0)),
                rss.saturating_sub(rss0) as f64 / running as f64
            ),
        );
        row("while all sleep: threads / open fds", format!("{threads} / {}", fds_text(&fds1)));
        row(
            "while all sleep: bench CPU per second of wall time",
            format!(
                "{:.1} ms/s ({:.2} % of one core) over {:.1} s",
                cpu.as_secs_f64() * 1000.0 / wall.as_secs_f64(),
                cpu.as_secs_f64() * 100.0 / wall.as_secs_f64(),
                wall.as_secs_f64()
            ),
        );
        row(
            "machine MemAvailable drop (children included)",
            format!("{} MiB", mib(avail0.saturating_sub(avail))),
        );

        // The end: closing the only write end gives every child end-of-file at once.
        let released = Instant::now();
        let cpu_end0 = cpu_time();
        drop(hold.take());
        let mut c;
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // A child still in `open` (none is expected: all were spawned a window ago) would
            // wait for a writer forever; a writer that comes and goes lets it read end-of-file.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            c = counts(&maint.conn().expect("a connection"));
            if (c.queued == 0 && c.running == 0) || released.elapsed() > PHASE_LIMIT {
                break;
            }
        }
        let drain = released.elapsed();
        row(
            "from their end until all final",
            format!(
                "{:.2} s ({:.0} executions/s), bench CPU {:.2} s",
                drain.as_secs_f64(),
                last.running as f64 / drain.as_secs_f64(),
                cpu_time().saturating_sub(cpu_end0).as_secs_f64()
            ),
        );
        row(
            "final states: succeeded / other",
            format!("{} / {} (still running: {}, queued: {})", c.succeeded, c.other_final, c.running, c.queued),
        );
        row("peak RSS of the process (VmHWM)", format!("{} MiB", mib(common::status_kb("VmHWM:"))));
        let _ = stop_tx.send(true);
        handle.await.expect("the worker task");
        maint.close().await;
    });

    println!();
    println!(
        "{n} concurrent sleeping executions (`cat FIFO`, all ended together by closing the pipe), one worker of concurrency {n}, file SQLite (WAL), {} CPUs",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("| measure | value |");
    println!("|---|---|");
    for (k, v) in &report {
        println!("| {k} | {v} |");
    }
}
