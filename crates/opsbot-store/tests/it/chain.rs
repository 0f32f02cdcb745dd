//! The audit hash chain: appends are chained (also from two pools on one file at once), records
//! from before the chain are chained when the file is opened, and verification finds the first
//! record an attacker with the database file changed, deleted, reordered, re-hashed or added.

use crate::{ana, at_ms, ops};
use opsbot_core::Params;
use opsbot_store::rusqlite;
use opsbot_store::{AuditFilter, AuditRecord, AuditVerification, ChainProblem, ChainedAudit, GENESIS_HASH, SqliteStore, Store, audit_hash};

/// Record number `n` (varied fields, so swapped records differ).
fn record(n: i64) -> AuditRecord {
    let mut params = Params::new();
    params.insert("env".into(), format!("env{n}"));
    AuditRecord {
        id: 0,
        at: at_ms(1_700_000_000_000 + n),
        actor: ana(),
        actor_name: "Ana".into(),
        place: ops(),
        action: "run".into(),
        job: Some(format!("job{n}")),
        params: (n % 2 == 0).then_some(params),
        decision: "accepted".into(),
        reason: (n % 3 == 0).then(|| format!("reason {n}")),
        execution_id: Some(n),
    }
}

/// Appends records 1..=n; returns their ids.
async fn append(store: &SqliteStore, n: i64) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 1..=n {
        ids.push(store.audit(&record(i)).await.expect("audit"));
    }
    ids
}

