//! Scheduled runs: create/list/order, cancel once, claiming due runs exactly once across
//! stores, finishing, stale firing runs, cron compare-and-set, and surviving a restart.

use crate::{ana, at_ms, file_store, now_ms, ops};
use chrono::{Duration as ChronoDuration, Utc};
use opsbot_core::{Params, Place, UserId};
use opsbot_store::{NewSchedule, STALE_SCHEDULE_DETAIL, Schedule, ScheduleState, SqliteStore, Store};
use std::collections::HashMap;

/// A schedule of `job` by ana in ops at `run_ms`.
fn new_schedule(job: &str, run_ms: i64) -> NewSchedule {
    let mut params = Params::new();
    params.insert("env".into(), "dev".into());
    params.insert("service".into(), "api".into());
    NewSchedule {
        job: job.into(),
        params,
        requested_by: ana(),
        requester_name: "Ana".into(),
        place: ops(),
        run_at: at_ms(run_ms),
        lang: "en".into(),
        text: format!("{job} api to dev at 23:30"),
    }
}

fn bob() -> UserId {
    UserId::new("terminal", "bob")
}

fn ids(list: &[Schedule]) -> Vec<i64> {
    list.iter().map(|s| s.id).collect()
}

/// Asserts that a stored schedule carries every field of what was asked for.
fn assert_same_request(got: &Schedule, new: &NewSchedule) {
    assert_eq!(got.job, new.job);
    assert_eq!(got.params, new.params);
    assert_eq!(got.requested_by, new.requested_by);
    assert_eq!(got.requester_name, new.requester_name);
    assert_eq!(got.place, new.place);
    assert_eq!(got.run_at, new.run_at);
    assert_eq!(got.lang, new.lang);
    assert_eq!(got.text, new.text);
}

async fn schedules_create_get_list(store: &SqliteStore) {
    assert_eq!(store.schedule(1).await.expect("get"), None);
    assert!(store.schedules(true, 0).await.expect("list").is_empty());

    let before = now_ms();
    let mut zh = new_schedule("deploy", 1_900_000_000_000);
    zh.lang = "zh".into();
    zh.text = "晚上11点半把api部署到dev".into();
    zh.place = Place {
        thread: Some("t-9".into()),
        ..ops()
    };
    let late = store.create_schedule(&zh).await.expect("create");
    assert_same_request(&late, &zh);
    assert_eq!(late.state, ScheduleState::Pending);
    assert_eq!(late.execution_id, None);
    assert_eq!(late.detail, None);
    assert_eq!(late.cancelled_by, None);
    assert!(late.created_at >= before && late.created_at <= now_ms());
    assert_eq!(store.schedule(late.id).await.expect("get"), Some(late.clone()));

    let early = store
        .create_schedule(&new_schedule("backup", 1_800_000_000_000))
        .await
        .expect("create");
    // Same time as `late`: ties go by id.
    let tie = store
        .create_schedule(&new_schedule("restart", 1_900_000_000_000))
        .await
        .expect("create");
    assert!(early.id > late.id && tie.id > early.id);

    let pending = store.schedules(true, 0).await.expect("list");
    assert_eq!(ids(&pending), vec![early.id, late.id, tie.id], "soonest first, then by id");
    assert_eq!(pending[1], late);
    assert_eq!(ids(&store.schedules(true, 2).await.expect("list")), vec![early.id, late.id]);

    // Cancelled ones leave the pending listing but stay in the full one, newest id first.
    store.cancel_schedule(early.id, &bob()).await.expect("cancel").expect("was pending");
    assert_eq!(ids(&store.schedules(true, 10).await.expect("list")), vec![late.id, tie.id]);
    let all = store.schedules(false, 10).await.expect("list");
    assert_eq!(ids(&all), vec![tie.id, early.id, late.id]);
    assert_eq!(all[1].state, ScheduleState::Cancelled);
    assert_eq!(ids(&store.schedules(false, 1).await.expect("list")), vec![tie.id]);
}
on_both!(schedules_create_get_list);

async fn long_text_is_stored_as_given(store: &SqliteStore) {
    // Shortening is the engine's job; the store keeps every character.
    let mut new = new_schedule("deploy", 1_800_000_000_000);
    new.text = "部署 api ".repeat(400) + "\n\"quoted\" 'and' \\ \u{1F680}";
    assert!(new.text.chars().count() > 2000);
    let got = store.create_schedule(&new).await.expect("create");
    assert_eq!(got.text, new.text);
    assert_eq!(store.schedule(got.id).await.expect("get").expect("exists").text, new.text);
}
on_both!(long_text_is_stored_as_given);

