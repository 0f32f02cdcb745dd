//! The audit trail: append-only.

use crate::{ana, now_ms, ops};
use opsbot_core::Params;
use opsbot_store::{AuditRecord, SqliteStore, Store};

fn record(action: &str, decision: &str) -> AuditRecord {
    AuditRecord {
        id: 0,
        at: now_ms(),
        actor: ana(),
        actor_name: "Ana".into(),
        place: ops(),
        action: action.into(),
        job: None,
        params: None,
        decision: decision.into(),
        reason: None,
        execution_id: None,
    }
}

async fn audit_appends_and_lists(store: &SqliteStore) {
    assert!(store.audit_records(10).await.expect("list").is_empty());
    let mut params = Params::new();
    params.insert("env".into(), "prod".into());
    params.insert("token".into(), "•••".into());
    let full = AuditRecord {
        id: 999,
        job: Some("deploy".into()),
        params: Some(params),
        reason: Some("allowed by role ops".into()),
        execution_id: Some(7),
        place: opsbot_core::Place {
            thread: Some("th".into()),
            ..ops()
        },
        ..record("run", "accepted")
    };
    let a = store.audit(&full).await.expect("audit");
    let b = store.audit(&record("cancel", "refused")).await.expect("audit");
    let c = store.audit(&record("confirm", "confirmed")).await.expect("audit");
    assert!(a < b && b < c, "ids increase: {a} {b} {c}");

    let newest = store.audit_records(2).await.expect("list");
    assert_eq!(newest.iter().map(|r| r.id).collect::<Vec<_>>(), vec![c, b]);
    assert_eq!(newest[0].action, "confirm");

    let all = store.audit_records(100).await.expect("list");
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[2],
        AuditRecord { id: a, ..full },
        "the store assigns the id, the rest round-trips"
    );
}
on_both!(audit_appends_and_lists);

async fn audit_is_append_only(store: &SqliteStore) {
    let id = store.audit(&record("run", "accepted")).await.expect("audit");
    let update = store
        .conn()
        .expect("a connection")
        .execute("UPDATE audit SET decision = 'refused' WHERE id = ?1", [id]);
    let err = update.expect_err("update refused");
    assert!(err.to_string().contains("audit records are append-only"), "{err}");
    let delete = store.conn().expect("a connection").execute("DELETE FROM audit WHERE id = ?1", [id]);
    let err = delete.expect_err("delete refused");
    assert!(err.to_string().contains("audit records are append-only"), "{err}");
    let delete_all = store.conn().expect("a connection").execute("DELETE FROM audit", []);
    assert!(delete_all.is_err());

    let all = store.audit_records(10).await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].decision, "accepted");
}
on_both!(audit_is_append_only);
