//! Chat adapters. Each turns its platform's events into [`opsbot_core::Envelope`]s and renders
//! [`opsbot_core::Reply`]s natively; none knows anything of the engine or the store.
//!
//! Each adapter is a module behind a cargo feature. This build has:
//! - `terminal` — the terminal chat of `opsbot shell` (stdin/stdout).

#[cfg(feature = "terminal")]
pub mod terminal;