async fn cancel_only_pending(store: &SqliteStore) {
    assert_eq!(store.cancel_schedule(99, &ana()).await.expect("cancel"), None, "no such schedule");

    let s = store
        .create_schedule(&new_schedule("deploy", 1_800_000_000_000))
        .await
        .expect("create");
    let got = store.cancel_schedule(s.id, &bob()).await.expect("cancel").expect("was pending");
    assert_eq!(got.state, ScheduleState::Cancelled);
    assert_eq!(got.cancelled_by, Some(bob()));
    assert_eq!(got.run_at, s.run_at);
    assert_eq!(store.schedule(s.id).await.expect("get"), Some(got.clone()));
    assert_eq!(
        store.cancel_schedule(s.id, &ana()).await.expect("cancel"),
        None,
        "a second cancel changes nothing"
    );
    assert_eq!(store.schedule(s.id).await.expect("get").expect("exists").cancelled_by, Some(bob()));
    assert!(
        store
            .claim_due_schedules(at_ms(1_900_000_000_000), 10)
            .await
            .expect("claim")
            .is_empty(),
        "a cancelled schedule never fires"
    );

    // A firing one cannot be cancelled any more.
    let due = store.create_schedule(&new_schedule("deploy", 1_000)).await.expect("create");
    assert_eq!(ids(&store.claim_due_schedules(now_ms(), 10).await.expect("claim")), vec![due.id]);
    assert_eq!(store.cancel_schedule(due.id, &ana()).await.expect("cancel"), None);
    assert_eq!(
        store.schedule(due.id).await.expect("get").expect("exists").state,
        ScheduleState::Firing
    );
}
on_both!(cancel_only_pending);

/// Eight people (on two stores sharing a file) cancel the same schedule at once: exactly one
/// gets it, and it records that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cancels_one_wins() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let s = one
        .create_schedule(&new_schedule("deploy", 1_800_000_000_000))
        .await
        .expect("create");

    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        let who = UserId::new("terminal", format!("user{i}"));
        tasks.push(tokio::spawn(async move {
            let got = store.cancel_schedule(s.id, &who).await.expect("cancel");
            (who, got)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (who, got) = task.await.expect("task");
        if let Some(got) = got {
            assert_eq!(got.cancelled_by.as_ref(), Some(&who));
            winners.push(who);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one cancel wins: {winners:?}");
    let stored = two.schedule(s.id).await.expect("get").expect("exists");
    assert_eq!(stored.state, ScheduleState::Cancelled);
    assert_eq!(stored.cancelled_by.as_ref(), winners.first());
}

async fn claim_due_only(store: &SqliteStore) {
    let now = 1_800_000_000_000;
    let a = store.create_schedule(&new_schedule("a", now - 5_000)).await.expect("create");
    let b = store.create_schedule(&new_schedule("b", now - 60_000)).await.expect("create");
    let exact = store.create_schedule(&new_schedule("c", now)).await.expect("create");
    let later = store.create_schedule(&new_schedule("d", now + 1)).await.expect("create");

    assert!(
        store.claim_due_schedules(at_ms(now - 60_001), 10).await.expect("claim").is_empty(),
        "nothing due yet"
    );
    let first = store.claim_due_schedules(at_ms(now), 2).await.expect("claim");
    assert_eq!(ids(&first), vec![b.id, a.id], "soonest first, at most `limit`");
    for s in &first {
        assert_eq!(s.state, ScheduleState::Firing);
    }
    assert_same_request(&first[0], &new_schedule("b", now - 60_000));

    let second = store.claim_due_schedules(at_ms(now), 10).await.expect("claim");
    assert_eq!(ids(&second), vec![exact.id], "run_at == now is due; later ones are not");
    assert!(store.claim_due_schedules(at_ms(now), 10).await.expect("claim").is_empty());

    assert_eq!(
        store.schedule(later.id).await.expect("get").expect("exists").state,
        ScheduleState::Pending
    );
    assert_eq!(ids(&store.schedules(true, 10).await.expect("list")), vec![later.id]);
    for id in [a.id, b.id, exact.id] {
        assert_eq!(store.schedule(id).await.expect("get").expect("exists").state, ScheduleState::Firing);
    }
}
on_both!(claim_due_only);

/// Two stores on one file, four tasks each, claiming a few at a time until nothing is due:
/// every due schedule is claimed exactly once, and none that is not due.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn concurrent_claims_across_stores_never_collide() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let now = Utc::now();
    let mut due = Vec::new();
    let mut not_due = Vec::new();
    for i in 0..150_i64 {
        let store = if i % 2 == 0 { &one } else { &two };
        if i % 5 == 4 {
            let s = store
                .create_schedule(&new_schedule("later", (now + ChronoDuration::hours(1)).timestamp_millis() + i))
                .await
                .expect("create");
            not_due.push(s.id);
        } else {
            let s = store
                .create_schedule(&new_schedule("due", now.timestamp_millis() - 10_000 + i))
                .await
                .expect("create");
            due.push(s.id);
        }
    }

    let mut tasks = Vec::new();
    for (s, store) in [one.clone(), two.clone()].into_iter().enumerate() {
        for t in 0..4 {
            let store = store.clone();
            let who = format!("store{s}-task{t}");
            tasks.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                loop {
                    let got = store.claim_due_schedules(now, 3).await.expect("claim");
                    if got.is_empty() {
                        break;
                    }
                    assert!(got.len() <= 3);
                    claimed.extend(got.iter().map(|s| s.id));
                    tokio::task::yield_now().await;
                }
                (who, claimed)
            }));
        }
    }
    let mut by_id: HashMap<i64, String> = HashMap::new();
    let mut got = Vec::new();
    for task in tasks {
        let (who, claimed) = task.await.expect("task");
        for id in claimed {
            assert!(by_id.insert(id, who.clone()).is_none(), "schedule {id} claimed twice");
            got.push(id);
        }
    }
    got.sort_unstable();
    assert_eq!(got, due, "every due schedule claimed exactly once");
    let pending = one.schedules(true, 1000).await.expect("list");
    assert_eq!(ids(&pending), not_due, "the ones not due stay pending");
    for id in due {
        assert_eq!(two.schedule(id).await.expect("get").expect("exists").state, ScheduleState::Firing);
    }
}

