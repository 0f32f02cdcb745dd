//! Adapter tests against real chat servers started by `opsbot-testkit` (ngIRCd, Synapse,
//! Prosody) and the faithful local fakes of Slack and Mattermost. One test binary for the crate.

mod running;

#[cfg(feature = "irc")]
mod irc;
#[cfg(feature = "matrix")]
mod matrix;
#[cfg(feature = "mattermost")]
mod mattermost;
#[cfg(feature = "slack")]
mod slack;
#[cfg(feature = "xmpp")]
mod xmpp;
