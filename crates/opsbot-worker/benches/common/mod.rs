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

/// A `kB` field of this process's `/proc/self/status` (`VmRSS:`, `VmHWM:`, `Threads:`); 0 when
/// it cannot be read.
#[allow(dead_code)] // not every bench reads it
pub fn status_kb(field: &str) -> u64 {
    proc_kb("/proc/self/status", field)
}

/// A `kB` field of `/proc/meminfo` (`MemAvailable:`); 0 when it cannot be read.
#[allow(dead_code)] // not every bench reads it
pub fn meminfo_kb(field: &str) -> u64 {
    proc_kb("/proc/meminfo", field)
}

#[allow(dead_code)]
fn proc_kb(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
