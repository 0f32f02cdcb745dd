//! Leases, heartbeats and recovering executions whose worker went away.

use crate::{finished, new_exec, now_ms};
use opsbot_core::ExecState;
use opsbot_store::{SqliteStore, Store};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

async fn recover_expired_lease(store: &SqliteStore) {
    let short = store.create_execution(&new_exec("job")).await.expect("create").id;
    let long = store.create_execution(&new_exec("job")).await.expect("create").id;
    let queued = store.create_execution(&new_exec("job")).await.expect("create").id;
    store
        .claim("w-short", Duration::ZERO, Some(short))
        .await
        .expect("claim")
        .expect("claimed");
    store.claim("w-long", HOUR, Some(long)).await.expect("claim").expect("claimed");
    tokio::time::sleep(Duration::from_millis(20)).await;

    let before = now_ms();
    let lost = store.recover_lost(&|_: &str| false).await.expect("recover");
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].id, short);
    assert_eq!(lost[0].state, ExecState::Lost);
    assert_eq!(lost[0].detail.as_deref(), Some("its worker w-short stopped before it finished"));
    assert!(lost[0].finished_at.expect("finished_at") >= before);

    let stored = store.execution(short).await.expect("get").expect("exists");
    assert_eq!(stored.state, ExecState::Lost);
    assert_eq!(store.execution(long).await.expect("get").expect("exists").state, ExecState::Running);
    assert_eq!(
        store.execution(queued).await.expect("get").expect("exists").state,
        ExecState::Queued
    );

    // Nothing more to recover, and a late finish does not resurrect it.
    assert!(store.recover_lost(&|_: &str| false).await.expect("recover").is_empty());
    store.finish(short, &finished(ExecState::Succeeded, 0)).await.expect("finish");
    assert_eq!(store.execution(short).await.expect("get").expect("exists").state, ExecState::Lost);
}
on_both!(recover_expired_lease);

async fn recover_dead_worker(store: &SqliteStore) {
    let dead = store.create_execution(&new_exec("job")).await.expect("create").id;
    let alive = store.create_execution(&new_exec("job")).await.expect("create").id;
    store.claim("host:1", HOUR, Some(dead)).await.expect("claim").expect("claimed");
    store.claim("host:2", HOUR, Some(alive)).await.expect("claim").expect("claimed");

    let asked = std::sync::Mutex::new(Vec::new());
    let is_dead = |w: &str| {
        asked.lock().expect("lock").push(w.to_string());
        w == "host:1"
    };
    let lost = store.recover_lost(&is_dead).await.expect("recover");
    assert_eq!(lost.iter().map(|e| e.id).collect::<Vec<_>>(), vec![dead]);
    assert_eq!(lost[0].detail.as_deref(), Some("its worker host:1 stopped before it finished"));
    let mut asked = asked.into_inner().expect("lock");
    asked.sort();
    assert_eq!(asked, vec!["host:1".to_string(), "host:2".to_string()]);
    assert_eq!(
        store.execution(alive).await.expect("get").expect("exists").state,
        ExecState::Running
    );
}
on_both!(recover_dead_worker);

async fn heartbeat_extends_lease(store: &SqliteStore) {
    let mine = store.create_execution(&new_exec("job")).await.expect("create").id;
    let theirs = store.create_execution(&new_exec("job")).await.expect("create").id;
    store
        .claim("w1", Duration::ZERO, Some(mine))
        .await
        .expect("claim")
        .expect("claimed");
    store
        .claim("w2", Duration::ZERO, Some(theirs))
        .await
        .expect("claim")
        .expect("claimed");
    store.heartbeat("w1", HOUR).await.expect("heartbeat");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let lost = store.recover_lost(&|_: &str| false).await.expect("recover");
    assert_eq!(
        lost.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![theirs],
        "only w2's lease expired"
    );
    assert_eq!(store.execution(mine).await.expect("get").expect("exists").state, ExecState::Running);
}
on_both!(heartbeat_extends_lease);
