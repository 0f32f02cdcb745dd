//! Database files: creation, settings, reopening, several stores on one file.

use crate::{ana, at_ms, finished, line, new_exec, ops};
use opsbot_core::{ExecState, Stream};
use opsbot_store::rusqlite;
use opsbot_store::{AuditRecord, Dialog, SqliteStore, Store};
use std::time::Duration;

/// The value of `PRAGMA name` on `conn`.
fn pragma<T: rusqlite::types::FromSql>(conn: &rusqlite::Connection, name: &str) -> T {
    conn.pragma_query_value(None, name, |r| r.get(0)).expect("pragma")
}

#[tokio::test]
async fn open_creates_file_and_folders_with_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a").join("b").join("opsbot.db");
    let store = SqliteStore::open(&path).await.expect("open");
    assert!(path.exists());
    let conn = store.conn().expect("a connection");
    let mode: String = pragma(&conn, "journal_mode");
    assert_eq!(mode, "wal");
    let fk: i64 = pragma(&conn, "foreign_keys");
    assert_eq!(fk, 1);
    // Our own busy handler replaces SQLite's `busy_timeout` (which then reads 0); it waits about
    // as long (below: `a_writer_waits_for_another_connections_transaction`).
    let busy: i64 = pragma(&conn, "busy_timeout");
    assert_eq!(busy, 0);
    let sync: i64 = pragma(&conn, "synchronous");
    assert_eq!(sync, 1, "NORMAL");
}

#[tokio::test]
async fn reopening_keeps_data_and_migrates_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let (id, audit_id) = {
        let store = SqliteStore::open(&path).await.expect("open");
        let id = store.create_execution(&new_exec("deploy")).await.expect("create").id;
        store
            .claim("w1", Duration::from_secs(60), None)
            .await
            .expect("claim")
            .expect("claimed");
        store
            .append_output(id, &[line(1, Stream::Stdout, "hello"), line(2, Stream::Stderr, "")])
            .await
            .expect("append");
        store.finish(id, &finished(ExecState::Succeeded, 0)).await.expect("finish");
        store
            .put_dialog(&Dialog {
                place: ops(),
                user: ana(),
                kind: "confirm".into(),
                state: serde_json::json!({"id": id}),
                expires_at: at_ms(2_000_000_000_000),
            })
            .await
            .expect("dialog");
        let audit_id = store
            .audit(&AuditRecord {
                id: 0,
                at: at_ms(1_700_000_000_000),
                actor: ana(),
                actor_name: "Ana".into(),
                place: ops(),
                action: "run".into(),
                job: Some("deploy".into()),
                params: None,
                decision: "accepted".into(),
                reason: None,
                execution_id: Some(id),
            })
            .await
            .expect("audit");
        store.close().await;
        (id, audit_id)
    };

    for _ in 0..2 {
        let store = SqliteStore::open(&path).await.expect("reopen");
        let e = store.execution(id).await.expect("get").expect("kept");
        assert_eq!(e.state, ExecState::Succeeded);
        assert_eq!(store.output_all(id).await.expect("output").len(), 2);
        assert!(store.dialog(&ops(), &ana()).await.expect("dialog").is_some());
        assert_eq!(store.audit_records(10).await.expect("audit")[0].id, audit_id);
        // Each migration is recorded once, however often the file is opened.
        let (rows, versions): (i64, i64) = store
            .conn()
            .expect("a connection")
            .query_row("SELECT COUNT(*), COUNT(DISTINCT version) FROM _sqlx_migrations", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("count");
        assert_eq!(rows, versions);
        assert_eq!(versions, 9, "0001_init … 0009_schedules");
        store.close().await;
    }

    let store = SqliteStore::open(&path).await.expect("reopen");
    let next = store.create_execution(&new_exec("deploy")).await.expect("create").id;
    assert!(next > id, "ids keep growing");
}

