//! A generated catalog of many jobs, for measuring how the natural-language layer scales
//! (`opsbot understand --eval FILE --jobs 500`, `cargo bench -p opsbot-nlu`).

use opsbot_core::job::{Catalog, EnumValue, JobSpec, ParamKind, ParamSpec, RunnerSpec};
use std::time::Duration;

const VERBS: &[&str] = &[
    "sync", "backup", "restore", "flush", "rotate", "renew", "vacuum", "reindex", "warm", "drain", "cordon", "uncordon", "migrate", "seed",
    "snapshot", "archive", "compact", "promote", "demote", "failover", "purge", "refresh", "rebuild", "verify", "audit",
];
const NOUNS: &[&str] = &[
    "cache", "queue", "certs", "keys", "index", "bucket", "volume", "replica", "shard", "tenant", "topic", "mirror", "gateway", "ingress",
    "dns", "cdn", "ledger", "billing", "search", "mailer", "reports", "metrics", "traces", "secrets", "tokens",
];

/// `extra` generated jobs after the jobs of `base`: names like `sync-cache-7`, each with a
/// description, an alias, an enum `region` param (with synonyms), an enum `tier` and an int.
pub fn catalog(base: &Catalog, extra: usize) -> Catalog {
    let mut jobs: Vec<JobSpec> = base.jobs().to_vec();
    for i in 0..extra {
        let verb = VERBS[i % VERBS.len()];
        let noun = NOUNS[(i / VERBS.len()) % NOUNS.len()];
        let name = format!("{verb}-{noun}-{i}");
        let enum_param = |name: &str, vals: &[(&str, &[&str])]| ParamSpec {
            name: name.into(),
            kind: ParamKind::Enum {
                values: vals
                    .iter()
                    .map(|(v, syn)| EnumValue {
                        value: v.to_string(),
                        synonyms: syn.iter().map(|s| s.to_string()).collect(),
                    })
                    .collect(),
            },
            required: true,
            default: None,
            help: None,
            secret: false,
        };
        jobs.push(JobSpec {
            name: name.clone(),
            description: format!("{verb} the {noun} of a region ({i})"),
            params: vec![
                enum_param(
                    "region",
                    &[("eu", &["europe", "欧洲"]), ("us", &["america", "美国"]), ("ap", &["asia", "亚洲"])],
                ),
                enum_param("tier", &[("gold", &[]), ("silver", &[]), ("bronze", &[])]),
                ParamSpec {
                    name: "count".into(),
                    kind: ParamKind::Int {
                        min: Some(1),
                        max: Some(100),
                    },
                    required: false,
                    default: Some("1".into()),
                    help: None,
                    secret: false,
                },
            ],
            aliases: vec![format!("{verb} {noun}{i} in {{region}}")],
            examples: vec![format!("{name} eu gold")],
            runner: RunnerSpec::Exec {
                argv: vec!["true".into()],
                env: Default::default(),
                cwd: ".".into(),
                secret_env: Default::default(),
            },
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            concurrency: None,
            sensitive: false,
            output_limit: 1 << 20,
        });
    }
    Catalog::new(jobs)
}
