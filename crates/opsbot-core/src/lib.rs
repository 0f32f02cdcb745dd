//! The shared vocabulary of opsbot.
//!
//! Every other crate speaks these types: an adapter turns a platform event into an
//! [`Envelope`] and renders a [`Reply`]; the engine turns envelopes into decisions and
//! [`Execution`]s; a [`Runner`] carries out a [`JobSpec`] and streams [`OutputLine`]s.
//! This crate depends on nothing else of ours.

pub mod adapter;
pub mod config;
pub mod envelope;
pub mod execution;
pub mod job;
pub mod password;
pub mod reply;
pub mod runner;
pub mod secret;
pub mod understand;
pub mod verify;
pub mod when;

pub use adapter::{
    Adapter, AdapterContext, AdapterState, Capabilities, Deliver, Inbox, InboxClosed, NoState, Posted, SendError, WebhookRequest,
    WebhookResponse,
};
pub use config::{Config, Diagnostic, LoadError};
pub use envelope::{Envelope, Place, UserId};
pub use execution::{ExecEvent, ExecState, Execution, ExecutionId, NewExecution, OutputLine, Stream};
pub use job::{Catalog, JobSpec, ParamKind, ParamSpec, Params, RunnerSpec};
pub use reply::{Block, Button, Form, FormField, FormInput, Reply, Tone};
pub use runner::{CancelToken, RunOutcome, RunRequest, Runner};
pub use understand::{Candidate, Command, Context, Lang, Understand, Understanding, Verdict, When};
