//! `opsbot token`: API tokens for the REST API and remote CLI use.

use crate::runtime::load_config;
use anyhow::{Context, Result};
use opsbot_store::{SqliteStore, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What to do with tokens.
#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token acting as web user NAME (identity `web:NAME`); it is printed once.
    Create {
        /// The web user the token acts as.
        #[arg(long, short)]
        user: String,
        /// What the token is for (shown in `token list`).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id; it is refused from then on.
    Revoke {
        /// The token's id from `token list`.
        id: i64,
    },
}

/// Runs a token command against the config's store (or `--db`).
pub async fn token(config: &Path, db: Option<PathBuf>, cmd: TokenCmd) -> Result<ExitCode> {
    let config = load_config(config)?;
    let db = db.unwrap_or_else(|| config.store.path.clone());
    let store = SqliteStore::open(&db)
        .await
        .with_context(|| format!("cannot open the store at {}", db.display()))?;
    match cmd {
        TokenCmd::Create { user, label } => {
            let user = user.trim();
            if user.is_empty() || user.len() > 64 || !user.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                eprintln!("opsbot: a user name is 1–64 letters, digits, `.`, `_` or `-` (got `{user}`)");
                return Ok(ExitCode::from(2));
            }
            let (secret, hash) = opsbot_web::new_token();
            let t = store.create_token(user, &label, &hash).await?;
            eprintln!(
                "token #{} for web:{} created. It is shown only this once; keep it in a secret store:",
                t.id, t.user
            );
            println!("{secret}");
            eprintln!(
                "use it as `Authorization: Bearer …` or OPSBOT_TOKEN=…; revoke with `opsbot token revoke {}`",
                t.id
            );
        }
        TokenCmd::List => {
            let tokens = store.tokens().await?;
            if tokens.is_empty() {
                println!("no tokens; create one with `opsbot token create --user NAME`");
            }
            for t in tokens {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                    None => "active".into(),
                };
                let used = t
                    .last_used_at
                    .map(|u| u.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "#{:<4} web:{:<16} {:<10} created {}  last used {}  {}",
                    t.id,
                    t.user,
                    state,
                    t.created_at.format("%Y-%m-%d %H:%M"),
                    used,
                    t.label
                );
            }
        }
        TokenCmd::Revoke { id } => {
            if store.revoke_token(id).await? {
                println!("token #{id} revoked");
            } else {
                eprintln!("opsbot: there is no active token #{id} (`opsbot token list` shows them)");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
