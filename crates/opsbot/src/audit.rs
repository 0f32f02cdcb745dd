//! `opsbot audit`: prove the audit trail's hash chain, and export its records.

use crate::runtime::load_config;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use opsbot_core::{Params, UserId};
use opsbot_store::{AUDIT_PAGE, AuditFilter, AuditRecord, ChainProblem, ChainedAudit, SqliteStore, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What to do with the audit trail.
#[derive(clap::Subcommand)]
pub enum AuditCmd {
    /// Prove that the audit trail is unchanged, or name the first record that is not.
    ///
    /// Every audit record carries the SHA-256 of its content chained to the hash of the record
    /// before it (docs/security.md, "The audit hash chain"). This recomputes every hash from the
    /// first record to the newest, in pages, so any size verifies in little memory.
    ///
    /// Exit code 0: the chain is intact; prints the number of records and the newest record's id
    /// and hash. Keep that line where whoever can write the database cannot (a ticket, a log
    /// server) and pass it back later with --anchor: that also proves that no newest records were
    /// removed and that the chain was not rewritten as a whole, which the chain alone cannot.
    ///
    /// Exit code 1: prints the first broken record and why — changed after it was written, its
    /// hash edited, a record before it deleted, records inserted or reordered, a record added
    /// without a hash — and what to do; the records before it are intact. Also 1 when the store
    /// cannot be read or an --anchor does not match.
    ///
    /// Reads the config's store, or --db (then no config is needed): opsbot audit verify --db copy.db
    Verify {
        /// A record id and hash printed by an earlier `audit verify` (e.g. `1234:9f86d0…`, all 64
        /// hex digits): also check that this record is still in the chain with that hash. May be
        /// given more than once.
        #[arg(long, value_name = "ID:HASH", value_parser = parse_anchor)]
        anchor: Vec<(i64, String)>,
    },
    /// Print audit records to stdout, oldest first, with their hash-chain links.
    ///
    /// Every decision opsbot made: who (platform account and name), where, what (job, params
    /// with secret values hidden), the decision and why, and the execution id.
    ///
    /// jsonl (default): one JSON object per line with the fields of
    /// `GET /api/v1/audit?format=jsonl` — id, at (RFC 3339, UTC), actor (platform:id),
    /// actor_name, place, action, job, params, decision, reason, execution_id — plus prev_hash and
    /// hash. json: one document, {"records": […]}.
    ///
    /// Kept somewhere else, an export is evidence: `audit verify --anchor ID:HASH` with any
    /// exported record's id and hash later proves that record and all before it unchanged.
    /// Reads the config's store, or --db (then no config is needed, except for --job).
    ///
    /// Example: opsbot audit export --since 2024-05-01 --until 2024-05-31 --actor slack:U024BE7LH > may.jsonl
    Export {
        /// Only records at or after this time: RFC 3339 (2024-05-01T12:00:00Z) or a date
        /// (2024-05-01, midnight UTC). A time without a zone is UTC.
        #[arg(long, value_name = "TIME", value_parser = parse_since)]
        since: Option<DateTime<Utc>>,
        /// Only records before this time: RFC 3339, or a date (2024-05-31), which includes that
        /// whole day (UTC).
        #[arg(long, value_name = "TIME", value_parser = parse_until)]
        until: Option<DateTime<Utc>>,
        /// jsonl (one record per line) or json (one document).
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "json"])]
        format: String,
        /// Only decisions on requests of this account, as platform:id (e.g. slack:U024BE7LH, web:ana).
        #[arg(long, value_name = "PLATFORM:ID", value_parser = parse_actor)]
        actor: Option<UserId>,
        /// Only records about this job (a job of the config in any letter case, else as written).
        #[arg(long, value_name = "JOB")]
        job: Option<String>,
    },
}

