//! Locks: one per scope.

use crate::{ana, file_store, now_ms};
use opsbot_core::{Params, UserId};
use opsbot_store::{Lock, NewLock, SqliteStore, Store};

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn new_lock(job: Option<&str>, pairs: &[(&str, &str)], by: UserId) -> NewLock {
    NewLock {
        job: job.map(str::to_string),
        params: params(pairs),
        reason: "freeze ❄ before the release".into(),
        by,
        by_name: "Ana".into(),
    }
}

async fn locks_put_conflict_delete(store: &SqliteStore) {
    assert!(store.locks().await.expect("list").is_empty());
    let new = new_lock(Some("deploy"), &[("region", "eu-west 1"), ("env", "prod")], ana());
    let before = now_ms();
    let taken = store.put_lock(&new).await.expect("put").expect("taken");
    assert_eq!(taken.scope, r#"deploy env=prod region="eu-west 1""#);
    assert_eq!(
        (&taken.job, &taken.params, &taken.reason, &taken.by, &taken.by_name),
        (&new.job, &new.params, &new.reason, &new.by, &new.by_name)
    );
    assert!(taken.at >= before && taken.at <= now_ms());

    // The same scope, whoever asks and in whatever order the params were given: the lock in the way.
    let mut again = new_lock(
        Some("deploy"),
        &[("env", "prod"), ("region", "eu-west 1")],
        UserId::new("slack", "U02BO"),
    );
    again.reason = "mine".into();
    assert_eq!(store.put_lock(&again).await.expect("put"), Err(taken.clone()));

    // Other scopes are other locks.
    let all_jobs = store
        .put_lock(&new_lock(None, &[("env", "prod")], ana()))
        .await
        .expect("put")
        .expect("taken");
    assert_eq!(all_jobs.scope, "* env=prod");
    let whole_job = store
        .put_lock(&new_lock(Some("deploy"), &[], ana()))
        .await
        .expect("put")
        .expect("taken");
    assert_eq!(whole_job.scope, "deploy");
    assert!(whole_job.params.is_empty() && all_jobs.job.is_none());
    assert_eq!(
        store.locks().await.expect("list"),
        vec![taken.clone(), all_jobs.clone(), whole_job.clone()],
        "oldest first"
    );

    // Deleting returns it once; then the scope is free again.
    assert_eq!(store.delete_lock(&taken.scope).await.expect("delete"), Some(taken.clone()));
    assert_eq!(store.delete_lock(&taken.scope).await.expect("delete"), None);
    assert_eq!(store.delete_lock("no such scope").await.expect("delete"), None);
    assert_eq!(store.locks().await.expect("list"), vec![all_jobs, whole_job]);
    let retaken = store.put_lock(&again).await.expect("put").expect("free again");
    assert_eq!((retaken.scope.as_str(), retaken.reason.as_str()), (taken.scope.as_str(), "mine"));
    assert!(retaken.id > taken.id);
    let raw: String = store
        .conn()
        .expect("a connection")
        .query_row("SELECT params FROM locks WHERE id = ?1", [retaken.id], |r| r.get(0))
        .expect("raw");
    assert_eq!(raw, serde_json::to_string(&again.params).unwrap());
}
on_both!(locks_put_conflict_delete);

/// Many tasks on two stores take the same lock at once: exactly one gets it, the others see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_locks_have_one_holder() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { one.clone() } else { two.clone() };
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let mut lock = new_lock(Some("deploy"), &[("env", "prod")], UserId::new("slack", format!("U{i}")));
                lock.reason = format!("task {i}");
                store.put_lock(&lock).await.expect("put")
            })
        })
        .collect();
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(lock) => held.push(lock),
            Err(existing) => seen.push(existing),
        }
    }
    assert_eq!(held.len(), 1, "one holder: {held:?}");
    assert!(seen.iter().all(|l| *l == held[0]), "the others see the holder's lock");
    assert_eq!(one.locks().await.expect("list"), held);
}

#[test]
fn lock_scope_is_canonical() {
    let forward = params(&[("a", "1"), ("b", "2"), ("env", "prod")]);
    let backward = params(&[("env", "prod"), ("b", "2"), ("a", "1")]);
    assert_eq!(Lock::scope_of(Some("deploy"), &forward), "deploy a=1 b=2 env=prod");
    assert_eq!(Lock::scope_of(Some("deploy"), &backward), "deploy a=1 b=2 env=prod");
    assert_eq!(Lock::scope_of(None, &params(&[("env", "prod")])), "* env=prod");
    assert_eq!(Lock::scope_of(Some("deploy"), &Params::new()), "deploy");
    assert_eq!(Lock::scope_of(None, &Params::new()), "*");
    assert_eq!(Lock::scope_of(Some("déploy"), &params(&[("ключ", "生产")])), "déploy ключ=生产");

    // Texts that could be misread are quoted, so different scopes never share a text.
    let distinct = [
        Lock::scope_of(Some("deploy"), &params(&[("a", "1 b=2")])),
        Lock::scope_of(Some("deploy"), &params(&[("a", "1"), ("b", "2")])),
        Lock::scope_of(Some("deploy"), &params(&[("a", "1=2")])),
        Lock::scope_of(Some("deploy"), &params(&[("a=1", "2")])),
        Lock::scope_of(Some("deploy"), &params(&[("a", "")])),
        Lock::scope_of(Some("deploy"), &params(&[("a", "\"\"")])),
        Lock::scope_of(Some("deploy a=1"), &Params::new()),
        Lock::scope_of(Some("*"), &Params::new()),
        Lock::scope_of(None, &Params::new()),
        Lock::scope_of(Some(""), &Params::new()),
    ];
    assert_eq!(distinct[0], r#"deploy a="1 b=2""#);
    assert_eq!(distinct[4], r#"deploy a="""#);
    assert_eq!(distinct[7], r#""*""#);
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            assert_ne!(a, b);
        }
    }
}
