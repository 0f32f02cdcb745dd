//! The store at 1,000,000 executions: the calls the engine, the worker, the chat `history`
//! command and the HTTP API make, on a file SQLite database in WAL mode (as in production).
//!
//! The database is generated once and cached under the cargo target directory
//! (`target/bench-data/store-1m-v<migration>-<schema hash>-g<generator>.sqlite`); it is
//! regenerated when missing or when the migrations change. Generating it through the `Store`
//! API would take ~180 µs a row (≈ 3 minutes), so the schema comes from the store's own
//! migrations (`SqliteStore::open`) and the rows are written by plain multi-row `INSERT`s in
//! one transaction on one of the store's connections: 1,000,000 executions (20 jobs and 500 users, both
//! skewed: a few jobs and people make most runs; 92 % succeeded, 5 % failed, the rest
//! cancelled / timed out / lost; one year of timestamps, rising with the id; params JSON) and
//! their audit records (one `run accepted` per execution, a `cancel` per cancelled one, a
//! refused `run` every 30 executions), hash-chained exactly as `Store::audit` chains them.
//!
//! Every run works on a fresh copy of the cached file (in a temporary directory, deleted at
//! the end), so the inserts measured here never grow the cache and every run starts from the
//! same 1,000,000 rows. The insert and claim benches add up to ~50,000 rows to the copy (< 5 %).
//! The table's header also gives the WAL file's size after the reads, the inserts and the
//! claims, and what a passive checkpoint can do at the end.
//!
//! One criterion iteration is one store call; the table at the end gives, per call, the mean
//! of all timed calls and the median of criterion's per-sample means, and the rows it returned.
//! Nothing here asserts on timings; the setup does check that each query returns what its
//! name says (a page of 50 rows, or none), so a broken filter cannot pass for a fast one.
//!
//! Run with `cargo bench -p opsbot-store --bench store` (or `bench/run.sh`).
//! `OPSBOT_BENCH_STORE_ROWS=N` generates (and caches) a database of N executions instead; the
//! query checks need enough rows for every page (a few hundred thousand).

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{BenchmarkId, Criterion};
use opsbot_core::{ExecState, ExecutionId, NewExecution, Params, Place, UserId};
use opsbot_store::rusqlite;
use opsbot_store::{AuditFilter, AuditRecord, ExecutionFilter, Finish, GENESIS_HASH, SqliteStore, Store, audit_hash};
use rusqlite::ToSql;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Executions in the generated database.
const ROWS: u64 = 1_000_000;
/// Changes whenever the generator below writes different rows (part of the cache file name).
const GENERATOR: u32 = 1;
/// Rows per multi-row `INSERT` (22 bound values each for executions, 16 for audit records).
const BATCH: usize = 500;
/// The worker id written into generated rows and used by the claim bench.
const WORKER: &str = "ops-1#4026531836:4242";

/// Jobs of the generated history, most frequent first (weights fall off as 1/(rank+1)).
const JOBS: [&str; 20] = [
    "deploy",
    "restart",
    "healthcheck",
    "logs",
    "scale",
    "rollback",
    "db-backup",
    "cache-flush",
    "cert-renew",
    "migrate",
    "dns-update",
    "canary",
    "feature-flag",
    "rotate-keys",
    "vacuum",
    "reindex",
    "drain-node",
    "snapshot",
    "purge-cdn",
    "disk-report",
];
/// People (accounts) of the generated history.
const USERS: u32 = 500;
/// Channels runs are asked for in.
const CHANNELS: u32 = 30;
/// Rows a history page asks for: the chat `history` command (default 10 shown, 5× read) and
/// the console list.
const PAGE: u32 = 50;
/// The API asks for one more than its default page of 50 to learn whether an older page exists.
const API_PAGE: u32 = 51;

/// Per-bench tally: (calls timed, total time, per-sample mean times in µs, rows returned by the
/// last call).
type Tally = BTreeMap<String, (u64, Duration, Vec<f64>, Option<usize>)>;