/// Runs an audit command against the config's store (or `--db`).
pub async fn audit(config: &Path, db: Option<PathBuf>, cmd: AuditCmd) -> Result<ExitCode> {
    // The config is read for the store's path, and for the job names of `export --job`; with
    // --db, a verification (of a copy, say) needs none.
    let for_jobs = matches!(cmd, AuditCmd::Export { job: Some(_), .. }) && config.is_file();
    let (db, config) = match db {
        Some(db) if !for_jobs => (db, None),
        Some(db) => (db, Some(load_config(config)?)),
        None => {
            let config = load_config(config)?;
            (config.store.path.clone(), Some(config))
        }
    };
    // Opening would create an empty database, which would verify as intact.
    if !db.is_file() {
        bail!("there is no database at {} (the config's [store] path, or --db PATH)", db.display());
    }
    let store = SqliteStore::open(&db)
        .await
        .with_context(|| format!("cannot open the store at {}", db.display()))?;
    match cmd {
        AuditCmd::Verify { anchor } => verify(&store, &anchor).await,
        AuditCmd::Export {
            since,
            until,
            format,
            actor,
            job,
        } => {
            if let (Some(a), Some(b)) = (since, until)
                && a >= b
            {
                eprintln!("opsbot: --since is not before --until, so nothing can match; swap them or widen the period");
                return Ok(ExitCode::from(2));
            }
            let job = job.map(|j| {
                config
                    .as_ref()
                    .and_then(|c| c.catalog.get(&j))
                    .map(|spec| spec.name.clone())
                    .unwrap_or(j)
            });
            let filter = AuditFilter {
                actor,
                job,
                since,
                until,
                ..Default::default()
            };
            export(&store, &filter, format == "json").await
        }
    }
}

