//! Approval requests and their votes.

use crate::{ana, at_ms, file_store, now_ms, ops};
use opsbot_core::{Params, Place, UserId};
use opsbot_store::{ApprovalState, NewApproval, SqliteStore, Store, Vote};
use serde_json::json;

/// Params with unicode, spaces and JSON-special characters.
fn tricky_params() -> Params {
    let mut p = Params::new();
    p.insert("env".into(), "prod".into());
    p.insert("note".into(), "ünïcødé ✓ 生产 🚀 \"quoted\" \\ back\nslash\ttab".into());
    p.insert("ключ".into(), "".into());
    p
}

/// A pending request for `job` by ana in ops.
fn new_approval(job: &str) -> NewApproval {
    NewApproval {
        job: job.into(),
        params: tricky_params(),
        requested_by: ana(),
        requester_person: "ana".into(),
        requester_name: "Ana Ölund".into(),
        place: Place {
            thread: Some("t-1".into()),
            ..ops()
        },
        requirements: json!({
            "any_of": [{"group": "sre", "count": 2}, {"person": "bö"}],
            "ratio": 2.5,
            "big": 18_446_744_073_709_551_615u64,
            "neg": -7,
            "none": null,
            "self_approve": false,
            "text": "生产 🚀 \"q\" \\ \u{1}",
        }),
        reason: "deploy to prod needs two SREs".into(),
        expires_at: at_ms(1_800_000_000_123),
    }
}

fn vote(approval_id: i64, voter: UserId, person: &str, approve: bool) -> Vote {
    Vote {
        approval_id,
        voter,
        voter_person: person.into(),
        voter_name: format!("name of {person}"),
        approve,
        reason: approve.then(|| "lgtm ✓".to_string()),
        at: now_ms(),
    }
}

async fn approvals_round_trip(store: &SqliteStore) {
    assert!(store.approvals(false, 10).await.expect("list").is_empty());
    assert_eq!(store.approval(1).await.expect("get"), None);

    let new = new_approval("deploy");
    let before = now_ms();
    let a = store.create_approval(&new).await.expect("create");
    assert!(a.created_at >= before && a.created_at <= now_ms());
    assert_eq!(a.state, ApprovalState::Pending);
    assert_eq!((a.decided_at, a.decision_note.as_deref(), a.execution_id), (None, None, None));
    assert_eq!(
        (&a.job, &a.params, &a.requested_by, &a.requester_person, &a.requester_name),
        (&new.job, &new.params, &new.requested_by, &new.requester_person, &new.requester_name)
    );
    assert_eq!(
        (&a.place, &a.requirements, &a.reason, a.expires_at),
        (&new.place, &new.requirements, &new.reason, new.expires_at)
    );
    assert_eq!(store.approval(a.id).await.expect("get"), Some(a.clone()));

    // Params and requirements come back byte for byte, and are stored as their JSON text.
    let got = store.approval(a.id).await.expect("get").expect("exists");
    assert_eq!(
        serde_json::to_string(&got.params).unwrap(),
        serde_json::to_string(&new.params).unwrap()
    );
    assert_eq!(got.requirements.to_string(), new.requirements.to_string());
    let (params, requirements): (String, String) = store
        .conn()
        .expect("a connection")
        .query_row("SELECT params, requirements FROM approvals WHERE id = ?1", [a.id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("raw row");
    assert_eq!(params, serde_json::to_string(&new.params).unwrap());
    assert_eq!(requirements, new.requirements.to_string());
    assert!(params.contains("生产 🚀"), "unicode is stored as is: {params}");

    let b = store.create_approval(&new_approval("restart")).await.expect("create");
    let c = store.create_approval(&new_approval("backup")).await.expect("create");
    assert!(a.id < b.id && b.id < c.id);
    assert!(store.decide_approval(b.id, ApprovalState::Denied, None).await.expect("decide"));

    let ids = |v: Vec<opsbot_store::Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.approvals(false, 10).await.expect("list")),
        vec![c.id, b.id, a.id],
        "newest first"
    );
    assert_eq!(
        ids(store.approvals(true, 10).await.expect("list")),
        vec![c.id, a.id],
        "pending only"
    );
    assert_eq!(ids(store.approvals(false, 2).await.expect("list")), vec![c.id, b.id], "limited");
    assert_eq!(ids(store.approvals(true, 1).await.expect("list")), vec![c.id]);
    assert_eq!(ids(store.approvals(false, 0).await.expect("list")).len(), 3, "0 means the default");

    // Expired by time but never decided: still pending, the store does not look at the clock.
    let old = store
        .create_approval(&NewApproval {
            expires_at: at_ms(1_000),
            ..new_approval("old")
        })
        .await
        .expect("create");
    assert_eq!(store.approvals(true, 10).await.expect("list")[0].id, old.id);
}
on_both!(approvals_round_trip);

