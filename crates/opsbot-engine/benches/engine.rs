//! One engine step (message text → reply, queued execution, audit record) over a generated
//! 500-job catalog, and the "understand" part alone (`grammar::parse`).
//!
//! Run with `cargo bench -p opsbot-engine --bench engine` (or `bench/run.sh`). Timings are
//! reported by criterion; nothing here asserts on them. The setup does check that every input
//! takes the path it is named after, so a change in the grammar cannot silently turn a
//! "queued" bench into a "refused" one.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Catalog, Command, Envelope, NewExecution, Params, Place, UserId};
use opsbot_engine::{Engine, Outcome, grammar};
use opsbot_store::{AuditRecord, SqliteStore, Store};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

/// Jobs in the generated catalog.
const JOBS: usize = 500;

/// The catalog as an operator would write it: `job0..job499`, each with an enum `env`
/// (with synonyms), a string `app` with a pattern, an int `replicas` with bounds, one or two
/// alias templates and an exec runner that runs `true`.
fn catalog_toml(jobs: usize) -> String {
    let mut t = String::from(
        "[bot]\nname = \"opsbot\"\nprefixes = [\"!\"]\n\n[defaults]\ntimeout = \"1m\"\nkill_grace = \"2s\"\noutput_limit = \"1MiB\"\n",
    );
    for i in 0..jobs {
        let second = if i % 2 == 0 {
            format!(", \"ship{i} {{app}} {{env}}\"")
        } else {
            String::new()
        };
        write!(
            t,
            r#"
[jobs.job{i}]
description = "Generated job number {i}"
aliases = ["deploy{i} {{app}} to {{env}}"{second}]
examples = ["run job{i} env=prod app=web", "deploy{i} web to staging"]
runner = {{ type = "exec", argv = ["true"] }}

[[jobs.job{i}.params]]
name = "app"
type = "string"
pattern = '[a-z][a-z0-9-]{{1,30}}'
required = true
help = "application name"

[[jobs.job{i}.params]]
name = "env"
type = "enum"
values = ["dev", "staging", "prod"]
synonyms = {{ prod = ["production", "prd", "live"], staging = ["stage", "stg"], dev = ["develop", "development"] }}
required = true
help = "target environment"

[[jobs.job{i}.params]]
name = "replicas"
type = "int"
min = 1
max = 50
default = 2
help = "how many replicas"
"#
        )
        .expect("writing to a String cannot fail");
    }
    t
}

fn load_config() -> Config {
    // The person asking holds a role with a glob rule and a parameter condition, and a deny
    // rule is in force, so every step pays for the access check as a real config makes it.
    let text = format!(
        "{}\n[people.bench]\naccounts = [\"bench:U1\"]\nroles = [\"ops\"]\n\n[roles.ops]\nallow = [{{ verbs = [\"run\", \"view\", \"cancel\"], jobs = \"*\" }}]\ndeny = [{{ verbs = \"run\", jobs = \"job1?\" }}]\n",
        catalog_toml(JOBS)
    );
    match Config::parse(&text, Path::new("bench-opsbot.toml"), LoadOptions { resolve_secrets: false }) {
        Ok(c) => c,
        Err(e) => panic!("the generated catalog does not load: {e:?}"),
    }
}

