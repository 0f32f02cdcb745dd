//! What the web console keeps: sessions, generated passwords, chat messages and job cards,
//! audit queries with filters, and execution listings by time.

use crate::{ana, at_ms, new_exec, now_ms, ops};
use chrono::{Duration, Utc};
use opsbot_core::UserId;
use opsbot_store::{AuditFilter, AuditRecord, ExecutionFilter, NewChatMessage, SqliteStore, Store, WebSession};

async fn sessions_expire_and_end(store: &SqliteStore) {
    let now = Utc::now();
    let s = |id: &str, user: &str, expires: chrono::DateTime<Utc>| WebSession {
        id_sha256: id.into(),
        user: user.into(),
        csrf: format!("csrf-{id}"),
        created_at: now,
        expires_at: expires,
    };
    store.create_session(&s("a1", "ana", now + Duration::hours(1))).await.unwrap();
    store.create_session(&s("a2", "ana", now + Duration::hours(1))).await.unwrap();
    store.create_session(&s("b1", "bo", now - Duration::seconds(1))).await.unwrap();
    let got = store.session_by_hash("a1").await.unwrap().unwrap();
    assert_eq!((got.user.as_str(), got.csrf.as_str()), ("ana", "csrf-a1"));
    assert!(store.session_by_hash("b1").await.unwrap().is_none(), "expired");
    assert!(store.session_by_hash("zz").await.unwrap().is_none());
    assert!(
        store.create_session(&s("a1", "bo", now + Duration::hours(1))).await.is_err(),
        "ids are unique"
    );
    assert_eq!(store.purge_sessions().await.unwrap(), 1);
    assert!(store.delete_session("a1").await.unwrap());
    assert!(!store.delete_session("a1").await.unwrap());
    assert_eq!(store.delete_user_sessions("ana").await.unwrap(), 1);
    assert!(store.session_by_hash("a2").await.unwrap().is_none());
}
on_both!(sessions_expire_and_end);

async fn the_first_generated_password_wins(store: &SqliteStore) {
    assert!(store.generated_password("demo").await.unwrap().is_none());
    assert_eq!(store.put_generated_password("demo", "h1").await.unwrap(), ("h1".into(), true));
    assert_eq!(store.put_generated_password("demo", "h2").await.unwrap(), ("h1".into(), false));
    assert_eq!(store.generated_password("demo").await.unwrap().as_deref(), Some("h1"));
    assert!(store.delete_generated_password("demo").await.unwrap());
    assert!(!store.delete_generated_password("demo").await.unwrap());
    assert_eq!(store.put_generated_password("demo", "h3").await.unwrap(), ("h3".into(), true));
}
on_both!(the_first_generated_password_wins);

async fn chat_history_and_cards(store: &SqliteStore) {
    let say = |channel: &str, text: &str| NewChatMessage {
        channel: channel.into(),
        author: "web:ana".into(),
        author_name: "Ana".into(),
        text: Some(text.into()),
        ..Default::default()
    };
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(store.post_chat(&say("ops", &format!("m{i}"))).await.unwrap().id);
    }
    store.post_chat(&say("dm:ana", "private")).await.unwrap();
    let card = store
        .post_chat(&NewChatMessage {
            channel: "ops".into(),
            author: "bot".into(),
            author_name: "opsbot".into(),
            reply: Some(serde_json::json!({"blocks": [], "state": "queued"})),
            card_for: Some(42),
            ..Default::default()
        })
        .await
        .unwrap();
    let h = store.chat_history("ops", None, 3).await.unwrap();
    assert_eq!(
        h.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![ids[3], ids[4], card.id],
        "the newest, oldest first"
    );
    let older = store.chat_history("ops", Some(ids[3]), 10).await.unwrap();
    assert_eq!(
        older.iter().map(|m| m.text.clone().unwrap()).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    assert_eq!(store.chat_history("dm:ana", None, 10).await.unwrap().len(), 1);
    assert!(store.chat_history("dm:bo", None, 10).await.unwrap().is_empty());

    let up = store
        .update_chat_cards(42, &serde_json::json!({"blocks": [], "state": "succeeded"}))
        .await
        .unwrap();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].id, card.id);
    assert_eq!(up[0].reply.as_ref().unwrap()["state"], "succeeded");
    assert!(up[0].updated_at >= up[0].created_at);
    assert!(store.update_chat_cards(7, &serde_json::json!({})).await.unwrap().is_empty());
    let again = store.chat_history("ops", None, 1).await.unwrap();
    assert_eq!(
        again[0].reply.as_ref().unwrap()["state"],
        "succeeded",
        "history shows the card as it is now"
    );
}
on_both!(chat_history_and_cards);

async fn audit_filters(store: &SqliteStore) {
    let bo = UserId::new("web", "bo");
    let rec = |actor: &UserId, action: &str, job: Option<&str>, decision: &str, exec: Option<i64>, at: i64| AuditRecord {
        id: 0,
        at: at_ms(at),
        actor: actor.clone(),
        actor_name: actor.id.clone(),
        place: ops(),
        action: action.into(),
        job: job.map(Into::into),
        params: None,
        decision: decision.into(),
        reason: None,
        execution_id: exec,
    };
    let mut ids = Vec::new();
    for r in [
        rec(&ana(), "run", Some("deploy"), "accepted", Some(1), 1_000),
        rec(&bo, "run", Some("deploy"), "refused", None, 2_000),
        rec(&ana(), "cancel", Some("deploy"), "cancelled", Some(1), 3_000),
        rec(&bo, "run", Some("restart"), "accepted", Some(2), 4_000),
    ] {
        ids.push(store.audit(&r).await.unwrap());
    }
    let q = |f: AuditFilter| async move { store.audit_query(&f).await.unwrap().iter().map(|r| r.id).collect::<Vec<_>>() };
    assert_eq!(
        q(AuditFilter {
            actor: Some(ana()),
            ..Default::default()
        })
        .await,
        vec![ids[2], ids[0]]
    );
    assert_eq!(
        q(AuditFilter {
            action: Some("run".into()),
            job: Some("deploy".into()),
            ..Default::default()
        })
        .await,
        vec![ids[1], ids[0]]
    );
    assert_eq!(
        q(AuditFilter {
            decision: Some("accepted".into()),
            actor: Some(bo.clone()),
            ..Default::default()
        })
        .await,
        vec![ids[3]]
    );
    assert_eq!(
        q(AuditFilter {
            execution_id: Some(1),
            ..Default::default()
        })
        .await,
        vec![ids[2], ids[0]]
    );
    assert_eq!(
        q(AuditFilter {
            since: Some(at_ms(2_000)),
            until: Some(at_ms(4_000)),
            ..Default::default()
        })
        .await,
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        q(AuditFilter {
            before_id: Some(ids[2]),
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![ids[1]]
    );
}
on_both!(audit_filters);

async fn executions_by_time(store: &SqliteStore) {
    let before = now_ms();
    let a = store.create_execution(&new_exec("deploy")).await.unwrap();
    let later = Utc::now() + Duration::hours(1);
    let f = |since, until| ExecutionFilter {
        since,
        until,
        ..Default::default()
    };
    let ids = |v: Vec<opsbot_core::Execution>| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.executions(&f(Some(before - Duration::seconds(1)), None)).await.unwrap()),
        vec![a.id]
    );
    assert!(store.executions(&f(Some(later), None)).await.unwrap().is_empty());
    assert!(
        store
            .executions(&f(None, Some(before - Duration::seconds(1))))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ids(store.executions(&f(None, Some(later))).await.unwrap()), vec![a.id]);
}
on_both!(executions_by_time);
