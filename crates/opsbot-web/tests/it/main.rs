//! opsbot-web through its public API: the router driven request by request over an in-memory
//! store, real workers running real processes for the end-to-end cases, and one real TCP server.

mod approvals;
mod auth;
mod chat;
mod console;
mod e2e;
mod harness;
mod jobs;
mod ops;
mod runs;
mod serve;
mod signin;
mod visibility;