/// What an input is expected to produce; checked once before it is measured.
#[derive(Clone, Copy)]
enum Expect {
    /// An execution is queued.
    Queued,
    /// No execution; a reply that contains this text.
    Reply(&'static str),
}

struct Input {
    name: &'static str,
    /// Message as typed in a channel (`direct` is false, so it must address the bot).
    text: &'static str,
    expect: Expect,
}

const INPUTS: &[Input] = &[
    Input {
        name: "explicit_grammar",
        text: "opsbot: run job250 env=prod app=web replicas=3",
        expect: Expect::Queued,
    },
    Input {
        name: "alias_near_end",
        text: "opsbot: deploy498 web to production",
        expect: Expect::Queued,
    },
    Input {
        name: "positional_prefix",
        text: "!job499 web prod 3",
        expect: Expect::Queued,
    },
    Input {
        name: "refused_bad_enum",
        text: "opsbot: run job250 env=prdo app=web",
        expect: Expect::Reply("Did you mean `prod`?"),
    },
    Input {
        name: "unknown_word_fuzzy",
        text: "opsbot: jbo250 env=prod app=web",
        expect: Expect::Reply("Did you mean `job250`?"),
    },
];

fn envelope(text: &str) -> Envelope {
    let mut env = Envelope::direct(UserId::new("bench", "U1"), Place::new("bench", "C1"), text);
    env.direct = false;
    env.display_name = Some("Bench".into());
    env
}

fn reply_text(o: &Outcome) -> String {
    format!("{:?}", o.replies)
}

fn check(engine: &Engine, rt: &Runtime, input: &Input) {
    let o = rt.block_on(engine.handle(&envelope(input.text)));
    match input.expect {
        Expect::Queued => {
            if o.queued.is_none() {
                panic!("`{}` did not queue an execution: {}", input.text, reply_text(&o));
            }
        }
        Expect::Reply(want) => {
            let got = reply_text(&o);
            if o.queued.is_some() || !got.contains(want) {
                panic!("`{}` should answer with `{want}`, got: {got}", input.text);
            }
        }
    }
}

/// Measures `iters` engine steps inside one `block_on`, so the runtime's entry cost is not
/// counted per step.
fn steps(rt: &Runtime, engine: &Engine, env: &Envelope, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            black_box(engine.handle(black_box(env)).await);
        }
        start.elapsed()
    })
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn engine_over(rt: &Runtime, config: &Config, catalog: &Arc<Catalog>, file: Option<&Path>) -> Engine {
    let store: Arc<dyn Store> = Arc::new(
        rt.block_on(async {
            match file {
                Some(p) => SqliteStore::open(p).await,
                None => SqliteStore::memory().await,
            }
        })
        .expect("open the store"),
    );
    Engine::new(catalog.clone(), config.bot.clone(), store).with_access(config.access.clone())
}

fn bench_engine(c: &mut Criterion) {
    let config = load_config();
    assert_eq!(config.catalog.len(), JOBS, "generated catalog size");
    let catalog = Arc::new(config.catalog.clone());

    // The whole step against an in-memory SQLite store, on a current-thread runtime.
    let rt = current_thread();
    let engine = engine_over(&rt, &config, &catalog, None);
    for input in INPUTS {
        check(&engine, &rt, input);
    }
    let mut g = c.benchmark_group("engine_step_memory");
    for input in INPUTS {
        let env = envelope(input.text);
        g.bench_function(BenchmarkId::from_parameter(input.name), |b| {
            b.iter_custom(|iters| steps(&rt, &engine, &env, iters))
        });
    }
    g.finish();

    // The same explicit-grammar step on a file in WAL mode, as in production; once on a
    // current-thread runtime and once on the multi-thread runtime the binary uses.
    let dir = tempfile::tempdir().expect("tempdir");
    let file_engine = engine_over(&rt, &config, &catalog, Some(&dir.path().join("opsbot.db")));
    let explicit = &INPUTS[0];
    check(&file_engine, &rt, explicit);
    let mrt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mdir = tempfile::tempdir().expect("tempdir");
    let multi_engine = engine_over(&mrt, &config, &catalog, Some(&mdir.path().join("opsbot.db")));
    check(&multi_engine, &mrt, explicit);
    let mut g = c.benchmark_group("engine_step_file_wal");
    let env = envelope(explicit.text);
    g.bench_function(BenchmarkId::from_parameter("explicit_grammar"), |b| {
        b.iter_custom(|iters| steps(&rt, &file_engine, &env, iters))
    });
    g.bench_function(BenchmarkId::from_parameter("explicit_grammar_multi_thread_rt"), |b| {
        b.iter_custom(|iters| steps(&mrt, &multi_engine, &env, iters))
    });
    g.finish();
    drop(file_engine);
    drop(multi_engine);
    drop(mrt);
}