/// splitmix64: a small deterministic generator, so every generated database is the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// An index drawn from cumulative weights.
    fn pick(&mut self, cumulative: &[f64]) -> usize {
        let total = cumulative.last().copied().unwrap_or(1.0);
        let x = self.unit() * total;
        cumulative.partition_point(|&c| c <= x).min(cumulative.len() - 1)
    }
}

fn cumulative(n: usize, exponent: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (0..n)
        .map(|k| {
            acc += 1.0 / ((k + 1) as f64).powf(exponent);
            acc
        })
        .collect()
}

fn user(k: u32) -> UserId {
    // Most people on one chat platform, some on the web console.
    if k % 7 == 6 {
        UserId::new("web", format!("user{k:03}"))
    } else {
        UserId::new("slack", format!("U{:08X}", 0x1000_0000 + k * 7919))
    }
}

fn user_name(k: u32) -> String {
    format!("Person {k:03}")
}

fn place(k: u32, thread: bool) -> Place {
    let mut p = Place::new("slack", format!("C{:07}", 1_000_000 + k * 37));
    if thread {
        p.thread = Some(format!("17{:08}.{:06}", k * 131, k * 17));
    }
    p
}

/// Params as the job would take them.
fn params(rng: &mut Rng, job: usize) -> Params {
    const ENVS: [&str; 3] = ["prod", "staging", "dev"];
    let mut p = Params::new();
    match job {
        // deploy, rollback, canary: app, env, version
        0 | 5 | 11 => {
            p.insert("app".into(), format!("svc-{}", rng.below(40)));
            p.insert("env".into(), ENVS[rng.below(3) as usize].into());
            p.insert(
                "version".into(),
                format!("v{}.{}.{}", 1 + rng.below(4), rng.below(30), rng.below(20)),
            );
        }
        // restart, scale, logs: app, env (+ replicas / lines)
        1 | 3 | 4 => {
            p.insert("app".into(), format!("svc-{}", rng.below(40)));
            p.insert("env".into(), ENVS[rng.below(3) as usize].into());
            if job == 4 {
                p.insert("replicas".into(), (1 + rng.below(12)).to_string());
            }
            if job == 3 {
                p.insert("lines".into(), "200".into());
            }
        }
        // healthcheck and friends: env only, or nothing
        _ if job.is_multiple_of(2) => {
            p.insert("env".into(), ENVS[rng.below(3) as usize].into());
        }
        _ => {}
    }
    p
}

/// The JSON the store writes for params (a `BTreeMap` of strings, in key order).
fn params_json(p: &Params) -> String {
    serde_json::to_string(p).expect("params as JSON")
}

/// One generated execution row.
struct ExecRow {
    id: i64,
    job: usize,
    params: String,
    user: u32,
    place: u32,
    thread: bool,
    state: ExecState,
    created_at: i64,
    started_at: i64,
    finished_at: i64,
    exit_code: Option<i64>,
    duration_ms: i64,
    cpu_ms: Option<i64>,
    max_rss_kb: Option<i64>,
    detail: Option<&'static str>,
    pgid: i64,
}

/// One generated audit row with its chain links.
struct AuditRow {
    record: AuditRecord,
    params: Option<String>,
    prev_hash: String,
    hash: String,
}

/// Where generated databases are cached: `<target>/bench-data`. The bench binary lives in
/// `<target>/<profile>/deps/`.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("bench-data");
    }
    let exe = std::env::current_exe().expect("the bench's own path");
    exe.ancestors()
        .nth(3)
        .map(|t| t.join("bench-data"))
        .expect("the bench runs from <target>/<profile>/deps")
}

/// `(highest migration, short hash of every migration's checksum)` of this build's store.
async fn schema_key() -> (i64, String) {
    let store = SqliteStore::memory().await.expect("an in-memory store");
    schema_of(&store.conn().expect("a connection"))
}