/// Two processes starting at once on a fresh file both get a usable store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_open_of_a_fresh_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let (a, b, c) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b, c) = (a.expect("a"), b.expect("b"), c.expect("c"));
    let id = a.create_execution(&new_exec("job")).await.expect("create").id;
    assert_eq!(b.execution(id).await.expect("get").map(|e| e.id), Some(id));
    assert_eq!(
        c.claim("w", Duration::from_secs(5), None).await.expect("claim").map(|e| e.id),
        Some(id)
    );
}

/// A change made through one store is visible through another on the same file.
#[tokio::test]
async fn stores_on_one_file_share_state() {
    let (dir, one) = crate::file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let id = one.create_execution(&new_exec("job")).await.expect("create").id;
    let claimed = two
        .claim("w2", Duration::from_secs(60), None)
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(claimed.id, id);
    assert!(one.claim("w1", Duration::from_secs(60), None).await.expect("claim").is_none());
    assert_eq!(one.request_cancel(id).await.expect("cancel"), opsbot_store::CancelResult::Requested);
    assert_eq!(two.cancel_requested("w2").await.expect("list"), vec![id]);
}

#[tokio::test]
async fn a_writer_waits_for_another_connections_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let store = SqliteStore::open(&path).await.expect("open");
    // Another connection (as another process would) holds the write lock for 400 ms. It lets go
    // on a thread of its own: the store's write runs on this test's one runtime thread, which it
    // blocks while it waits.
    let other = rusqlite::Connection::open(&path).expect("connect");
    other.execute_batch("BEGIN IMMEDIATE").expect("begin");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        other.execute_batch("COMMIT").expect("commit");
        other
    });
    // The store's write waits (SQLite calls our busy handler) and then succeeds.
    let e = store
        .create_execution(&new_exec("deploy"))
        .await
        .expect("the write waited for the lock");
    let _other = release.join().expect("released");
    assert_eq!(store.execution(e.id).await.expect("read").expect("stored").job, "deploy");
}

#[tokio::test]
async fn a_burst_of_queued_runs_does_not_grow_the_wal_without_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let store = SqliteStore::open(&path).await.expect("open");
    // Only `INSERT … RETURNING` writes, as when runs are queued faster than anything else
    // happens: each must still let SQLite checkpoint (its own, the backstop, every 3,000 pages).
    for _ in 0..3000 {
        store.create_execution(&new_exec("deploy")).await.expect("queued");
    }
    let wal = std::fs::metadata(dir.path().join("opsbot.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < 16 << 20, "the WAL grew to {} MiB", wal >> 20);
}

/// `close` ends the store for all its clones, and the last connection leaves the file whole
/// (its write-ahead log checkpointed into it and removed).
#[tokio::test]
async fn a_closed_store_refuses_calls_and_leaves_its_file_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let id = store.create_execution(&new_exec("deploy")).await.expect("create").id;
    let clone = store.clone();
    assert!(std::path::Path::new(&format!("{}-wal", path.display())).exists(), "WAL while open");
    store.close().await;
    let err = clone.execution(id).await.expect_err("closed");
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(
        !std::path::Path::new(&format!("{}-wal", path.display())).exists(),
        "WAL removed at close"
    );
    let again = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(again.execution(id).await.expect("get").map(|e| e.id), Some(id));
}

/// SQLite's own checkpoint is only a backstop here (3,000 pages, ~12 MB): the store starts one
/// beside the writers every ~256 changed rows, so with pauses between writes, as chat traffic
/// has, the write-ahead log stays small and no write waits for a checkpoint. With the backstop
/// alone the log of this test grows to 12.4 MB before SQLite copies it back; with the store's,
/// to 8.1 MB.
#[tokio::test]
async fn the_write_ahead_log_is_checkpointed_beside_the_writers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let wal = dir.path().join("opsbot.db-wal");
    let store = SqliteStore::open(&path).await.expect("open");
    let backstop: i64 = pragma(&store.conn().expect("a connection"), "wal_autocheckpoint");
    assert_eq!(backstop, 3_000);
    let mut largest = 0;
    for _ in 0..60 {
        for _ in 0..50 {
            store.create_execution(&new_exec("deploy")).await.expect("create");
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(largest < 10 << 20, "the write-ahead log grew to {largest} bytes");
}
