//! `opsbot user`: web console users — password hashes for the config, and resetting a
//! generated password.

use crate::runtime::load_config;
use anyhow::{Context, Result, bail};
use opsbot_core::config::WebPassword;
use opsbot_store::{SqliteStore, Store};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What to do with web users.
#[derive(clap::Subcommand)]
pub enum UserCmd {
    /// Print an Argon2id hash of a password, for `password_hash` under `[web.users.NAME]`.
    ///
    /// The password is read from the terminal without echo (asked twice), or as one line from
    /// standard input when it is not a terminal (`printf '%s' "$PW" | opsbot user hash-password`).
    /// It is never taken as an argument, so it stays out of shell history and `ps`.
    HashPassword,
    /// Forget the generated password of a user declared with `generated_password = true`,
    /// and end their sessions; the next `opsbot serve` makes and prints a new one.
    ResetPassword {
        /// The user (as under `[web.users.NAME]`).
        name: String,
    },
}

/// Runs a user command.
pub async fn user(config: &Path, db: Option<PathBuf>, cmd: UserCmd) -> Result<ExitCode> {
    match cmd {
        UserCmd::HashPassword => hash_password(),
        UserCmd::ResetPassword { name } => {
            let config = load_config(config)?;
            let Some(u) = config.web.users.iter().find(|u| u.name == name) else {
                let known: Vec<&str> = config.web.users.iter().map(|u| u.name.as_str()).collect();
                bail!(
                    "there is no web user `{name}` in {} (users: {})",
                    config.path.display(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                );
            };
            if let WebPassword::Hash(_) = u.password {
                bail!("`{name}` has a `password_hash` in the config; make a new one with `opsbot user hash-password` and replace it there");
            }
            let db = db.unwrap_or_else(|| config.store.path.clone());
            let store = SqliteStore::open(&db)
                .await
                .with_context(|| format!("cannot open the store at {}", db.display()))?;
            let had = store.delete_generated_password(&name).await?;
            let sessions = store.delete_user_sessions(&name).await?;
            eprintln!(
                "{} for `{name}`; {sessions} session(s) ended. The next `opsbot serve` prints a new password (a running one keeps the old until restarted).",
                if had {
                    "generated password forgotten"
                } else {
                    "no generated password was stored"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn hash_password() -> Result<ExitCode> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password from the terminal")?;
        let again = rpassword::prompt_password("Again: ").context("cannot read the password from the terminal")?;
        if first != again {
            eprintln!("opsbot: the two passwords differ; nothing was printed");
            return Ok(ExitCode::from(1));
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        eprintln!("opsbot: the password is empty; nothing was printed");
        return Ok(ExitCode::from(1));
    }
    if password.chars().count() < 8 {
        eprintln!("opsbot: warning: a password shorter than 8 characters is easy to guess");
    }
    let hash = opsbot_core::password::hash_password(&password).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{hash}")?;
    Ok(ExitCode::SUCCESS)
}
