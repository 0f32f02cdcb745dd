//! State-change events and queue wake-ups.

use crate::{finished, new_exec};
use opsbot_core::{ExecState, ExecutionId};
use opsbot_store::{SqliteStore, Store};
use std::time::Duration;
use tokio::sync::broadcast::{Receiver, error::TryRecvError};

const LEASE: Duration = Duration::from_secs(60);

fn next(rx: &mut Receiver<opsbot_core::ExecEvent>) -> (ExecutionId, ExecState) {
    let e = rx.try_recv().expect("an event");
    (e.id, e.state)
}

async fn events_are_announced(store: &SqliteStore) {
    let mut rx = store.subscribe();
    let a = store.create_execution(&new_exec("job")).await.expect("create").id;
    let b = store.create_execution(&new_exec("job")).await.expect("create").id;
    let c = store.create_execution(&new_exec("job")).await.expect("create").id;
    assert!(
        matches!(rx.try_recv(), Err(TryRecvError::Empty)),
        "queueing is not a state change event"
    );

    store.claim("w1", LEASE, Some(a)).await.expect("claim").expect("claimed");
    assert_eq!(next(&mut rx), (a, ExecState::Running));
    store.finish(a, &finished(ExecState::Succeeded, 0)).await.expect("finish");
    assert_eq!(next(&mut rx), (a, ExecState::Succeeded));
    // Ignored finishes announce nothing.
    store.finish(a, &finished(ExecState::Failed, 1)).await.expect("finish");

    store.request_cancel(b).await.expect("cancel");
    assert_eq!(next(&mut rx), (b, ExecState::Cancelled));

    store.claim("w1", Duration::ZERO, Some(c)).await.expect("claim").expect("claimed");
    assert_eq!(next(&mut rx), (c, ExecState::Running));
    // A cancel request on a running execution changes no state yet.
    store.request_cancel(c).await.expect("cancel");
    tokio::time::sleep(Duration::from_millis(20)).await;
    store.recover_lost(&|_: &str| false).await.expect("recover");
    assert_eq!(next(&mut rx), (c, ExecState::Lost));

    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
}
on_both!(events_are_announced);

async fn queueing_wakes_waiting_workers(store: &SqliteStore) {
    let notify = store.queue_notify();
    let first = notify.notified();
    let second = notify.notified();
    tokio::pin!(first);
    tokio::pin!(second);
    first.as_mut().enable();
    second.as_mut().enable();
    store.create_execution(&new_exec("job")).await.expect("create");
    tokio::time::timeout(Duration::from_secs(1), first)
        .await
        .expect("first waiter woken");
    tokio::time::timeout(Duration::from_secs(1), second)
        .await
        .expect("second waiter woken");
}
on_both!(queueing_wakes_waiting_workers);

async fn queueing_leaves_a_permit_for_a_late_worker(store: &SqliteStore) {
    store.create_execution(&new_exec("job")).await.expect("create");
    // Nobody was waiting; a worker that starts waiting now still wakes.
    tokio::time::timeout(Duration::from_secs(1), store.queue_notify().notified())
        .await
        .expect("permit left");
}
on_both!(queueing_leaves_a_permit_for_a_late_worker);
