//! Claiming queued executions: order, parallel limits, `only`, and concurrency across stores.

use crate::{file_store, finished, new_exec, now_ms};
use opsbot_core::{ExecState, ExecutionId};
use opsbot_store::{SqliteStore, Store};
use std::collections::HashMap;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

async fn claims_in_fifo_order(store: &SqliteStore) {
    assert!(store.claim("w1", LEASE, None).await.expect("claim").is_none(), "nothing queued");
    let a = store.create_execution(&new_exec("a")).await.expect("create").id;
    let b = store.create_execution(&new_exec("b")).await.expect("create").id;
    let c = store.create_execution(&new_exec("a")).await.expect("create").id;

    let before = now_ms();
    let first = store.claim("w1", LEASE, None).await.expect("claim").expect("claimed");
    assert_eq!(first.id, a);
    assert_eq!(first.state, ExecState::Running);
    assert_eq!(first.worker.as_deref(), Some("w1"));
    let started = first.started_at.expect("started_at");
    assert!(started >= before && started <= now_ms());

    let stored = store.execution(a).await.expect("get").expect("exists");
    assert_eq!(stored.state, ExecState::Running);
    assert_eq!(stored.worker.as_deref(), Some("w1"));

    assert_eq!(store.claim("w2", LEASE, None).await.expect("claim").map(|e| e.id), Some(b));
    assert_eq!(store.claim("w1", LEASE, None).await.expect("claim").map(|e| e.id), Some(c));
    assert!(store.claim("w1", LEASE, None).await.expect("claim").is_none());
}
on_both!(claims_in_fifo_order);

async fn claim_respects_max_parallel(store: &SqliteStore) {
    let mut limited = new_exec("deploy");
    limited.max_parallel = Some(1);
    let d1 = store.create_execution(&limited).await.expect("create").id;
    let d2 = store.create_execution(&limited).await.expect("create").id;
    let other = store.create_execution(&new_exec("other")).await.expect("create").id;

    assert_eq!(store.claim("w1", LEASE, None).await.expect("claim").map(|e| e.id), Some(d1));
    // d2 must wait for d1; the next job in line goes first.
    assert_eq!(store.claim("w1", LEASE, None).await.expect("claim").map(|e| e.id), Some(other));
    assert!(
        store.claim("w1", LEASE, None).await.expect("claim").is_none(),
        "deploy is at its limit"
    );
    assert!(
        store.claim("w2", LEASE, Some(d2)).await.expect("claim").is_none(),
        "`only` obeys the limit too"
    );

    store.finish(d1, &finished(ExecState::Succeeded, 0)).await.expect("finish");
    assert_eq!(store.claim("w2", LEASE, None).await.expect("claim").map(|e| e.id), Some(d2));

    // A limit of 2 lets two run.
    let mut two = new_exec("backup");
    two.max_parallel = Some(2);
    let ids: Vec<ExecutionId> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(store.create_execution(&two).await.expect("create").id);
        }
        v
    };
    assert_eq!(store.claim("w1", LEASE, None).await.expect("claim").map(|e| e.id), Some(ids[0]));
    assert_eq!(store.claim("w1", LEASE, None).await.expect("claim").map(|e| e.id), Some(ids[1]));
    assert!(store.claim("w1", LEASE, None).await.expect("claim").is_none());
}
on_both!(claim_respects_max_parallel);

async fn claim_only_one(store: &SqliteStore) {
    let a = store.create_execution(&new_exec("a")).await.expect("create").id;
    let b = store.create_execution(&new_exec("b")).await.expect("create").id;
    let got = store.claim("w1", LEASE, Some(b)).await.expect("claim").expect("claimed");
    assert_eq!(got.id, b, "skips older ones when asked for one");
    assert!(store.claim("w1", LEASE, Some(b)).await.expect("claim").is_none(), "already running");
    assert!(
        store.claim("w1", LEASE, Some(b + 100)).await.expect("claim").is_none(),
        "no such execution"
    );
    assert_eq!(store.execution(a).await.expect("get").expect("exists").state, ExecState::Queued);
}
on_both!(claim_only_one);

/// Two stores on the same file, four tasks each, claiming until the queue is empty: every
/// execution is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_claims_across_stores_never_collide() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let mut want = Vec::new();
    for i in 0..200 {
        // Alternate the store that queues, too.
        let store = if i % 2 == 0 { &one } else { &two };
        want.push(store.create_execution(&new_exec("job")).await.expect("create").id);
    }

    let mut tasks = Vec::new();
    for (s, store) in [one.clone(), two.clone()].into_iter().enumerate() {
        for t in 0..4 {
            let store = store.clone();
            let worker = format!("store{s}-task{t}");
            tasks.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(e) = store.claim(&worker, LEASE, None).await.expect("claim") {
                    assert_eq!(e.worker.as_deref(), Some(worker.as_str()));
                    claimed.push(e.id);
                    tokio::task::yield_now().await;
                }
                (worker, claimed)
            }));
        }
    }
    let mut by_id: HashMap<ExecutionId, String> = HashMap::new();
    let mut got = Vec::new();
    for task in tasks {
        let (worker, claimed) = task.await.expect("task");
        for id in claimed {
            assert!(by_id.insert(id, worker.clone()).is_none(), "#{id} claimed twice");
            got.push(id);
        }
    }
    got.sort_unstable();
    assert_eq!(got, want, "every execution claimed exactly once");
    for (id, worker) in by_id {
        let e = one.execution(id).await.expect("get").expect("exists");
        assert_eq!(e.state, ExecState::Running);
        assert_eq!(e.worker.as_deref(), Some(worker.as_str()));
    }
}
