//! What the worker benches share.

use opsbot_core::{NewExecution, Params, Place, UserId};

/// A run of `job` with no params, as a bench queues it.
pub fn queued(job: &str) -> NewExecution {
    NewExecution {
        job: job.into(),
        params: Params::new(),
        requested_by: UserId::new("bench", "U1"),
        requester_name: "Bench".into(),
        place: Place::new("bench", "C1"),
        max_parallel: None,
    }
}