/// The whole chain as stored, oldest first.
async fn chain(store: &dyn Store) -> Vec<ChainedAudit> {
    let mut out: Vec<ChainedAudit> = Vec::new();
    loop {
        let after = out.last().map_or(0, |l| l.id);
        let page = store.audit_chain(&AuditFilter::default(), after, 2).await.expect("chain");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

async fn verify(store: &dyn Store) -> AuditVerification {
    store.verify_audit(&mut |_, _| {}).await.expect("verify")
}

/// Asserts the chain is intact with `n` records.
async fn assert_intact(store: &dyn Store, n: u64) {
    let v = verify(store).await;
    assert_eq!(v.broken, None, "{v:?}");
    assert_eq!(v.checked, n);
    let links = chain(store).await;
    assert_eq!(links.len() as u64, n);
    assert_eq!(
        v.intact_up_to,
        links.last().map(|l| (l.id, l.hash.clone().expect("hash"))),
        "the head is the newest record and its hash"
    );
}

/// What an attacker with the file does first: drop the append-only triggers.
fn drop_triggers(store: &SqliteStore) {
    let conn = store.conn().expect("a connection");
    for t in ["audit_no_update", "audit_no_delete", "audit_chained"] {
        conn.execute_batch(&format!("DROP TRIGGER {t}")).expect("drop trigger");
    }
}

/// Runs SQL on the file as the attacker.
fn sql(store: &SqliteStore, statement: &str) {
    store
        .conn()
        .expect("a connection")
        .execute_batch(statement)
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The first broken record and its problem.
async fn broken(store: &dyn Store) -> (i64, Option<i64>, ChainProblem, u64) {
    let v = verify(store).await;
    let b = v.broken.clone().unwrap_or_else(|| panic!("the chain should be broken: {v:?}"));
    assert_eq!(
        v.intact_up_to.as_ref().map(|(id, _)| *id),
        b.after,
        "intact up to the record before it"
    );
    (b.id, b.after, b.problem, v.checked)
}

async fn appends_are_chained(store: &SqliteStore) {
    let empty = verify(store).await;
    assert_eq!((empty.checked, empty.intact_up_to, empty.broken), (0, None, None));

    let ids = append(store, 4).await;
    let links = chain(store).await;
    assert_eq!(links.iter().map(|l| l.id).collect::<Vec<_>>(), ids);
    let mut prev = GENESIS_HASH.to_string();
    for (n, link) in (1..).zip(&links) {
        assert_eq!(link.prev_hash.as_deref(), Some(prev.as_str()), "record {n} links to the one before");
        let stored = link.record.clone().expect("readable");
        assert_eq!(stored, AuditRecord { id: link.id, ..record(n) }, "stored as given");
        let hash = audit_hash(&prev, &stored);
        assert_eq!(link.hash.as_deref(), Some(hash.as_str()), "hash of prev_hash and record {n}");
        assert_eq!(hash.len(), 64);
        prev = hash;
    }
    let mut seen = Vec::new();
    let v = store
        .verify_audit(&mut |id, h| seen.push((id, h.to_string())))
        .await
        .expect("verify");
    assert_eq!(v.broken, None);
    assert_eq!(v.checked, 4);
    assert_eq!(seen.len(), 4, "every intact record is reported");
    assert_eq!(v.intact_up_to, seen.last().cloned());

    // Filters and paging of the chain listing, oldest first.
    let f = AuditFilter {
        job: Some("job3".into()),
        ..Default::default()
    };
    let only = store.audit_chain(&f, 0, 10).await.expect("filtered");
    assert_eq!(only.iter().map(|l| l.id).collect::<Vec<_>>(), vec![ids[2]]);
    let after = store.audit_chain(&AuditFilter::default(), ids[1], 1).await.expect("after");
    assert_eq!(after.iter().map(|l| l.id).collect::<Vec<_>>(), vec![ids[2]]);
}
on_both!(appends_are_chained);

async fn a_new_record_must_extend_the_chain(store: &SqliteStore) {
    append(store, 2).await;
    // Without hashes, with a wrong prev_hash, or with an id below the newest: refused by trigger.
    let head = chain(store).await.pop().expect("head");
    let h = head.hash.clone().expect("hash");
    let zeros = GENESIS_HASH;
    for (id, prev, hash) in [
        ("99", "NULL", "NULL"),
        ("99", &*format!("'{zeros}'"), &*format!("'{zeros}'")),
        ("1", &*format!("'{h}'"), &*format!("'{zeros}'")),
    ] {
        let statement = format!(
            "INSERT INTO audit (id, at, actor_platform, actor_id, actor_name, place_platform, place_channel, action, decision, prev_hash, hash) \
             VALUES ({id}, 1, 'x', 'y', 'z', 'p', 'c', 'run', 'accepted', {prev}, {hash})"
        );
        let err = store.conn().expect("a connection").execute_batch(&statement).expect_err("refused");
        assert!(
            err.to_string().contains("must extend the hash chain") || err.to_string().contains("UNIQUE"),
            "{err}"
        );
    }
    assert_intact(store, 2).await;
}
on_both!(a_new_record_must_extend_the_chain);

async fn a_changed_record_is_found(store: &SqliteStore) {
    let ids = append(store, 5).await;
    drop_triggers(store);
    sql(store, &format!("UPDATE audit SET decision = 'refused' WHERE id = {}", ids[2]));
    let (id, after, problem, checked) = broken(store).await;
    assert_eq!((id, after, checked), (ids[2], Some(ids[1]), 3));
    assert!(matches!(problem, ChainProblem::Altered { .. }), "{problem:?}");
}
on_both!(a_changed_record_is_found);

async fn a_deleted_record_is_found(store: &SqliteStore) {
    let ids = append(store, 5).await;
    drop_triggers(store);
    sql(store, &format!("DELETE FROM audit WHERE id = {}", ids[2]));
    let (id, after, problem, _) = broken(store).await;
    assert_eq!((id, after), (ids[3], Some(ids[1])), "the record after the hole does not link");
    assert!(matches!(problem, ChainProblem::Unlinked { .. }), "{problem:?}");

    // Deleting the first record is found too, and so is renumbering to close the gap.
    let store2 = SqliteStore::memory().await.expect("store");
    let ids = append(&store2, 3).await;
    drop_triggers(&store2);
    sql(&store2, &format!("DELETE FROM audit WHERE id = {}", ids[0]));
    let (id, after, problem, _) = broken(&store2).await;
    assert_eq!((id, after), (ids[1], None));
    assert!(
        matches!(&problem, ChainProblem::Unlinked { expected, .. } if expected == GENESIS_HASH),
        "{problem:?}"
    );
    sql(&store2, &format!("UPDATE audit SET id = id - 1 WHERE id > {}", ids[0]));
    let (id, _, problem, _) = broken(&store2).await;
    assert_eq!(id, ids[0]);
    assert!(matches!(problem, ChainProblem::Unlinked { .. }), "{problem:?}");
    // … and pointing the renumbered record at the start does not help: the id is hashed too.
    sql(
        &store2,
        &format!("UPDATE audit SET prev_hash = '{GENESIS_HASH}' WHERE id = {}", ids[0]),
    );
    let (id, _, problem, _) = broken(&store2).await;
    assert_eq!(id, ids[0]);
    assert!(matches!(problem, ChainProblem::Altered { .. }), "{problem:?}");
}
on_both!(a_deleted_record_is_found);

/// Every column but `id`.
const COLUMNS: &str = "at, actor_platform, actor_id, actor_name, place_platform, place_channel, place_thread, \
                       action, job, params, decision, reason, execution_id, prev_hash, hash";

/// Swaps the given columns of records `a` and `b`.
fn swap(store: &SqliteStore, a: i64, b: i64, columns: &str) {
    let cols: Vec<&str> = columns.split(',').map(str::trim).collect();
    let set = cols
        .iter()
        .map(|c| format!("{c} = (SELECT {c} FROM audit_copy WHERE audit_copy.id = CASE audit.id WHEN {a} THEN {b} ELSE {a} END)"))
        .collect::<Vec<_>>()
        .join(", ");
    sql(store, "CREATE TABLE audit_copy AS SELECT * FROM audit");
    sql(store, &format!("UPDATE audit SET {set} WHERE id IN ({a}, {b})"));
    sql(store, "DROP TABLE audit_copy");
}

async fn a_reordered_pair_is_found(store: &SqliteStore) {
    let ids = append(store, 5).await;
    drop_triggers(store);
    // Whole rows trade places (the same as swapping their ids).
    swap(store, ids[1], ids[2], COLUMNS);
    let (id, after, problem, _) = broken(store).await;
    assert_eq!((id, after), (ids[1], Some(ids[0])));
    assert!(matches!(problem, ChainProblem::Unlinked { .. }), "{problem:?}");
    swap(store, ids[1], ids[2], COLUMNS);
    assert_intact(store, 5).await;

    // Only the contents trade places; each keeps the hashes of its position.
    let contents = COLUMNS.trim_end_matches(", prev_hash, hash");
    swap(store, ids[3], ids[4], contents);
    let (id, after, problem, _) = broken(store).await;
    assert_eq!((id, after), (ids[3], Some(ids[2])));
    assert!(matches!(problem, ChainProblem::Altered { .. }), "{problem:?}");
}
on_both!(a_reordered_pair_is_found);

async fn an_edited_hash_is_found(store: &SqliteStore) {
    let ids = append(store, 4).await;
    drop_triggers(store);
    let links = chain(store).await;
    // A forged hash column: it no longer matches the record.
    let forged = "ab".repeat(32);
    sql(store, &format!("UPDATE audit SET hash = '{forged}' WHERE id = {}", ids[1]));
    let (id, _, problem, _) = broken(store).await;
    assert_eq!(id, ids[1]);
    assert_eq!(
        problem,
        ChainProblem::Altered {
            computed: links[1].hash.clone().expect("hash"),
            stored: forged
        }
    );

    // A changed record re-hashed correctly: then the next record no longer links to it.
    let prev = links[0].hash.clone().expect("hash");
    let changed = AuditRecord {
        id: ids[1],
        decision: "refused".into(),
        ..links[1].record.clone().expect("record")
    };
    let rehashed = audit_hash(&prev, &changed);
    sql(
        store,
        &format!("UPDATE audit SET decision = 'refused', hash = '{rehashed}' WHERE id = {}", ids[1]),
    );
    let (id, after, problem, _) = broken(store).await;
    assert_eq!((id, after), (ids[2], Some(ids[1])));
    assert!(
        matches!(&problem, ChainProblem::Unlinked { expected, .. } if *expected == rehashed),
        "{problem:?}"
    );
}
on_both!(an_edited_hash_is_found);

async fn a_record_added_without_a_hash_is_found(store: &SqliteStore) {
    let ids = append(store, 3).await;
    drop_triggers(store);
    sql(
        store,
        "INSERT INTO audit (at, actor_platform, actor_id, actor_name, place_platform, place_channel, action, decision) \
         VALUES (1, 'terminal', 'mallory', 'M', 'terminal', 'ops', 'run', 'accepted')",
    );
    let (id, after, problem, checked) = broken(store).await;
    assert!(id > ids[2]);
    assert_eq!((after, problem, checked), (Some(ids[2]), ChainProblem::Unhashed, 4));

    // Something opsbot never writes is reported as unreadable, not as an error.
    sql(store, &format!("UPDATE audit SET params = 'not json' WHERE id = {}", ids[0]));
    let (id, after, problem, _) = broken(store).await;
    assert_eq!((id, after), (ids[0], None));
    assert!(matches!(problem, ChainProblem::Unreadable(_)), "{problem:?}");
}
on_both!(a_record_added_without_a_hash_is_found);

/// Two pools on one file (as two processes would be) append at the same time, each from several
/// tasks: every record lands in one unbroken chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_from_two_pools_stay_chained() {
    let (dir, one) = crate::file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    const TASKS: i64 = 4;
    const EACH: i64 = 40;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        for store in [one.clone(), two.clone()] {
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    store.audit(&record(t * 1000 + i)).await.expect("audit");
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total = (TASKS * EACH * 2) as u64;
    assert_intact(&one, total).await;
    assert_intact(&two, total).await;
    // Every record is there once.
    let mut execs: Vec<i64> = chain(&one)
        .await
        .into_iter()
        .map(|l| l.record.expect("record").execution_id.expect("exec"))
        .collect();
    execs.sort_unstable();
    execs.dedup();
    assert_eq!(execs.len() as u64, total / 2, "each (task, i) appended once by each store");
}

/// A file at migration 5 with `n` audit records written as the store wrote them then (no hash).
fn file_before_the_chain(path: &std::path::Path, n: i64) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open(path).expect("open the file");
    SqliteStore::migrate(&mut conn, Some(5)).expect("migrations 1-5");
    for i in 1..=n {
        let r = record(i);
        conn.execute(
            "INSERT INTO audit (at, actor_platform, actor_id, actor_name, place_platform, place_channel, \
             place_thread, action, job, params, decision, reason, execution_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            rusqlite::params![
                r.at.timestamp_millis(),
                r.actor.platform,
                r.actor.id,
                r.actor_name,
                r.place.platform,
                r.place.channel,
                r.place.thread,
                r.action,
                r.job,
                r.params.as_ref().map(|p| serde_json::to_string(p).expect("json")),
                r.decision,
                r.reason,
                r.execution_id,
            ],
        )
        .expect("old insert");
    }
    conn
}

#[tokio::test]
async fn records_from_before_the_chain_are_chained_when_the_file_is_opened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    file_before_the_chain(&path, 5).close().expect("close the old file");

    let store = SqliteStore::open(&path).await.expect("open and migrate");
    assert_intact(&store, 5).await;
    for (n, link) in (1..).zip(chain(&store).await) {
        assert_eq!(
            link.record.expect("record"),
            AuditRecord { id: n, ..record(n) },
            "content unchanged"
        );
    }
    let left: i64 = store
        .conn()
        .expect("a connection")
        .query_row("SELECT COUNT(*) FROM audit_unchained", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0, "done once");

    // New records extend the same chain; the table is strictly append-only again.
    store.audit(&record(6)).await.expect("audit");
    assert_intact(&store, 6).await;
    for statement in [
        "UPDATE audit SET decision = 'refused' WHERE id = 1",
        "UPDATE audit SET hash = NULL, prev_hash = NULL WHERE id = 2",
        "DELETE FROM audit WHERE id = 3",
    ] {
        let err = store.conn().expect("a connection").execute_batch(statement).expect_err(statement);
        assert!(err.to_string().contains("append-only"), "{statement}: {err}");
    }
    store.close().await;

    // Opening again changes nothing.
    let again = SqliteStore::open(&path).await.expect("reopen");
    assert_intact(&again, 6).await;
}

