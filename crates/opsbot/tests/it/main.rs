//! Behaviour of the `opsbot` binary through its public surface: scripted shell sessions,
//! `opsbot run`, `opsbot check` and `opsbot serve`, with real processes.

mod access_cli;
mod audit;
mod browser;
mod check;
mod client;
mod conformance;
mod dialogs;
mod harness;
mod hostile;
mod jobs;
mod lifecycle;
mod mattermost;
mod run_cli;
mod schemathesis;
mod slack;
mod understand;
mod users;
mod verbs;
mod web;