fn schema_of(conn: &rusqlite::Connection) -> (i64, String) {
    let mut stmt = conn
        .prepare("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
        .expect("the migrations table");
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>("version")?, r.get::<_, Vec<u8>>("checksum")?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .expect("the migrations table");
    let mut h = Sha256::new();
    let mut top = 0;
    for (v, c) in &rows {
        h.update(v.to_be_bytes());
        h.update(c);
        top = top.max(*v);
    }
    (top, hex::encode(&h.finalize()[..6]))
}

/// Writes `rows` executions and their audit trail into a fresh database at `path`.
async fn generate(path: &Path, rows: u64) {
    let _ = std::fs::remove_file(path);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    // The store creates the file and its schema, as in production.
    let store = SqliteStore::open(path).await.expect("create the database");
    let mut conn = store.conn().expect("a connection");
    let jobs_w = cumulative(JOBS.len(), 1.0);
    let users_w = cumulative(USERS as usize, 0.8);
    let mut rng = Rng(0x0005_eed0_f0b5_u64);
    let now = Utc::now().timestamp_millis();
    let year_ms: i64 = 365 * 24 * 3600 * 1000;
    let first = now - year_ms;
    let spacing = year_ms / rows.max(1) as i64;

    let tx = conn.transaction().expect("begin");
    let mut execs: Vec<ExecRow> = Vec::with_capacity(BATCH);
    let mut audits: Vec<AuditRow> = Vec::with_capacity(BATCH);
    let mut prev = GENESIS_HASH.to_string();
    let mut audit_id = 0i64;
    for i in 0..rows {
        let id = i as i64 + 1;
        let job = rng.pick(&jobs_w);
        let uk = rng.pick(&users_w) as u32;
        let place_k = (uk * 3 + rng.below(4) as u32) % CHANNELS;
        let thread = rng.below(5) == 0;
        let p = params(&mut rng, job);
        let created_at = first + i as i64 * spacing + rng.below(spacing.max(1) as u64) as i64;
        let started_at = created_at + 20 + rng.below(1500) as i64;
        // Deploy-like jobs take minutes, checks seconds.
        let duration_ms = match job {
            0 | 5 | 9 | 11 | 16 => 20_000 + rng.below(280_000) as i64,
            6 | 13 | 14 | 15 | 17 => 5_000 + rng.below(120_000) as i64,
            _ => 300 + rng.below(8_000) as i64,
        };
        let roll = rng.below(1000);
        let state = match roll {
            0..920 => ExecState::Succeeded,
            920..970 => ExecState::Failed,
            970..985 => ExecState::Cancelled,
            985..995 => ExecState::TimedOut,
            _ => ExecState::Lost,
        };
        let (exit_code, detail) = match state {
            ExecState::Succeeded => (Some(0), None),
            ExecState::Failed => (Some(1 + rng.below(2) as i64), None),
            ExecState::Cancelled => (None, Some("stopped on request")),
            ExecState::TimedOut => (None, Some("stopped: it ran past its timeout")),
            _ => (None, Some("its worker ops-1#4026531836:4242 stopped before it finished")),
        };
        let ended = !matches!(state, ExecState::Lost);
        let row = ExecRow {
            id,
            job,
            params: params_json(&p),
            user: uk,
            place: place_k,
            thread,
            state,
            created_at,
            started_at,
            finished_at: started_at + duration_ms,
            exit_code,
            duration_ms,
            cpu_ms: ended.then(|| duration_ms / (3 + rng.below(20) as i64)),
            max_rss_kb: ended.then(|| 2_000 + rng.below(200_000) as i64),
            detail,
            pgid: 1000 + rng.below(30_000) as i64,
        };

        let account = user(uk);
        let mut audit = |at: i64, action: &str, decision: &str, reason: Option<&str>, exec: Option<i64>, ps: Option<&Params>| {
            audit_id += 1;
            let record = AuditRecord {
                id: audit_id,
                at: DateTime::from_timestamp_millis(at).expect("a timestamp in range"),
                actor: account.clone(),
                actor_name: user_name(uk),
                place: place(place_k, thread),
                action: action.into(),
                job: Some(JOBS[job].into()),
                params: ps.cloned(),
                decision: decision.into(),
                reason: reason.map(str::to_string),
                execution_id: exec,
            };
            let hash = audit_hash(&prev, &record);
            let row = AuditRow {
                params: record.params.as_ref().map(params_json),
                record,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            };
            audits.push(row);
        };
        if i % 30 == 29 {
            audit(
                created_at - 1000,
                "run",
                "refused",
                Some("only the deployers role may run it in prod"),
                None,
                Some(&p),
            );
        }
        audit(created_at, "run", "accepted", None, Some(id), Some(&p));
        if state == ExecState::Cancelled {
            audit(started_at + duration_ms / 2, "cancel", "accepted", None, Some(id), None);
        }
        execs.push(row);
        if execs.len() >= BATCH {
            insert_executions(&tx, &execs);
            execs.clear();
        }
        if audits.len() >= BATCH {
            insert_audits(&tx, &audits);
            audits.clear();
        }
    }
    insert_executions(&tx, &execs);
    insert_audits(&tx, &audits);
    tx.commit().expect("commit");
    // Leave everything in the main file, so that copying it copies the whole database.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    drop(conn);
    store.close().await;
}

fn insert_executions(tx: &rusqlite::Connection, rows: &[ExecRow]) {
    if rows.is_empty() {
        return;
    }
    let one = format!("({})", vec!["?"; 22].join(", "));
    let sql = format!(
        "INSERT INTO executions (id, job, params, requested_by_platform, requested_by_id, requester_name, \
         place_platform, place_channel, place_thread, state, created_at, started_at, finished_at, exit_code, \
         duration_ms, cpu_ms, max_rss_kb, detail, worker, lease_until, cancel_requested, pgid) VALUES {}",
        vec![one; rows.len()].join(", ")
    );
    let mut q = tx.prepare_cached(&sql).expect("prepare the executions insert");
    let mut bound = Binder::default();
    for r in rows {
        let u = user(r.user);
        let p = place(r.place, r.thread);
        let values: [&dyn ToSql; 22] = [
            &r.id,
            &JOBS[r.job],
            &r.params,
            &u.platform,
            &u.id,
            &user_name(r.user),
            &p.platform,
            &p.channel,
            &p.thread,
            &r.state.as_str(),
            &r.created_at,
            &r.started_at,
            &r.finished_at,
            &r.exit_code,
            &r.duration_ms,
            &r.cpu_ms,
            &r.max_rss_kb,
            &r.detail,
            &WORKER,
            &None::<i64>,
            &i64::from(r.state == ExecState::Cancelled),
            &r.pgid,
        ];
        bound.bind(&mut q, &values);
    }
    q.raw_execute().expect("insert executions");
}

/// Binds values to the next parameters of a multi-row `INSERT`, row after row.
#[derive(Default)]
struct Binder {
    /// Parameters bound so far.
    next: usize,
}

impl Binder {
    fn bind(&mut self, stmt: &mut rusqlite::Statement<'_>, values: &[&dyn ToSql]) {
        for v in values {
            self.next += 1;
            stmt.raw_bind_parameter(self.next, v).expect("bind a value");
        }
    }
}

fn insert_audits(tx: &rusqlite::Connection, rows: &[AuditRow]) {
    if rows.is_empty() {
        return;
    }
    let one = format!("({})", vec!["?"; 16].join(", "));
    let sql = format!(
        "INSERT INTO audit (id, at, actor_platform, actor_id, actor_name, place_platform, place_channel, \
         place_thread, action, job, params, decision, reason, execution_id, prev_hash, hash) VALUES {}",
        vec![one; rows.len()].join(", ")
    );
    let mut q = tx.prepare_cached(&sql).expect("prepare the audit insert");
    let mut bound = Binder::default();
    for a in rows {
        let r = &a.record;
        bound.bind(
            &mut q,
            &[
                &r.id,
                &r.at.timestamp_millis(),
                &r.actor.platform,
                &r.actor.id,
                &r.actor_name,
                &r.place.platform,
                &r.place.channel,
                &r.place.thread,
                &r.action,
                &r.job,
                &a.params,
                &r.decision,
                &r.reason,
                &r.execution_id,
                &a.prev_hash,
                &a.hash,
            ],
        );
    }
    q.raw_execute().expect("insert audit records");
}

/// The cached database for this schema, generated if missing. Returns its path and a line
/// saying how it was obtained.
fn cached_database(rt: &Runtime, rows: u64) -> (PathBuf, String) {
    let (version, hash) = rt.block_on(schema_key());
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).expect("create the bench-data folder");
    let label = if rows == ROWS { "1m".to_string() } else { rows.to_string() };
    let path = dir.join(format!("store-{label}-v{version}-{hash}-g{GENERATOR}.sqlite"));
    let note = path.with_extension("sqlite.txt");
    if path.exists() {
        // The name says which migrations built it; check the file agrees (a half-written file
        // is never renamed to this name).
        let ok = match rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE) {
            Ok(conn) => schema_of(&conn) == (version, hash.clone()),
            Err(_) => false,
        };
        if ok {
            let how = std::fs::read_to_string(&note).unwrap_or_default();
            let text = format!("cached {} ({})", path.display(), how.trim());
            return (path, text);
        }
        eprintln!("store bench: {} does not match this schema; regenerating", path.display());
    }
    eprintln!("store bench: generating {rows} executions into {} (one time) …", path.display());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let start = Instant::now();
    rt.block_on(generate(&tmp, rows));
    let took = start.elapsed();
    std::fs::rename(&tmp, &path).expect("move the generated database into place");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let how = format!(
        "generated in {:.1} s on {}, {:.0} MiB",
        took.as_secs_f64(),
        Utc::now().format("%Y-%m-%d"),
        size as f64 / (1 << 20) as f64
    );
    let _ = std::fs::write(&note, &how);
    eprintln!("store bench: {how}");
    let text = format!("{} ({how})", path.display());
    (path, text)
}

