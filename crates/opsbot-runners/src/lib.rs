//! Runners that carry out opsbot jobs.
//!
//! A runner takes one [`opsbot_core::RunRequest`] — a job, its checked params, an output
//! channel and a cancel token — runs the job to its end and reports a
//! [`opsbot_core::RunOutcome`]. It knows nothing of the engine, the store or chat platforms.
//!
//! The only runner so far is [`ExecRunner`]: it starts a local process from the job's argv
//! templates (never through a shell), in its own process group, streams its output line by
//! line within the job's output limit, enforces the timeout and cancel requests by signalling
//! the whole group, and reports exit status and resource usage.

pub mod exec;
pub mod redact;

pub use exec::ExecRunner;
