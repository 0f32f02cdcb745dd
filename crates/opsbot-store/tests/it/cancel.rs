//! Cancel requests and finishing.

use crate::{finished, new_exec, now_ms};
use opsbot_core::ExecState;
use opsbot_store::{CancelResult, Finish, SqliteStore, Store};
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(60);

async fn cancel_queued(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    let before = now_ms();
    assert_eq!(store.request_cancel(id).await.expect("cancel"), CancelResult::CancelledQueued);
    let e = store.execution(id).await.expect("get").expect("exists");
    assert_eq!(e.state, ExecState::Cancelled);
    assert!(e.finished_at.expect("finished_at") >= before);
    assert_eq!(e.detail.as_deref(), Some("cancelled before it started"));
    assert!(
        store.claim("w1", LEASE, None).await.expect("claim").is_none(),
        "cancelled ones are not claimed"
    );
    assert_eq!(
        store.request_cancel(id).await.expect("cancel"),
        CancelResult::AlreadyFinished(ExecState::Cancelled)
    );
}
on_both!(cancel_queued);

async fn cancel_running(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    let other = store.create_execution(&new_exec("job")).await.expect("create").id;
    store.claim("w1", LEASE, Some(id)).await.expect("claim").expect("claimed");
    store.claim("w2", LEASE, Some(other)).await.expect("claim").expect("claimed");
    assert!(store.cancel_requested("w1").await.expect("list").is_empty());

    assert_eq!(store.request_cancel(id).await.expect("cancel"), CancelResult::Requested);
    let e = store.execution(id).await.expect("get").expect("exists");
    assert_eq!(e.state, ExecState::Running, "still running until its worker stops it");
    assert!(e.cancel_requested);
    assert_eq!(store.cancel_requested("w1").await.expect("list"), vec![id]);
    assert!(store.cancel_requested("w2").await.expect("list").is_empty());
    // Asking twice is harmless.
    assert_eq!(store.request_cancel(id).await.expect("cancel"), CancelResult::Requested);

    let stop = Finish {
        detail: Some("stopped on request".into()),
        ..finished(ExecState::Cancelled, 143)
    };
    store.finish(id, &stop).await.expect("finish");
    let e = store.execution(id).await.expect("get").expect("exists");
    assert_eq!(e.state, ExecState::Cancelled);
    assert_eq!(e.exit_code, Some(143));
    assert_eq!(e.detail.as_deref(), Some("stopped on request"));
    assert!(
        store.cancel_requested("w1").await.expect("list").is_empty(),
        "only running ones are listed"
    );
    assert_eq!(
        store.request_cancel(id).await.expect("cancel"),
        CancelResult::AlreadyFinished(ExecState::Cancelled)
    );
}
on_both!(cancel_running);

async fn cancel_unknown(store: &SqliteStore) {
    assert_eq!(store.request_cancel(4242).await.expect("cancel"), CancelResult::NotFound);
}
on_both!(cancel_unknown);

async fn finish_records_outcome(store: &SqliteStore) {
    let id = store.create_execution(&new_exec("job")).await.expect("create").id;
    store.claim("w1", LEASE, None).await.expect("claim").expect("claimed");
    let before = now_ms();
    store.finish(id, &finished(ExecState::Failed, 3)).await.expect("finish");
    let e = store.execution(id).await.expect("get").expect("exists");
    assert_eq!(e.state, ExecState::Failed);
    assert_eq!(e.exit_code, Some(3));
    assert_eq!(e.duration_ms, Some(1234));
    assert_eq!(e.cpu_ms, Some(56));
    assert_eq!(e.max_rss_kb, Some(7890));
    assert!(e.finished_at.expect("finished_at") >= before);
    assert!(e.started_at.expect("started_at") <= e.finished_at.expect("finished_at"));
    assert_eq!(e.worker.as_deref(), Some("w1"));

    // Only running executions are finished: a second report changes nothing.
    store.finish(id, &finished(ExecState::Succeeded, 0)).await.expect("finish");
    let again = store.execution(id).await.expect("get").expect("exists");
    assert_eq!(again.state, ExecState::Failed);
    assert_eq!(again.exit_code, Some(3));

    // Nor is a queued one.
    let queued = store.create_execution(&new_exec("job")).await.expect("create").id;
    store.finish(queued, &finished(ExecState::Succeeded, 0)).await.expect("finish");
    assert_eq!(
        store.execution(queued).await.expect("get").expect("exists").state,
        ExecState::Queued
    );

    // Finishing an unknown id is not an error.
    store.finish(9999, &finished(ExecState::Succeeded, 0)).await.expect("finish");
}
on_both!(finish_records_outcome);

async fn finish_without_final_state_infers_it(store: &SqliteStore) {
    let ok = store.create_execution(&new_exec("job")).await.expect("create").id;
    let bad = store.create_execution(&new_exec("job")).await.expect("create").id;
    store.claim("w1", LEASE, Some(ok)).await.expect("claim").expect("claimed");
    store.claim("w1", LEASE, Some(bad)).await.expect("claim").expect("claimed");
    store
        .finish(
            ok,
            &Finish {
                exit_code: Some(0),
                ..Finish::default()
            },
        )
        .await
        .expect("finish");
    store
        .finish(
            bad,
            &Finish {
                state: Some(ExecState::Running),
                exit_code: Some(1),
                ..Finish::default()
            },
        )
        .await
        .expect("finish");
    assert_eq!(store.execution(ok).await.expect("get").expect("exists").state, ExecState::Succeeded);
    assert_eq!(store.execution(bad).await.expect("get").expect("exists").state, ExecState::Failed);
}
on_both!(finish_without_final_state_infers_it);
