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
use tokio::signal::unix::{SignalKind, signal};

/// Exit code for a refused request (unknown job, bad or missing parameters, not confirmed).
const REFUSED: u8 = 2;

/// Prints the output lines of `id` stored after the first `printed`; returns the new count.
pub(crate) async fn print_new_output(store: &dyn opsbot_store::Store, id: i64, mut printed: u64) -> Result<u64> {
    // Lines are read by position, a bounded page at a time, so output stored meanwhile can
    // neither shift them nor pile up in memory.
    const PAGE: usize = 1000;
    let mut out = std::io::stdout().lock();
    loop {
        let lines = store.output_range(id, printed, PAGE).await?;
        for l in &lines {
            writeln!(out, "{}", opsbot_engine::present::render_lines(std::slice::from_ref(l)))?;
        }
        printed += lines.len() as u64;
        if lines.len() < PAGE {
            break;
        }
    }
    out.flush()?;
    Ok(printed)
}

/// `--yes` after the job (`opsbot run restart service=api --yes`) is the flag, not a parameter,
/// unless it comes after `--`. Returns the arguments without it and whether it was given.
pub(crate) fn take_yes(mut args: Vec<String>, yes: bool) -> (Vec<String>, bool) {
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let before = args.len();
    let mut i = 0;
    args.retain(|a| {
        i += 1;
        !(i <= end && (a == "--yes" || a == "-y"))
    });
    let yes = yes || args.len() != before;
    (args, yes)
}

/// Queues `job` with `args` through the engine, runs it in this process and prints the result.
pub async fn run(config: &Path, db: Option<PathBuf>, job: String, args: Vec<String>, user: Option<String>, yes: bool) -> Result<ExitCode> {
    let (args, yes) = take_yes(args, yes);
    let mut rt = Runtime::start(config, db, true).await?;
    let user = crate::default_user(user);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut text = format!("run {}", quote_arg(&job));
    for a in &args {
        text.push(' ');
        text.push_str(&cli_arg(a));
    }
    let command = text.clone();
    let mut env = Envelope::direct(UserId::new("cli", &user), Place::new("cli", &user), text);
    env.display_name = Some(user.clone());
    let mut out = rt.engine.handle(&env).await;
    loop {
        // Show what the engine said, except a confirmation prompt that --yes answers for us.
        let auto_confirm = yes && out.awaiting == Some(Awaiting::Confirmation);
        if out.queued.is_none() && !auto_confirm {
            for r in &out.replies {
                eprintln!("{}", render(r, false));
            }
        }
        if let Some(req) = out.approval {
            eprintln!(
                "opsbot: `{job}` waits for approval (request {req}); once approved it runs in a worker on this store (`opsbot serve`)."
            );
            rt.stop().await;
            return Ok(ExitCode::from(crate::client::PENDING_APPROVAL));
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
    eprintln!("#{id} queued: {command}");
    rt.run_only(id);
    // Stream output while it runs: every 200 ms, print the lines stored since the last look.
    let store = rt.engine.store().clone();
    let mut printed: u64 = 0;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut stopping: Option<i32> = None;
    let final_notice = loop {
        tokio::select! {
            n = rt.notices.recv() => match n {
                Some(n) if n.execution == id && n.state == ExecState::Running => eprintln!("#{id} running…"),
                Some(n) if n.execution == id && n.state.is_final() => break Some(n),
                Some(_) => {}
                None => break None,
            },
            _ = tick.tick() => {
                printed = print_new_output(store.as_ref(), id, printed).await?;
                // Another process may have cancelled it, or (with a shared store) run it: the
                // record is the truth, whatever events this process saw.
                if let Some(e) = store.execution(id).await?
                    && e.state.is_final()
                {
                    break rt.engine.notice_for(id).await?;
                }
            }
            // Interrupted: stop the job (audited like `cancel ID`) and wait for its end, so it
            // is not left running without anyone watching it.
            _ = tokio::signal::ctrl_c(), if stopping.is_none() => stopping = Some(cancel(&rt, &env, id, 130).await),
            _ = term.recv(), if stopping.is_none() => stopping = Some(cancel(&rt, &env, id, 143).await),
            _ = hup.recv(), if stopping.is_none() => stopping = Some(cancel(&rt, &env, id, 129).await),
        }
    };
    print_new_output(store.as_ref(), id, printed).await?;
    let final_state = final_notice.map(|n| {
        // The output is already on stdout; keep the summary to state, duration and exit code.
        let summary = crate::status::without_output(n.reply.clone());
        eprintln!("{}", render(&summary, color && std::io::stderr().is_terminal()));
        n.state
    });
    rt.stop().await;
    Ok(match (stopping, final_state) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(ExecState::Succeeded)) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// Asks the engine to cancel `id` on behalf of the CLI user; returns the exit code to use.
async fn cancel(rt: &Runtime, env: &Envelope, id: i64, code: i32) -> i32 {
    eprintln!("\nopsbot: interrupted; stopping #{id}…");
    let mut e = env.clone();
    e.text = format!("cancel {id}");
    let _ = rt.engine.handle(&e).await;
    code
}