/// `audit verify`.
async fn verify(store: &SqliteStore, anchors: &[(i64, String)]) -> Result<ExitCode> {
    // What the chain says now about each anchored record.
    let mut found: BTreeMap<i64, String> = BTreeMap::new();
    let v = store
        .verify_audit(&mut |id, hash| {
            if anchors.iter().any(|(a, _)| *a == id) {
                found.insert(id, hash.to_string());
            }
        })
        .await?;
    if let Some(b) = &v.broken {
        let before = match &v.intact_up_to {
            Some((id, hash)) => format!(
                "The {} record(s) before it are intact (up to #{id}, hash {hash}).",
                v.checked.saturating_sub(1)
            ),
            None => "No record before it is intact (it is the first record).".to_string(),
        };
        let gap = match (b.after, &b.problem) {
            (Some(a), ChainProblem::Unlinked { .. }) if b.id > a + 1 => {
                format!(
                    " Record ids jump from #{a} to #{}: the records between were probably deleted.",
                    b.id
                )
            }
            _ => String::new(),
        };
        eprintln!(
            "opsbot: the audit chain is broken at record #{}: {}.{gap}\n{before}\n\
             What to do: treat #{} and the records after it as untrusted. Keep a copy of the database \
             file (with its -wal file) as evidence and stop writing to it; compare #{} and its \
             neighbours with a backup or an earlier `opsbot audit export`; find out who could write \
             the file. Records after #{} were not checked.",
            b.id, b.problem, b.id, b.id, b.id
        );
        return Ok(ExitCode::from(1));
    }
    let Some((last, hash)) = &v.intact_up_to else {
        println!("0 records: the audit trail is empty, nothing to verify");
        if let Some((id, _)) = anchors.first() {
            eprintln!("opsbot: anchored record #{id} is not in the audit trail: its records were removed");
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mut ok = true;
    for (id, want) in anchors {
        match found.get(id) {
            Some(h) if h == want => {}
            Some(h) => {
                ok = false;
                eprintln!(
                    "opsbot: anchored record #{id} now has the hash {h}, not {want}: the chain was rewritten \
                     from #{id} or before (every hash recomputed) — compare with a backup or an earlier export"
                );
            }
            None => {
                ok = false;
                eprintln!(
                    "opsbot: anchored record #{id} is no longer in the chain (the newest record is #{last}): \
                     records were removed from the end of the audit trail, or the chain was rebuilt"
                );
            }
        }
    }
    if !ok {
        return Ok(ExitCode::from(1));
    }
    println!("{} records, chain intact up to #{last}, hash {hash}", v.checked);
    for (id, _) in anchors {
        println!("anchor #{id}: same hash as before");
    }
    Ok(ExitCode::SUCCESS)
}

/// One exported record: the API's audit record (`AuditView` in opsbot-web) plus its chain links.
#[derive(Serialize)]
struct Exported<'a> {
    id: i64,
    at: String,
    actor: String,
    actor_name: &'a str,
    place: String,
    action: &'a str,
    job: Option<&'a str>,
    params: Option<&'a Params>,
    decision: &'a str,
    reason: Option<&'a str>,
    execution_id: Option<i64>,
    prev_hash: Option<&'a str>,
    hash: Option<&'a str>,
}

impl<'a> Exported<'a> {
    fn of(link: &'a ChainedAudit, r: &'a AuditRecord) -> Self {
        Exported {
            id: link.id,
            at: r.at.to_rfc3339_opts(SecondsFormat::Millis, true),
            actor: r.actor.to_string(),
            actor_name: &r.actor_name,
            place: r.place.to_string(),
            action: &r.action,
            job: r.job.as_deref(),
            params: r.params.as_ref(),
            decision: &r.decision,
            reason: r.reason.as_deref(),
            execution_id: r.execution_id,
            prev_hash: link.prev_hash.as_deref(),
            hash: link.hash.as_deref(),
        }
    }
}

/// `audit export`: pages of the chain, oldest first, written as they are read.
async fn export(store: &SqliteStore, filter: &AuditFilter, json: bool) -> Result<ExitCode> {
    let mut out = std::io::stdout();
    let mut after = 0;
    let mut first = true;
    let mut buf = String::new();
    if json {
        buf.push_str("{\"records\":[");
    }
    loop {
        let page = store.audit_chain(filter, after, AUDIT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for link in &page {
            let record = match &link.record {
                Ok(r) => r,
                Err(why) => {
                    let _ = write_out(&mut out, &buf);
                    eprintln!(
                        "opsbot: audit record #{} cannot be read ({why}); the export stops before it. \
                         `opsbot audit verify` checks the whole chain",
                        link.id
                    );
                    return Ok(ExitCode::from(1));
                }
            };
            if json && !first {
                buf.push(',');
            }
            first = false;
            buf.push_str(&serde_json::to_string(&Exported::of(link, record))?);
            if !json {
                buf.push('\n');
            }
        }
        if !write_out(&mut out, &buf)? {
            return Ok(ExitCode::SUCCESS);
        }
        buf.clear();
    }
    if json {
        buf.push_str("]}\n");
    }
    write_out(&mut out, &buf)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; false when the reader has gone (`| head`), which ends the export quietly.
fn write_out(out: &mut std::io::Stdout, text: &str) -> Result<bool> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// `--anchor ID:HASH`.
fn parse_anchor(s: &str) -> Result<(i64, String), String> {
    let bad = || format!("`{s}` is not ID:HASH, e.g. 1234:9f86d081… (the id and all 64 hex digits printed by `audit verify`)");
    let (id, hash) = s.trim().split_once(':').ok_or_else(bad)?;
    let id: i64 = id.trim_start_matches('#').parse().ok().filter(|&n| n > 0).ok_or_else(bad)?;
    let hash = hash.trim().to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((id, hash))
}

/// `--actor platform:id`.
fn parse_actor(s: &str) -> Result<UserId, String> {
    UserId::parse(s.trim()).ok_or_else(|| format!("`{s}` is not an account as platform:id, e.g. web:ana or slack:U024BE7LH"))
}

fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s, false)
}

fn parse_until(s: &str) -> Result<DateTime<Utc>, String> {
    parse_time(s, true)
}

/// A time filter by [`opsbot_core::when::parse_time`]'s rules (the REST API's too).
fn parse_time(raw: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    opsbot_core::when::parse_time(raw, end_of_day).ok_or_else(|| {
        format!(
            "`{}` is neither a date like 2024-05-01 nor a time like 2024-05-01T12:00:00Z (RFC 3339; UTC when no zone is given)",
            raw.trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_times_are_explained() {
        assert!(
            parse_time("yesterday", false)
                .unwrap_err()
                .contains("`yesterday` is neither a date")
        );
        assert!(parse_since("2024-05-01").is_ok() && parse_until("2024-05-31").is_ok());
    }

    #[test]
    fn anchors_are_an_id_and_a_whole_hash() {
        let h = "AB".repeat(32);
        assert_eq!(parse_anchor(&format!("#12:{h}")), Ok((12, h.to_lowercase())));
        assert!(parse_anchor("12").is_err());
        assert!(parse_anchor("12:abcd").is_err());
        assert!(parse_anchor(&format!("x:{h}")).is_err());
        assert!(parse_anchor(&format!("0:{h}")).is_err());
    }
}
