//! Creating, reading and listing executions.

use crate::{ana, new_exec, now_ms};
use opsbot_core::{ExecState, Place, UserId};
use opsbot_store::{ExecutionFilter, SqliteStore, Store, StoreError};
use std::time::Duration;

async fn create_and_get(store: &SqliteStore) {
    let before = now_ms();
    let mut new = new_exec("deploy");
    new.params.insert("app".into(), "api ✓ 生产".into());
    new.place = Place {
        platform: "slack".into(),
        channel: "C1".into(),
        thread: Some("171.5".into()),
    };
    new.max_parallel = Some(2);
    let created = store.create_execution(&new).await.expect("create");
    assert!(created.id > 0);
    assert_eq!(created.job, "deploy");
    assert_eq!(created.params, new.params);
    assert_eq!(created.requested_by, ana());
    assert_eq!(created.requester_name, "Ana");
    assert_eq!(created.place, new.place);
    assert_eq!(created.state, ExecState::Queued);
    assert!(
        created.created_at >= before && created.created_at <= now_ms(),
        "{}",
        created.created_at
    );
    assert_eq!(created.started_at, None);
    assert_eq!(created.finished_at, None);
    assert_eq!(created.worker, None);
    assert!(!created.cancel_requested);

    let got = store.execution(created.id).await.expect("get").expect("exists");
    assert_eq!(got.id, created.id);
    assert_eq!(got.params, created.params);
    assert_eq!(got.place, created.place);
    assert_eq!(got.created_at, created.created_at);
    assert_eq!(got.state, ExecState::Queued);

    assert!(store.execution(created.id + 1000).await.expect("get").is_none());

    let second = store.create_execution(&new_exec("deploy")).await.expect("create");
    assert!(second.id > created.id);
}
on_both!(create_and_get);

async fn list_with_filters(store: &SqliteStore) {
    let bob = UserId::new("slack", "U2");
    let mut ids = Vec::new();
    for i in 0..9 {
        let mut new = new_exec(if i % 3 == 0 { "deploy" } else { "restart" });
        if i % 2 == 1 {
            new.requested_by = bob.clone();
        }
        ids.push(store.create_execution(&new).await.expect("create").id);
    }
    // One of them running, one finished.
    let running = store
        .claim("w1", Duration::from_secs(60), Some(ids[4]))
        .await
        .expect("claim")
        .expect("claimed");
    assert_eq!(running.id, ids[4]);

    let all = store.executions(&ExecutionFilter::default()).await.expect("list");
    let got: Vec<i64> = all.iter().map(|e| e.id).collect();
    let mut want = ids.clone();
    want.reverse();
    assert_eq!(got, want, "newest first");

    let deploys = store
        .executions(&ExecutionFilter {
            job: Some("deploy".into()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(deploys.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[6], ids[3], ids[0]]);

    let bobs = store
        .executions(&ExecutionFilter {
            requested_by: Some(bob.clone()),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(bobs.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[7], ids[5], ids[3], ids[1]]);
    assert!(bobs.iter().all(|e| e.requested_by == bob));

    // Same id on another platform is another account.
    let other_platform = store
        .executions(&ExecutionFilter {
            requested_by: Some(UserId::new("matrix", "U2")),
            ..Default::default()
        })
        .await
        .expect("list");
    assert!(other_platform.is_empty());

    let running_list = store
        .executions(&ExecutionFilter {
            state: Some(ExecState::Running),
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(running_list.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[4]]);

    let combined = store
        .executions(&ExecutionFilter {
            job: Some("restart".into()),
            requested_by: Some(bob.clone()),
            state: Some(ExecState::Queued),
            before_id: Some(ids[7]),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(combined.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[5], ids[1]]);
}
on_both!(list_with_filters);

async fn list_pagination_and_limits(store: &SqliteStore) {
    let mut ids = Vec::new();
    for _ in 0..25 {
        ids.push(store.create_execution(&new_exec("job")).await.expect("create").id);
    }
    ids.reverse();

    // Limit 0 means the default of 20.
    let default = store.executions(&ExecutionFilter::default()).await.expect("list");
    assert_eq!(default.len(), 20);

    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .executions(&ExecutionFilter {
                before_id: before,
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        before = page.last().map(|e| e.id);
        seen.extend(page.iter().map(|e| e.id));
    }
    assert_eq!(seen, ids, "pages cover everything once, newest first");

    let one = store
        .executions(&ExecutionFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, ids[0]);
}
on_both!(list_pagination_and_limits);

#[tokio::test]
async fn list_limit_is_capped_at_1000() {
    let store = SqliteStore::memory().await.expect("memory store");
    for _ in 0..1005 {
        store.create_execution(&new_exec("job")).await.expect("create");
    }
    let all = store
        .executions(&ExecutionFilter {
            limit: u32::MAX,
            ..Default::default()
        })
        .await
        .expect("list");
    assert_eq!(all.len(), 1000);
}

async fn unreadable_rows_are_corrupt(store: &SqliteStore) {
    let a = store.create_execution(&new_exec("job")).await.expect("create");
    let b = store.create_execution(&new_exec("job")).await.expect("create");
    {
        let conn = store.conn().expect("a connection");
        conn.execute("UPDATE executions SET state = 'exploded' WHERE id = ?1", [a.id])
            .expect("raw update");
        conn.execute("UPDATE executions SET params = '{not json' WHERE id = ?1", [b.id])
            .expect("raw update");
    }
    let err = store.execution(a.id).await.expect_err("bad state");
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("exploded")), "{err}");
    let err = store.execution(b.id).await.expect_err("bad params");
    assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("JSON")), "{err}");
    assert!(matches!(
        store.executions(&ExecutionFilter::default()).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(store.request_cancel(a.id).await, Err(StoreError::Corrupt(_))));
}
on_both!(unreadable_rows_are_corrupt);

async fn ping_answers(store: &SqliteStore) {
    store.ping().await.expect("ping");
}
on_both!(ping_answers);
