//! Upgrading: a database file written by opsbot before the store moved from sqlx to rusqlite
//! (`tests/fixtures/sqlx-era.db`, written by that store's own calls at migration 9) opens
//! as it is, keeps every record, and takes new ones; and the migrator refuses a file it must
//! not touch, with a message that says why.

use crate::{new_exec, ops};
use opsbot_core::{ExecState, Place, Stream, UserId};
use opsbot_store::rusqlite::Connection;
use opsbot_store::{AuditRecord, ExecutionFilter, SqliteStore, Store};

/// The fixture, copied into a fresh temp dir.
fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sqlx-era.db");
    std::fs::copy(&src, &path).expect("copy the fixture");
    (dir, path)
}

/// The `_sqlx_migrations` rows: version, description, checksum.
fn migrations(path: &std::path::Path) -> Vec<(i64, String, Vec<u8>)> {
    let c = Connection::open(path).expect("open");
    let mut stmt = c
        .prepare("SELECT version, description, checksum FROM _sqlx_migrations ORDER BY version")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn a_file_written_through_sqlx_opens_with_every_record() {
    let (_dir, path) = fixture();
    let before = migrations(&path);
    assert_eq!(before.len(), 9, "the fixture is at migration 9");

    let store = SqliteStore::open(&path).await.expect("open the old file");
    let all = store.executions(&ExecutionFilter::default()).await.expect("list");
    let states: Vec<(&str, ExecState)> = all.iter().map(|e| (e.job.as_str(), e.state)).collect();
    assert_eq!(
        states,
        [
            ("rollback", ExecState::Failed),
            ("restart", ExecState::Succeeded),
            ("deploy", ExecState::Queued)
        ]
    );
    let restart = &all[1];
    assert_eq!(restart.exit_code, Some(0));
    assert_eq!(restart.worker.as_deref(), Some("w1"));
    assert_eq!(restart.params.get("env").map(String::as_str), Some("prod"));
    let out = store.output_all(restart.id).await.expect("output");
    let texts: Vec<(Stream, &str)> = out.iter().map(|l| (l.stream, l.text.as_str())).collect();
    assert_eq!(
        texts,
        [(Stream::Stdout, "hello"), (Stream::Stderr, "warn ✓ 生产"), (Stream::System, "done")]
    );
    assert_eq!(store.output_tail(restart.id, 2).await.expect("tail").1, 3);

    // The audit chain sqlx's store wrote is intact under the new one.
    let v = store.verify_audit(&mut |_, _| {}).await.expect("verify");
    assert_eq!((v.checked, v.broken), (3, None));
    let audit = store.audit_records(10).await.expect("audit");
    assert_eq!(
        audit.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["cancel", "approve", "run"]
    );
    assert_eq!(audit[1].reason.as_deref(), Some("four eyes"));

    // Every other kind of record.
    let ana = UserId::new("terminal", "ana");
    assert_eq!(store.tokens().await.expect("tokens").len(), 1);
    assert_eq!(
        store.dialog(&ops(), &ana).await.expect("dialog").map(|d| d.kind),
        Some("confirm".to_string())
    );
    let approvals = store.approvals(false, 10).await.expect("approvals");
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].requirements["approvers"], 1);
    let votes = store.votes(approvals[0].id).await.expect("votes");
    assert_eq!(
        votes.iter().map(|v| (v.voter_name.as_str(), v.approve)).collect::<Vec<_>>(),
        [("Bo", true)]
    );
    assert_eq!(store.locks().await.expect("locks").len(), 1);
    assert_eq!(
        store.linked_person(&UserId::new("irc", "ana_")).await.expect("link"),
        Some("ana".to_string())
    );
    let pending = store.outbox_pending("irc", &[], 10).await.expect("outbox");
    assert_eq!(pending.iter().map(|m| m.reply["text"].as_str()).collect::<Vec<_>>(), [Some("PONG")]);
    let cards = store.chat_cards_of(restart.id).await.expect("cards");
    assert_eq!(cards.iter().map(|c| c.message_id.as_deref()).collect::<Vec<_>>(), [Some("m1")]);
    assert_eq!(cards[0].place, Place::new("irc", "#ops"));
    assert_eq!(store.schedules(false, 10).await.expect("schedules").len(), 1);
    assert!(store.cron_next("nightly").await.expect("cron").is_some());
    assert_eq!(store.adapter_value("irc", "nick").await.expect("value").as_deref(), Some("opsbot"));

    // New records go on from the old ones.
    let e = store.create_execution(&new_exec("deploy")).await.expect("create");
    assert!(e.id > restart.id);
    let id = store
        .audit(&AuditRecord {
            id: 0,
            execution_id: Some(e.id),
            ..audit[0].clone()
        })
        .await
        .expect("audit");
    assert_eq!(id, audit[0].id + 1);
    let v = store.verify_audit(&mut |_, _| {}).await.expect("verify");
    assert_eq!((v.checked, v.broken), (4, None));
    store.close().await;

    assert_eq!(migrations(&path), before, "no migration redone or re-recorded");
}

/// Opens `path` and expects the store to refuse it, saying `why`.
async fn refused(path: &std::path::Path, why: &str) {
    let err = SqliteStore::open(path).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains(why), "expected `{why}` in: {text}");
}

/// The fixture with `sql` run on it first.
fn tampered(sql: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = fixture();
    Connection::open(&path).expect("open").execute_batch(sql).expect(sql);
    (dir, path)
}

#[tokio::test]
async fn the_migrator_refuses_a_newer_a_changed_or_a_half_migrated_file() {
    for (sql, why) in [
        (
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', TRUE, x'00', 1)",
            "newer opsbot",
        ),
        (
            "UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = 4",
            "migration 4 (listing index) in the database differs",
        ),
        (
            "UPDATE _sqlx_migrations SET success = FALSE WHERE version = 9",
            "migration 9 was left half applied",
        ),
    ] {
        let (_dir, path) = tampered(sql);
        refused(&path, why).await;
    }
}

#[tokio::test]
async fn a_fresh_file_records_its_migrations_as_sqlx_did() {
    let (_dir, old) = fixture();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fresh.db");
    SqliteStore::open(&path).await.expect("open").close().await;
    assert_eq!(migrations(&path), migrations(&old), "same versions, descriptions and checksums");
}