/// Times `iters` calls of `f`, adds them to the tally under `name`.
fn timed<F, Fut>(rt: &Runtime, tally: &Mutex<Tally>, name: &str, iters: u64, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<usize>>,
{
    let (elapsed, rows) = rt.block_on(async {
        let mut rows = None;
        let start = Instant::now();
        for _ in 0..iters {
            rows = black_box(f().await);
        }
        (start.elapsed(), rows)
    });
    tally_add(tally, name, iters, elapsed, rows);
    elapsed
}

fn tally_add(tally: &Mutex<Tally>, name: &str, iters: u64, elapsed: Duration, rows: Option<usize>) {
    let mut t = tally.lock().expect("tally lock");
    let e = t.entry(name.to_string()).or_default();
    e.0 += iters;
    e.1 += elapsed;
    e.2.push(elapsed.as_secs_f64() * 1e6 / iters.max(1) as f64);
    e.3 = rows;
}

/// A query bench: one `executions` call with `filter`, expecting `expect` rows.
struct Query {
    name: &'static str,
    filter: ExecutionFilter,
    expect: Expect,
}

enum Expect {
    /// Exactly this many rows.
    Rows(usize),
    /// No rows (a state nobody is in).
    None,
}

fn main() {
    let rows: u64 = std::env::var("OPSBOT_BENCH_STORE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROWS);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();

    let (cached, how) = cached_database(&rt, rows);
    let work = tempfile::tempdir().expect("tempdir");
    let db = work.path().join("opsbot.db");
    let copy_start = Instant::now();
    std::fs::copy(&cached, &db).expect("copy the cached database");
    let copy = copy_start.elapsed();
    let size_before = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let store: Arc<dyn Store> = Arc::new(rt.block_on(SqliteStore::open(&db)).expect("open the copy"));
    let tally = Mutex::new(Tally::new());

    // The bench's own maintenance queries go through a connection of their own on the copy,
    // open only while they run (an open connection must not be what keeps the WAL from being
    // reset).
    let maint = maint_conn(&db);
    // Reference points taken from the data (generated when the cache was made, maybe long
    // ago), so the filters match what was generated.
    let top_user = user(0);
    let mid_user = user(250);
    let rare_job = JOBS[JOBS.len() - 1];
    let (oldest_id, newest_id, first_at, last_at) = {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).expect("a timestamp in range");
        let range = maint
            .query_row(
                "SELECT MIN(id) AS lo, MAX(id) AS hi, MIN(created_at) AS t0, MAX(created_at) AS t1 FROM executions",
                [],
                |row| {
                    Ok((
                        row.get::<_, i64>("lo")?,
                        row.get::<_, i64>("hi")?,
                        at(row.get("t0")?),
                        at(row.get("t1")?),
                    ))
                },
            )
            .expect("id range");
        close(maint);
        range
    };
    let now = Utc::now();
    let deep = oldest_id + 2_000.min((newest_id - oldest_id) / 2);
    let filter = |f: ExecutionFilter| ExecutionFilter { limit: PAGE, ..f };
    let api = |f: ExecutionFilter| ExecutionFilter { limit: API_PAGE, ..f };
    let queries = vec![
        Query {
            name: "history_newest_50",
            filter: filter(ExecutionFilter::default()),
            expect: Expect::Rows(50),
        },
        Query {
            name: "history_job_top_50",
            filter: filter(ExecutionFilter {
                job: Some(JOBS[0].into()),
                ..Default::default()
            }),
            expect: Expect::Rows(50),
        },
        Query {
            name: "history_job_rare_50",
            filter: filter(ExecutionFilter {
                job: Some(rare_job.into()),
                ..Default::default()
            }),
            expect: Expect::Rows(50),
        },
        Query {
            name: "history_mine_top_user_50",
            filter: filter(ExecutionFilter {
                requested_by: Some(top_user.clone()),
                ..Default::default()
            }),
            expect: Expect::Rows(50),
        },
        Query {
            name: "history_mine_job_50",
            filter: filter(ExecutionFilter {
                job: Some(JOBS[2].into()),
                requested_by: Some(mid_user.clone()),
                ..Default::default()
            }),
            expect: Expect::Rows(50),
        },
        Query {
            name: "api_state_failed_51",
            filter: api(ExecutionFilter {
                state: Some(ExecState::Failed),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        Query {
            name: "api_state_running_none",
            filter: api(ExecutionFilter {
                state: Some(ExecState::Running),
                ..Default::default()
            }),
            expect: Expect::None,
        },
        Query {
            name: "api_job_state_51",
            filter: api(ExecutionFilter {
                job: Some(JOBS[1].into()),
                state: Some(ExecState::TimedOut),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        Query {
            name: "api_user_state_51",
            filter: api(ExecutionFilter {
                requested_by: Some(top_user.clone()),
                state: Some(ExecState::Failed),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        // A user who never had a run in that state: the user's index range is walked to its end
        // (the top user has ~78,000 runs).
        Query {
            name: "api_user_state_none",
            filter: api(ExecutionFilter {
                requested_by: Some(top_user.clone()),
                state: Some(ExecState::Running),
                ..Default::default()
            }),
            expect: Expect::None,
        },
        Query {
            name: "api_deep_page_51",
            filter: api(ExecutionFilter {
                before_id: Some(deep),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        Query {
            name: "api_job_deep_page_51",
            filter: api(ExecutionFilter {
                job: Some(JOBS[0].into()),
                before_id: Some(deep),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        Query {
            name: "api_since_7d_51",
            filter: api(ExecutionFilter {
                since: Some(last_at - TimeDelta::days(7)),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
        // A week near the start of the history (`?since=…&until=…`, a year ago): there is no
        // index on `created_at`, so SQLite walks the ids down from the newest to that week.
        Query {
            name: "api_period_year_ago_51",
            filter: api(ExecutionFilter {
                since: Some(first_at + TimeDelta::days(5)),
                until: Some(first_at + TimeDelta::days(12)),
                ..Default::default()
            }),
            expect: Expect::Rows(51),
        },
    ];
    // Check every query returns what its name says before timing it.
    for q in &queries {
        let got = rt.block_on(store.executions(&q.filter)).expect("query").len();
        let ok = match q.expect {
            Expect::Rows(n) => got == n,
            Expect::None => got == 0,
        };
        assert!(ok, "{}: {got} rows; the generated data does not fit this query", q.name);
    }

    let mut g = c.benchmark_group("store_1m");
    for q in &queries {
        g.bench_function(BenchmarkId::from_parameter(q.name), |b| {
            b.iter_custom(|iters| {
                timed(&rt, &tally, q.name, iters, || async {
                    Some(store.executions(&q.filter).await.expect("executions").len())
                })
            })
        });
    }
    let mut id_rng = Rng(7);
    g.bench_function(BenchmarkId::from_parameter("execution_by_id"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "execution_by_id", iters, || {
                let id = oldest_id + id_rng.below((newest_id - oldest_id + 1) as u64) as i64;
                let store = store.clone();
                async move { store.execution(id).await.expect("execution").map(|_| 1) }
            })
        })
    });
    g.bench_function(BenchmarkId::from_parameter("audit_newest_50"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "audit_newest_50", iters, || async {
                Some(
                    store
                        .audit_query(&AuditFilter {
                            limit: 50,
                            ..Default::default()
                        })
                        .await
                        .expect("audit")
                        .len(),
                )
            })
        })
    });
    g.bench_function(BenchmarkId::from_parameter("audit_actor_50"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "audit_actor_50", iters, || async {
                let f = AuditFilter {
                    actor: Some(mid_user.clone()),
                    limit: 50,
                    ..Default::default()
                };
                Some(store.audit_query(&f).await.expect("audit").len())
            })
        })
    });
    // `/metrics` asks for this on every scrape.
    g.bench_function(BenchmarkId::from_parameter("count_by_state"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "count_by_state", iters, || async {
                Some(store.count_by_state().await.expect("count").len())
            })
        })
    });

    // Writes: what the engine does when a run is queued (execution insert, then its audit record).
    let new = NewExecution {
        job: JOBS[0].into(),
        params: params(&mut Rng(1), 0),
        requested_by: top_user.clone(),
        requester_name: user_name(0),
        place: place(0, false),
        max_parallel: None,
    };
    let mut wal = vec![("after the read benches", wal_size(&db))];
    g.bench_function(BenchmarkId::from_parameter("create_execution"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "create_execution", iters, || async {
                store.create_execution(&new).await.expect("create_execution");
                None
            })
        })
    });
    let record = AuditRecord {
        id: 0,
        at: now,
        actor: top_user.clone(),
        actor_name: user_name(0),
        place: place(0, false),
        action: "run".into(),
        job: Some(JOBS[0].into()),
        params: Some(new.params.clone()),
        decision: "accepted".into(),
        reason: None,
        execution_id: Some(newest_id),
    };
    g.bench_function(BenchmarkId::from_parameter("audit_append"), |b| {
        b.iter_custom(|iters| {
            timed(&rt, &tally, "audit_append", iters, || async {
                store.audit(&record).await.expect("audit");
                None
            })
        })
    });
    wal.push(("after create_execution and audit_append", wal_size(&db)));
    // The queued rows the insert bench left would be claimed first; cancel them (untimed).
    {
        let maint = maint_conn(&db);
        maint
            .execute(
                "UPDATE executions SET state = 'cancelled', finished_at = ?1 WHERE state = 'queued'",
                [Utc::now().timestamp_millis()],
            )
            .expect("cancel the queued rows");
        close(maint);
    }
    // The worker's claim: one queued run (plain, and of a job with `concurrency = 2`, which
    // counts the job's running ones), claimed; queueing and finishing it are not timed.
    for (name, max_parallel) in [("claim", None), ("claim_max_parallel", Some(2))] {
        let new = NewExecution {
            max_parallel,
            ..new.clone()
        };
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_custom(|iters| {
                let (elapsed, claimed) = rt.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut claimed = 0usize;
                    for _ in 0..iters {
                        let queued = store.create_execution(&new).await.expect("queue");
                        let start = Instant::now();
                        let got = store.claim(WORKER, Duration::from_secs(30), None).await.expect("claim");
                        total += start.elapsed();
                        let got = got.expect("a queued execution to claim");
                        assert_eq!(got.id, queued.id, "claimed another execution than the one queued");
                        claimed += 1;
                        finish(&*store, got.id).await;
                    }
                    (total, claimed)
                });
                tally_add(&tally, name, iters, elapsed, Some(claimed.min(1)));
                elapsed
            })
        });
    }
    g.finish();
    c.final_summary();
    wal.push(("after the claims", wal_size(&db)));

    let size_after = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    let (added, checkpoint) = {
        let maint = maint_conn(&db);
        let added: i64 = maint
            .query_row("SELECT COUNT(*) AS n FROM executions WHERE id > ?1", [newest_id], |r| r.get("n"))
            .expect("count");
        // What a passive checkpoint can do now, with the store's connections still open: (busy, frames
        // in the WAL, frames checkpointed).
        let ck: (i64, i64, i64) = maint
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("checkpoint");
        close(maint);
        (added, ck)
    };
    let sizes = Sizes {
        copy,
        before: size_before,
        after: size_after,
        wal,
        checkpoint,
        added,
    };
    print_table(&tally.lock().expect("tally lock"), rows, &how, &sizes);
}