async fn approvals_are_decided_once(store: &SqliteStore) {
    let a = store.create_approval(&new_approval("deploy")).await.expect("create");
    assert!(
        !store
            .decide_approval(a.id, ApprovalState::Pending, Some("x"))
            .await
            .expect("decide"),
        "pending is no decision"
    );
    assert!(
        !store
            .decide_approval(a.id + 100, ApprovalState::Approved, None)
            .await
            .expect("decide"),
        "no such request"
    );

    let before = now_ms();
    assert!(
        store
            .decide_approval(a.id, ApprovalState::Approved, Some("2 of 2 ✓"))
            .await
            .expect("decide")
    );
    assert!(
        !store
            .decide_approval(a.id, ApprovalState::Withdrawn, Some("too late"))
            .await
            .expect("decide"),
        "a second decision is refused"
    );
    let got = store.approval(a.id).await.expect("get").expect("exists");
    assert_eq!(got.state, ApprovalState::Approved);
    assert_eq!(got.decision_note.as_deref(), Some("2 of 2 ✓"));
    let decided = got.decided_at.expect("decided_at");
    assert!(decided >= before && decided <= now_ms());

    for state in [ApprovalState::Denied, ApprovalState::Expired, ApprovalState::Withdrawn] {
        let r = store.create_approval(&new_approval("deploy")).await.expect("create");
        assert!(store.decide_approval(r.id, state, None).await.expect("decide"));
        let got = store.approval(r.id).await.expect("get").expect("exists");
        assert_eq!((got.state, got.decision_note), (state, None));
    }
    assert!(store.approvals(true, 10).await.expect("list").is_empty());
}
on_both!(approvals_are_decided_once);

/// Two stores on one file decide the same requests at the same moment: exactly one wins each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_decisions_have_one_winner() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    for _ in 0..20 {
        let id = one.create_approval(&new_approval("deploy")).await.expect("create").id;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks = [(one.clone(), ApprovalState::Approved), (two.clone(), ApprovalState::Denied)].map(|(store, state)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.decide_approval(id, state, None).await.expect("decide").then_some(state)
            })
        });
        let mut winners = Vec::new();
        for t in tasks {
            winners.extend(t.await.expect("task"));
        }
        assert_eq!(winners.len(), 1, "exactly one decision of #{id} wins: {winners:?}");
        assert_eq!(one.approval(id).await.expect("get").expect("exists").state, winners[0]);
    }
}

