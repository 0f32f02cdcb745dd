//! `opsbot check`: validate the config and print every problem.

use anyhow::Result;
use opsbot_core::config::{Config, LoadError, LoadOptions};
use std::path::Path;
use std::process::ExitCode;

/// Prints every problem with its position; exit 1 when there is any.
pub fn check(path: &Path, no_secrets: bool) -> Result<ExitCode> {
    match Config::load_with(
        path,
        LoadOptions {
            resolve_secrets: !no_secrets,
        },
    ) {
        Ok(c) => {
            let params: usize = c.catalog.jobs().iter().map(|j| j.params.len()).sum();
            let aliases: usize = c.catalog.jobs().iter().map(|j| j.aliases.len()).sum();
            println!(
                "{}: ok — {} jobs, {params} parameters, {aliases} aliases",
                path.display(),
                c.catalog.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprint!("{d}");
            }
            eprintln!("{}: {} problem(s)", path.display(), diags.len());
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("opsbot: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
