//! API tokens and execution counts.

use crate::new_exec;
use opsbot_core::ExecState;
use opsbot_store::{SqliteStore, Store};

async fn tokens_round_trip(store: &SqliteStore) {
    let a = store.create_token("ana", "ci", "aa11").await.unwrap();
    let b = store.create_token("bo", "laptop", "bb22").await.unwrap();
    assert_eq!((a.user.as_str(), a.label.as_str()), ("ana", "ci"));
    assert!(a.last_used_at.is_none());
    let found = store.token_by_hash("aa11").await.unwrap().unwrap();
    assert_eq!(found.id, a.id);
    assert!(found.last_used_at.is_some());
    assert!(store.token_by_hash("nope").await.unwrap().is_none());
    assert!(store.create_token("x", "dup", "aa11").await.is_err(), "hashes are unique");
    assert!(store.revoke_token(a.id).await.unwrap());
    assert!(!store.revoke_token(a.id).await.unwrap(), "already revoked");
    assert!(store.token_by_hash("aa11").await.unwrap().is_none(), "revoked tokens are refused");
    let all = store.tokens().await.unwrap();
    assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    assert!(all[0].revoked_at.is_some() && all[1].revoked_at.is_none());
}
on_both!(tokens_round_trip);

async fn counts_by_state(store: &SqliteStore) {
    assert!(store.count_by_state().await.unwrap().is_empty());
    for _ in 0..3 {
        store.create_execution(&new_exec("deploy")).await.unwrap();
    }
    store.claim("w:1", std::time::Duration::from_secs(30), None).await.unwrap();
    let mut c = store.count_by_state().await.unwrap();
    c.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(c, vec![(ExecState::Queued, 2), (ExecState::Running, 1)]);
}
on_both!(counts_by_state);
