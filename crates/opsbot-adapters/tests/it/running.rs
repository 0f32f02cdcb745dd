//! An adapter's `run` in a task of its own, as the runtime would run it, for the tests.

use opsbot_core::{Adapter, AdapterContext, Envelope};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// How long the tests wait for anything the server or the adapter should do.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running adapter: its task, inbox and stop switch.
#[allow(dead_code)] // each platform's tests use a different part
pub struct Running<A: Adapter + 'static> {
    pub adapter: Arc<A>,
    pub ctx: AdapterContext,
    pub inbox: mpsc::Receiver<Envelope>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), String>>,
}

#[allow(dead_code)]
impl<A: Adapter + 'static> Running<A> {
    /// Starts `run` with a context of its own.
    pub fn spawn(adapter: Arc<A>) -> Self {
        let (ctx, inbox, stop) = AdapterContext::standalone();
        let (a, c) = (adapter.clone(), ctx.clone());
        let task = tokio::spawn(async move { a.run(&c).await });
        Self {
            adapter,
            ctx,
            inbox,
            stop,
            task,
        }
    }

    /// [`Running::spawn`], then waits until the adapter says it is connected.
    pub async fn spawn_connected(adapter: Arc<A>) -> Self {
        let r = Self::spawn(adapter);
        r.connected().await;
        r
    }

    /// Waits until the adapter says it is connected (fails if `run` ended first).
    pub async fn connected(&self) {
        let t = tokio::time::Instant::now();
        while !self.ctx.is_connected() {
            assert!(!self.task.is_finished(), "run() ended before connecting");
            assert!(t.elapsed() < WAIT, "not connected after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next incoming message.
    pub async fn next(&mut self) -> Envelope {
        tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("an envelope in time")
            .expect("inbox open")
    }

    /// Stops it and returns what `run` returned.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(true);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("run() returns on stop")
            .expect("run() did not panic")
    }
}
