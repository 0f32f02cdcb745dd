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
            let a = &c.access;
            let roles: Vec<&str> = a.roles.iter().map(|r| r.name.as_str()).collect();
            println!(
                "access: {} people, roles {}; unknown accounts are `{}`, the local command line `{}`",
                a.people.len(),
                roles.join(", "),
                a.default_role,
                a.local_role
            );
            println!(
                "policies: {} approval, {} freeze, {} hours, {} rate limit, {} deny_argv rule(s); time zone {}",
                a.approvals.len(),
                a.freezes.len(),
                a.hours.len(),
                a.rate_limits.len(),
                a.deny_argv.len(),
                c.bot.timezone
            );
            for p in a.people.iter().filter(|p| p.roles.is_empty()) {
                println!("note: person `{}` has no role, so they may run nothing", p.key);
            }
            if c.adapters.is_empty() {
                println!("chat: no adapters; the web chat and `opsbot shell` are the chat doors");
            }
            for ad in &c.adapters {
                // What this build can run: an adapter type left out at build time is a problem now,
                // not at the first `serve`.
                let built = match opsbot_adapters::build(ad, &[]) {
                    Ok(b) => format!("can {}", b.capabilities().names().join(", ")),
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return Ok(ExitCode::from(1));
                    }
                };
                println!(
                    "chat: adapter `{}` ({}), sends at most {}/s (burst {}); {built}",
                    ad.name,
                    ad.kind.type_name(),
                    ad.send_rate,
                    ad.send_burst
                );
                // The addresses to paste into the platform's settings, where it calls opsbot back.
                let base = c.web.public_url.as_deref().unwrap_or("https://YOUR-OPSBOT");
                let hooks = format!("{base}/hooks/{}", ad.name);
                match &ad.kind {
                    opsbot_core::config::AdapterKind::Slack(s) if s.mode == opsbot_core::config::SlackMode::Events => {
                        println!(
                            "      Slack calls {hooks}/events (Event Subscriptions), {hooks}/commands (slash command) and {hooks}/interactive (Interactivity)"
                        );
                    }
                    opsbot_core::config::AdapterKind::Mattermost(m) => {
                        println!("      Mattermost's slash command calls {hooks}/command");
                        match &m.callback_url {
                            Some(cb) => println!("      message buttons call {cb}/hooks/{}/actions", ad.name),
                            None => println!("      note: no callback_url and no [web] public_url, so messages carry no buttons"),
                        }
                    }
                    _ => {}
                }
            }
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