async fn finish_records_the_outcome(store: &SqliteStore) {
    let ok = store.create_schedule(&new_schedule("deploy", 1_000)).await.expect("create");
    let bad = store.create_schedule(&new_schedule("deploy", 2_000)).await.expect("create");
    let pending = store
        .create_schedule(&new_schedule("deploy", 1_900_000_000_000))
        .await
        .expect("create");
    assert_eq!(store.claim_due_schedules(now_ms(), 10).await.expect("claim").len(), 2);

    // Only Fired and Failed are outcomes.
    for wrong in [ScheduleState::Pending, ScheduleState::Firing, ScheduleState::Cancelled] {
        assert!(!store.finish_schedule(ok.id, wrong, Some(7), None).await.expect("finish"));
    }
    assert_eq!(
        store.schedule(ok.id).await.expect("get").expect("exists").state,
        ScheduleState::Firing
    );

    assert!(
        store
            .finish_schedule(ok.id, ScheduleState::Fired, Some(42), None)
            .await
            .expect("finish")
    );
    let got = store.schedule(ok.id).await.expect("get").expect("exists");
    assert_eq!(got.state, ScheduleState::Fired);
    assert_eq!(got.execution_id, Some(42));
    assert_eq!(got.detail, None);

    assert!(
        store
            .finish_schedule(bad.id, ScheduleState::Failed, None, Some("job `deploy` is locked"))
            .await
            .expect("finish")
    );
    let got = store.schedule(bad.id).await.expect("get").expect("exists");
    assert_eq!(got.state, ScheduleState::Failed);
    assert_eq!(got.execution_id, None);
    assert_eq!(got.detail.as_deref(), Some("job `deploy` is locked"));

    // Finished ones stay finished; pending ones and missing ones cannot be finished.
    assert!(
        !store
            .finish_schedule(ok.id, ScheduleState::Failed, None, Some("again"))
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_schedule(bad.id, ScheduleState::Fired, Some(43), None)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_schedule(pending.id, ScheduleState::Fired, Some(44), None)
            .await
            .expect("finish")
    );
    assert!(
        !store
            .finish_schedule(999, ScheduleState::Fired, Some(45), None)
            .await
            .expect("finish")
    );
    assert_eq!(store.schedule(ok.id).await.expect("get").expect("exists").execution_id, Some(42));
    assert_eq!(
        store.schedule(bad.id).await.expect("get").expect("exists").detail.as_deref(),
        Some("job `deploy` is locked")
    );
    assert_eq!(
        store.schedule(pending.id).await.expect("get").expect("exists").state,
        ScheduleState::Pending
    );
}
on_both!(finish_records_the_outcome);

