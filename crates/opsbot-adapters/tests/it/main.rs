//! Adapter tests against real chat servers started by `opsbot-testkit` (ngIRCd, Synapse,
//! Prosody). One test binary for the crate.

mod running;

#[cfg(feature = "irc")]
mod irc;
#[cfg(feature = "matrix")]
mod matrix;
#[cfg(feature = "xmpp")]
mod xmpp;