/// Understanding only: tokens, grammar and alias templates, no store. The positional input
/// is given as the engine would pass it on, without the `!` prefix.
fn bench_understand(c: &mut Criterion) {
    let config = load_config();
    let catalog = config.catalog;
    let grammar = grammar::Grammar::new(&catalog);
    let mut g = c.benchmark_group("understand");
    for input in INPUTS {
        let text = input
            .text
            .strip_prefix("opsbot: ")
            .or_else(|| input.text.strip_prefix('!'))
            .unwrap_or(input.text);
        let parsed = grammar.parse(text, &catalog);
        match (&parsed, input.expect) {
            (Ok(Some(Command::Run { .. })), _) => {}
            (Ok(None), Expect::Reply(_)) => {} // the unknown word: the engine then suggests
            _ => panic!("`{text}` parsed unexpectedly: {parsed:?}"),
        }
        g.bench_function(BenchmarkId::from_parameter(input.name), |b| {
            b.iter(|| grammar.parse(black_box(text), black_box(&catalog)))
        });
    }
    // The "did you mean" search the engine runs after an unknown word.
    g.bench_function(BenchmarkId::from_parameter("suggest_over_catalog"), |b| {
        b.iter(|| grammar.suggest(black_box("jbo250")))
    });
    g.finish();
}

/// Awaits `f()` `iters` times inside one `block_on`.
fn timed<F, Fut>(rt: &Runtime, iters: u64, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            f().await;
        }
        start.elapsed()
    })
}

/// The store calls one step makes, alone, so the report can say where the step's time goes:
/// the dialog lookup (every message), the execution insert and the audit insert (a queued
/// run), plus `ping` as the cheapest possible round trip through the pool.
fn bench_store_parts(c: &mut Criterion) {
    let rt = current_thread();
    let dir = tempfile::tempdir().expect("tempdir");
    for (group, file) in [("store_memory", None), ("store_file_wal", Some(dir.path().join("opsbot.db")))] {
        let store: Arc<dyn Store> = Arc::new(
            rt.block_on(async {
                match &file {
                    Some(p) => SqliteStore::open(p).await,
                    None => SqliteStore::memory().await,
                }
            })
            .expect("open the store"),
        );
        let env = envelope("run job250 env=prod app=web");
        let person = UserId::new("bench", "U1");
        let mut params = Params::new();
        params.insert("app".into(), "web".into());
        params.insert("env".into(), "prod".into());
        params.insert("replicas".into(), "3".into());
        let new = NewExecution {
            job: "job250".into(),
            params: params.clone(),
            requested_by: person.clone(),
            requester_name: "Bench".into(),
            place: env.place.clone(),
            max_parallel: None,
        };
        let record = AuditRecord {
            id: 0,
            at: chrono::Utc::now(),
            actor: person.clone(),
            actor_name: "Bench".into(),
            place: env.place.clone(),
            action: "run".into(),
            job: Some("job250".into()),
            params: Some(params),
            decision: "accepted".into(),
            reason: None,
            execution_id: Some(1),
        };
        let mut g = c.benchmark_group(group);
        g.bench_function("ping", |b| {
            b.iter_custom(|iters| timed(&rt, iters, || async { store.ping().await.expect("ping") }))
        });
        g.bench_function("dialog_lookup", |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    black_box(store.dialog(&env.place, &person).await.expect("dialog"));
                })
            })
        });
        g.bench_function("create_execution", |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    black_box(store.create_execution(&new).await.expect("create_execution"));
                })
            })
        });
        g.bench_function("audit", |b| {
            b.iter_custom(|iters| {
                timed(&rt, iters, || async {
                    black_box(store.audit(&record).await.expect("audit"));
                })
            })
        });
        g.finish();
    }

    // What any hand-off to another thread and back costs on this machine: the pattern sqlx's
    // SQLite driver used before the store ran its statements on the calling thread (a channel to
    // the connection's own thread, a oneshot back), with no database work at all.
    let (tx, rx) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
    let echo = std::thread::spawn(move || {
        while let Ok(back) = rx.recv() {
            let _ = back.send(());
        }
    });
    c.benchmark_group("baseline").bench_function("thread_roundtrip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let (back, answer) = tokio::sync::oneshot::channel();
                    tx.send(back).expect("echo thread");
                    answer.await.expect("echo thread");
                }
                start.elapsed()
            })
        })
    });
    drop(tx);
    echo.join().expect("echo thread");
}

criterion_group! {
    name = benches;
    // Shorter than criterion's defaults (3 s + 5 s) to keep the whole file near a minute;
    // `--warm-up-time` / `--measurement-time` on the command line still override.
    config = Criterion::default().warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(3));
    targets = bench_engine, bench_store_parts, bench_understand
}
criterion_main!(benches);