async fn one_vote_per_person(store: &SqliteStore) {
    let a = store.create_approval(&new_approval("deploy")).await.expect("create");
    let other = store.create_approval(&new_approval("deploy")).await.expect("create");
    let bo_chat = UserId::new("slack", "U02BO");
    let bo_matrix = UserId::new("matrix", "@bo:example.org");
    let guest = UserId::new("slack", "U03GUEST");

    let first = vote(a.id, bo_chat.clone(), "bo", true);
    assert!(store.add_vote(&first).await.expect("vote"));
    assert!(
        !store.add_vote(&vote(a.id, bo_chat.clone(), "bo", false)).await.expect("vote"),
        "same account"
    );
    assert!(
        !store.add_vote(&vote(a.id, bo_matrix.clone(), "bo", true)).await.expect("vote"),
        "same person, other account"
    );
    assert!(
        !store.add_vote(&vote(a.id, bo_chat.clone(), "", true)).await.expect("vote"),
        "same account, even without its person"
    );
    // A different person, and an account of nobody, are accepted; the latter only once.
    let cy = vote(a.id, UserId::new("slack", "U04CY"), "cy", false);
    assert!(store.add_vote(&cy).await.expect("vote"));
    let g = vote(a.id, guest.clone(), "", true);
    assert!(store.add_vote(&g).await.expect("vote"));
    assert!(!store.add_vote(&vote(a.id, guest.clone(), "", false)).await.expect("vote"));
    // Voting on another request is a separate matter.
    assert!(store.add_vote(&vote(other.id, bo_matrix, "bo", true)).await.expect("vote"));
    // The store does not look at the request's state, but it must exist.
    assert!(
        store
            .decide_approval(other.id, ApprovalState::Approved, None)
            .await
            .expect("decide")
    );
    assert!(
        store
            .add_vote(&vote(other.id, guest, "", false))
            .await
            .expect("vote on a decided request")
    );
    assert!(
        store.add_vote(&vote(other.id + 100, ana(), "ana", true)).await.is_err(),
        "no such request"
    );

    assert_eq!(store.votes(a.id).await.expect("votes"), vec![first, cy, g], "in the order cast");
    assert_eq!(store.votes(other.id).await.expect("votes").len(), 2);
    assert!(store.votes(other.id + 100).await.expect("votes").is_empty());
}
on_both!(one_vote_per_person);

/// The same person votes from two accounts through two stores at once: one vote counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_votes_by_one_person_count_once() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    for _ in 0..20 {
        let id = one.create_approval(&new_approval("deploy")).await.expect("create").id;
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let tasks = [(one.clone(), "slack", "U02BO"), (two.clone(), "matrix", "@bo:example.org")].map(|(store, platform, account)| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .add_vote(&vote(id, UserId::new(platform, account), "bo", true))
                    .await
                    .expect("vote")
            })
        });
        let mut accepted = 0;
        for t in tasks {
            accepted += usize::from(t.await.expect("task"));
        }
        assert_eq!(accepted, 1);
        assert_eq!(one.votes(id).await.expect("votes").len(), 1);
    }
}

async fn approval_execution_is_recorded(store: &SqliteStore) {
    let a = store.create_approval(&new_approval("deploy")).await.expect("create");
    let e = store.create_execution(&crate::new_exec("deploy")).await.expect("create").id;
    assert!(store.decide_approval(a.id, ApprovalState::Approved, None).await.expect("decide"));
    store.set_approval_execution(a.id, e).await.expect("set");
    let got = store.approval(a.id).await.expect("get").expect("exists");
    assert_eq!((got.state, got.execution_id), (ApprovalState::Approved, Some(e)));
    store
        .set_approval_execution(a.id + 100, e)
        .await
        .expect("no such request is no error");
}
on_both!(approval_execution_is_recorded);

#[test]
fn approval_state_names() {
    for state in ApprovalState::ALL {
        assert_eq!(ApprovalState::parse(state.as_str()), Some(state));
        assert_eq!(state.to_string().parse::<ApprovalState>(), Ok(state));
    }
    let names: Vec<_> = ApprovalState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["pending", "approved", "denied", "expired", "withdrawn"]);
    assert_eq!(ApprovalState::parse("Approved"), None);
    assert_eq!(
        "nope".parse::<ApprovalState>().unwrap_err().to_string(),
        "unknown approval state `nope`"
    );
}
