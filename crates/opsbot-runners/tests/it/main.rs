//! Integration tests of the exec runner: real processes, real signals, real pipes.

mod argv;
mod exit;
mod output;
mod redact;
mod start;
mod stop;
mod support;