/// Between migration 6 and the store's chaining, the update trigger lets through exactly one
/// thing: giving an old record its hashes, once, with nothing else changed.
#[tokio::test]
async fn the_backfill_exception_of_the_update_trigger_is_narrow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = file_before_the_chain(&dir.path().join("opsbot.db"), 2);
    SqliteStore::migrate(&mut conn, Some(6)).expect("migration 6");
    let h = "cd".repeat(32);
    let refused = [
        format!("UPDATE audit SET prev_hash = '{GENESIS_HASH}', hash = '{h}', decision = 'refused' WHERE id = 1"),
        format!("UPDATE audit SET prev_hash = '{GENESIS_HASH}', hash = '{h}', id = 7 WHERE id = 1"),
        format!("UPDATE audit SET hash = '{h}' WHERE id = 1"),
        "UPDATE audit SET decision = 'refused' WHERE id = 1".to_string(),
    ];
    for s in &refused {
        let err = conn.execute_batch(s).expect_err(s);
        assert!(err.to_string().contains("append-only"), "{s}: {err}");
    }
    let once = format!("UPDATE audit SET prev_hash = '{GENESIS_HASH}', hash = '{h}' WHERE id = 1");
    conn.execute_batch(&once).expect("the backfill update");
    let err = conn.execute_batch(&once).expect_err("only once");
    assert!(err.to_string().contains("append-only"), "{err}");
    // A record added after the migration is not covered, even without a hash.
    conn.execute_batch("DROP TRIGGER audit_chained").expect("drop");
    conn.execute_batch(
        "INSERT INTO audit (at, actor_platform, actor_id, actor_name, place_platform, place_channel, action, decision) \
         VALUES (1, 'x', 'y', 'z', 'p', 'c', 'run', 'accepted')",
    )
    .expect("insert");
    let err = conn
        .execute_batch(&format!("UPDATE audit SET prev_hash = '{GENESIS_HASH}', hash = '{h}' WHERE id = 3"))
        .expect_err("not an old record");
    assert!(err.to_string().contains("append-only"), "{err}");
}
