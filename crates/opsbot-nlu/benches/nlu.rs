//! Natural language per utterance, with the example catalog and a generated 500-job one.
//! `cargo bench -p opsbot-nlu`; `opsbot understand --eval bench/nlu/dev.tsv` gives p50/p99 over
//! the whole development set (grammar included).

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use opsbot_core::config::{Config, LoadOptions};
use opsbot_core::{Catalog, Context};
use opsbot_nlu::Nlu;
use std::hint::black_box;
use std::path::Path;

const TEXTS: &[&str] = &[
    "push worker 3.1.0 out to staging",
    "is the worker alive?",
    "cycle the web service",
    "看一下 web 最近 50 行日志",
    "把 worker 部署到开发环境",
    "deploy api to dev at 23:30",
    "wipe the staging cluster",
    "deplyo web to stagign",
];

fn example() -> Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/opsbot.toml");
    let text = std::fs::read_to_string(&path).expect("example config");
    Config::parse(&text, &path, LoadOptions { resolve_secrets: false })
        .expect("example config loads")
        .catalog
}

fn bench(c: &mut Criterion) {
    let small = example();
    let big = opsbot_nlu::synthetic::catalog(&small, 500 - small.len());
    for (name, catalog) in [("example", &small), ("500 jobs", &big)] {
        let nlu = Nlu::new(catalog);
        let ctx = Context {
            catalog,
            now: Utc::now(),
            tz: chrono_tz::Asia::Shanghai,
        };
        let mut g = c.benchmark_group(format!("nlu/{name}"));
        for t in TEXTS {
            g.bench_function(*t, |b| b.iter(|| black_box(nlu.analyse(black_box(t), &ctx))));
        }
        g.finish();
        c.bench_function(&format!("nlu/{name}/build index"), |b| b.iter(|| black_box(Nlu::new(catalog))));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
