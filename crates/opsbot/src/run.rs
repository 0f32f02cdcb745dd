//! `opsbot run`: the CLI door — the same engine steps and checks as chat, then wait.

use crate::runtime::Runtime;
use anyhow::Result;
use opsbot_adapters::terminal::render;
use opsbot_core::{Envelope, ExecState, Place, UserId};
use opsbot_engine::Awaiting;
use opsbot_engine::grammar::{cli_arg, quote_arg};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for a refused request (unknown job, bad or missing parameters, not confirmed).
const REFUSED: u8 = 2;

/// Queues `job` with `args` through the engine, runs it in this process and prints the result.
pub async fn run(config: &Path, db: Option<PathBuf>, job: String, args: Vec<String>, user: Option<String>, yes: bool) -> Result<ExitCode> {
    let mut rt = Runtime::start(config, db, true).await?;
    let user = crate::default_user(user);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut text = format!("run {}", quote_arg(&job));
    for a in &args {
        text.push(' ');
        text.push_str(&cli_arg(a));
    }
    let mut env = Envelope::direct(UserId::new("cli", &user), Place::new("cli", &user), text);
    env.display_name = Some(user.clone());
    let mut out = rt.engine.handle(&env).await;
    loop {
        for r in &out.replies {
            if out.queued.is_none() {
                eprintln!("{}", render(r, false));
            }
        }
        match (&out.awaiting, out.queued) {
            (_, Some(_)) => break,
            (None, None) => {
                rt.stop().await;
                return Ok(ExitCode::from(REFUSED));
            }
            (Some(Awaiting::Confirmation), None) if yes => env.text = "yes".into(),
            (Some(a), None) if interactive => {
                eprint!("{}", if *a == Awaiting::Confirmation { "yes/no> " } else { "value> " });
                let _ = std::io::stderr().flush();
                let mut line = String::new();
                if std::io::stdin().lock().read_line(&mut line)? == 0 {
                    line = "no".into();
                }
                env.text = line.trim().to_string();
            }
            (Some(Awaiting::Confirmation), None) => {
                env.text = "no".into();
                let _ = rt.engine.handle(&env).await;
                eprintln!("opsbot: `{job}` is sensitive; pass --yes to confirm it from a script.");
                rt.stop().await;
                return Ok(ExitCode::from(REFUSED));
            }
            (Some(Awaiting::Param(p)), None) => {
                env.text = "cancel".into();
                let _ = rt.engine.handle(&env).await;
                eprintln!("opsbot: `{p}` is required; pass {p}=VALUE.");
                rt.stop().await;
                return Ok(ExitCode::from(REFUSED));
            }
        }
        out = rt.engine.handle(&env).await;
    }
    let id = out.queued.expect("loop exits only when queued");
    eprintln!("#{id} queued: {}", env.text);
    rt.run_only(id);
    let mut final_state = None;
    while let Some(n) = rt.notices.recv().await {
        if n.execution != id {
            continue;
        }
        if n.state == ExecState::Running {
            eprintln!("#{id} running…");
            continue;
        }
        if n.state.is_final() {
            let all = rt.engine.store().output_all(id).await?;
            if !all.is_empty() {
                println!("{}", opsbot_engine::present::render_lines(&all));
            }
            let mut summary = n.reply.clone();
            summary.blocks.retain(|b| {
                !matches!(b, opsbot_core::Block::Code { .. })
                    && !matches!(b, opsbot_core::Block::Text { text } if text.contains("earlier line"))
            });
            eprintln!("{}", render(&summary, color && std::io::stderr().is_terminal()));
            final_state = Some(n.state);
            break;
        }
    }
    rt.stop().await;
    Ok(match final_state {
        Some(ExecState::Succeeded) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}