async fn stale_firing_becomes_failed(store: &SqliteStore) {
    let claim_at = 1_800_000_000_000;
    let old = store
        .create_schedule(&new_schedule("deploy", claim_at - 3_600_000))
        .await
        .expect("create");
    let recent = store
        .create_schedule(&new_schedule("deploy", claim_at - 1_000))
        .await
        .expect("create");
    let pending = store
        .create_schedule(&new_schedule("deploy", claim_at + 60_000))
        .await
        .expect("create");
    let fired = store
        .create_schedule(&new_schedule("deploy", claim_at - 2_000))
        .await
        .expect("create");
    assert_eq!(store.claim_due_schedules(at_ms(claim_at), 10).await.expect("claim").len(), 3);
    assert!(
        store
            .finish_schedule(fired.id, ScheduleState::Fired, Some(5), None)
            .await
            .expect("finish")
    );

    // Claimed at `claim_at`: not stale for a cut-off at or before it, even though `old` was
    // due an hour earlier (opsbot was down; it was only just claimed).
    assert!(store.fail_stale_schedules(at_ms(claim_at)).await.expect("stale").is_empty());
    assert!(
        store
            .fail_stale_schedules(at_ms(claim_at - 1_800_000))
            .await
            .expect("stale")
            .is_empty()
    );

    let failed = store.fail_stale_schedules(at_ms(claim_at + 1)).await.expect("stale");
    assert_eq!(ids(&failed), vec![old.id, recent.id]);
    for s in &failed {
        assert_eq!(s.state, ScheduleState::Failed);
        assert_eq!(s.detail.as_deref(), Some(STALE_SCHEDULE_DETAIL));
        assert_eq!(s.execution_id, None);
    }
    assert_eq!(store.schedule(old.id).await.expect("get"), failed.first().cloned());
    assert!(
        store.fail_stale_schedules(at_ms(claim_at + 1)).await.expect("stale").is_empty(),
        "only once"
    );
    assert_eq!(
        store.schedule(pending.id).await.expect("get").expect("exists").state,
        ScheduleState::Pending
    );
    assert_eq!(
        store.schedule(fired.id).await.expect("get").expect("exists").state,
        ScheduleState::Fired
    );

    // A process that was only slow still records the run it started.
    assert!(
        store
            .finish_schedule(recent.id, ScheduleState::Fired, Some(77), None)
            .await
            .expect("finish")
    );
    let got = store.schedule(recent.id).await.expect("get").expect("exists");
    assert_eq!((got.state, got.execution_id, got.detail), (ScheduleState::Fired, Some(77), None));
}
on_both!(stale_firing_becomes_failed);

async fn cron_compare_and_set(store: &SqliteStore) {
    let t1 = at_ms(1_800_000_000_000);
    let t2 = at_ms(1_800_000_060_000);
    let t3 = at_ms(1_800_000_120_000);
    assert_eq!(store.cron_next("nightly").await.expect("get"), None);

    assert!(store.advance_cron("nightly", None, t1).await.expect("insert"));
    assert!(!store.advance_cron("nightly", None, t2).await.expect("insert"), "already there");
    assert_eq!(store.cron_next("nightly").await.expect("get"), Some(t1));

    assert!(
        !store.advance_cron("nightly", Some(t2), t3).await.expect("cas"),
        "wrong expected value"
    );
    assert_eq!(store.cron_next("nightly").await.expect("get"), Some(t1));
    assert!(store.advance_cron("nightly", Some(t1), t2).await.expect("cas"));
    assert!(!store.advance_cron("nightly", Some(t1), t3).await.expect("cas"), "moved already");
    assert_eq!(store.cron_next("nightly").await.expect("get"), Some(t2));

    // Names are separate; an unknown name is never updated.
    assert!(!store.advance_cron("weekly", Some(t1), t2).await.expect("cas"));
    assert_eq!(store.cron_next("weekly").await.expect("get"), None);
    assert!(store.advance_cron("weekly", None, t3).await.expect("insert"));
    assert_eq!(store.cron_next("weekly").await.expect("get"), Some(t3));
    assert_eq!(store.cron_next("nightly").await.expect("get"), Some(t2));
}
on_both!(cron_compare_and_set);