/// The WAL file's size now.
fn wal_size(db: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", db.display())).map(|m| m.len()).unwrap_or(0)
}

/// What happened to the copy's files during the run.
struct Sizes {
    copy: Duration,
    before: u64,
    after: u64,
    wal: Vec<(&'static str, u64)>,
    checkpoint: (i64, i64, i64),
    added: i64,
}

async fn finish(store: &dyn Store, id: ExecutionId) {
    store
        .finish(
            id,
            &Finish {
                state: Some(ExecState::Succeeded),
                exit_code: Some(0),
                duration_ms: Some(5),
                ..Default::default()
            },
        )
        .await
        .expect("finish");
}

/// A connection of its own on the copy, for the bench's own maintenance queries.
fn maint_conn(db: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(db).expect("a second connection to the copy");
    conn.busy_timeout(Duration::from_secs(5)).expect("set the busy timeout");
    conn
}

/// Closes a maintenance connection.
fn close(conn: rusqlite::Connection) {
    conn.close().map_err(|(_, e)| e).expect("close the second connection");
}

fn print_table(tally: &Tally, rows: u64, how: &str, s: &Sizes) {
    // Nothing worth a table in `--test` mode (one call per bench) or when filtered out.
    if tally.values().all(|(calls, ..)| *calls < 20) {
        return;
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!();
    println!(
        "store at {rows} executions, file SQLite (WAL), {} CPUs; database: {how}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let wal: Vec<String> = s.wal.iter().map(|(when, b)| format!("{when} {:.0} MiB", mib(*b))).collect();
    println!(
        "(a fresh copy per run: {:.0} MiB copied in {:.1} s; {} executions added by the insert and claim benches; database file now {:.0} MiB; WAL file {}; a passive checkpoint at the end: busy {}, {} frames in the WAL, {} checkpointed)",
        mib(s.before),
        s.copy.as_secs_f64(),
        s.added,
        mib(s.after),
        wal.join(", "),
        s.checkpoint.0,
        s.checkpoint.1,
        s.checkpoint.2
    );
    println!("| call | calls | mean (µs) | median of sample means (µs) | rows returned |");
    println!("|---|---:|---:|---:|---:|");
    for (name, (calls, time, means, rows)) in tally {
        let mut m = means.clone();
        m.sort_by(f64::total_cmp);
        let median = if m.is_empty() { 0.0 } else { m[m.len() / 2] };
        let rows = rows.map(|r| r.to_string()).unwrap_or_default();
        println!(
            "| {name} | {calls} | {:.1} | {median:.1} | {rows} |",
            time.as_secs_f64() * 1e6 / (*calls).max(1) as f64
        );
    }
}