/// Two processes (stores on one file) see the same occurrence and both try to move it on, many
/// times over: each step is taken by exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cron_advances_one_wins() {
    let (dir, one) = file_store().await;
    let two = SqliteStore::open(&dir.path().join("opsbot.db")).await.expect("second store");
    let base = 1_800_000_000_000_i64;

    // The first insert: both find no row.
    let (a, b) = tokio::join!(
        tokio::spawn({
            let s = one.clone();
            async move { s.advance_cron("hourly", None, at_ms(base)).await.expect("insert") }
        }),
        tokio::spawn({
            let s = two.clone();
            async move { s.advance_cron("hourly", None, at_ms(base + 1)).await.expect("insert") }
        }),
    );
    let (a, b) = (a.expect("task"), b.expect("task"));
    assert!(a ^ b, "exactly one insert wins: {a} {b}");
    let mut current = one.cron_next("hourly").await.expect("get").expect("set");
    assert_eq!(current, at_ms(if a { base } else { base + 1 }));

    for step in 1..=20_i64 {
        let expected = current;
        let next_one = at_ms(base + step * 3_600_000);
        let next_two = at_ms(base + step * 3_600_000 + 7);
        let (a, b) = tokio::join!(
            tokio::spawn({
                let s = one.clone();
                async move { s.advance_cron("hourly", Some(expected), next_one).await.expect("cas") }
            }),
            tokio::spawn({
                let s = two.clone();
                async move { s.advance_cron("hourly", Some(expected), next_two).await.expect("cas") }
            }),
        );
        let (a, b) = (a.expect("task"), b.expect("task"));
        assert!(a ^ b, "step {step}: exactly one caller moves it ({a} {b})");
        current = two.cron_next("hourly").await.expect("get").expect("set");
        assert_eq!(current, if a { next_one } else { next_two });
    }
}

/// The "schedule persistence across restart" requirement: a schedule made, the store closed,
/// the file reopened: still pending with the same fields, and it still fires once.
#[tokio::test]
async fn schedules_survive_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("opsbot.db");
    let due_ms = Utc::now().timestamp_millis() + 200;
    let mut new = new_schedule("deploy", due_ms);
    new.lang = "zh".into();
    new.text = "23:30 部署 api 到 dev".into();
    let (made, cancelled) = {
        let store = SqliteStore::open(&path).await.expect("open");
        let made = store.create_schedule(&new).await.expect("create");
        let other = store.create_schedule(&new_schedule("backup", due_ms)).await.expect("create");
        let cancelled = store.cancel_schedule(other.id, &bob()).await.expect("cancel").expect("pending");
        assert!(store.advance_cron("nightly", None, at_ms(due_ms)).await.expect("cron"));
        store.close().await;
        (made, cancelled)
    };

    let store = SqliteStore::open(&path).await.expect("reopen");
    let again = store.schedule(made.id).await.expect("get").expect("still there");
    assert_eq!(again, made, "same fields after reopening");
    assert_same_request(&again, &new);
    assert_eq!(again.state, ScheduleState::Pending);
    assert_eq!(ids(&store.schedules(true, 10).await.expect("list")), vec![made.id]);
    assert_eq!(store.schedule(cancelled.id).await.expect("get"), Some(cancelled));
    assert_eq!(store.cron_next("nightly").await.expect("cron"), Some(at_ms(due_ms)));

    let fired = store.claim_due_schedules(at_ms(due_ms), 10).await.expect("claim");
    assert_eq!(ids(&fired), vec![made.id]);
    assert!(store.claim_due_schedules(at_ms(due_ms), 10).await.expect("claim").is_empty());
}

#[test]
fn schedule_states_round_trip_and_serialize() {
    for state in ScheduleState::ALL {
        assert_eq!(ScheduleState::parse(state.as_str()), Some(state));
        assert_eq!(state.as_str().parse::<ScheduleState>(), Ok(state));
        assert_eq!(state.to_string(), state.as_str());
        assert_eq!(serde_json::to_value(state).expect("json"), serde_json::Value::from(state.as_str()));
    }
    assert_eq!(ScheduleState::parse("Pending"), None);
    assert!("done".parse::<ScheduleState>().is_err());
    assert!(!ScheduleState::Pending.is_final() && !ScheduleState::Firing.is_final());
    assert!(ScheduleState::Fired.is_final() && ScheduleState::Cancelled.is_final() && ScheduleState::Failed.is_final());

    let new = new_schedule("deploy", 1_800_000_000_000);
    let json = serde_json::to_value(&new).expect("json");
    assert_eq!(json["job"], "deploy");
    assert_eq!(json["params"]["env"], "dev");
    assert_eq!(json["requested_by"]["id"], "ana");
    assert_eq!(json["place"]["channel"], "ops");
    assert_eq!(json["run_at"], "2027-01-15T08:00:00Z");
}
