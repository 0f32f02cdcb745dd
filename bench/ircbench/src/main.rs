//! `ircbench`: the load client and the null bot of the side-by-side IRC benchmark
//! (`bench/peers.sh`). Standard library only, so it builds in seconds on a fresh machine and
//! costs every bot the same.
//!
//! ```text
//! ircbench null    --port P --channel C --nick N                     a minimal responder (the floor)
//! ircbench seq     --port P --channel C --bot B -n 200 --cmd '!ping' --expect PONG
//! ircbench burst   --port P --channel C --bot B -n 1000 --cmd '!ping' --expect PONG
//! ircbench startup --port P --channel C --bot B --cmd '!ping' --expect PONG \
//!                  --log FILE --pidfile FILE -- PROGRAM ARGS…
//! ```
//!
//! `seq`, `burst` and `startup` print one line of JSON with their figures (milliseconds);
//! `bench/peers.sh` collects them into the table. A reply is a `PRIVMSG` from the bot's nick
//! to the channel whose text contains `--expect`. The client speaks from its own connection
//! (nick `--nick`, default `load`), answers the server's `PING`s, and sets `TCP_NODELAY`.
//!
//! The null bot answers `!ping` with `PONG` and `!run echo` by running the process
//! `echo hello` and sending its output — nothing else: no parsing beyond the line, no state,
//! one thread, one write per batch of lines read. It is what this IRC server and machine
//! allow a bot to reach.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((mode, rest)) = args.split_first() else {
        usage("a mode is needed");
    };
    let opts = Opts::parse(rest);
    let result = match mode.as_str() {
        "null" => null_bot(&opts),
        "seq" => seq(&opts),
        "burst" => burst(&opts),
        "startup" => startup(&opts),
        "-h" | "--help" | "help" => {
            print!("{}", HELP);
            return;
        }
        other => usage(&format!("unknown mode `{other}`")),
    };
    if let Err(e) = result {
        eprintln!("ircbench {mode}: {e}");
        std::process::exit(1);
    }
}

const HELP: &str = "\
ircbench MODE [options]   (load client and null bot for bench/peers.sh)

modes:
  null     answer `!ping` with PONG and `!run echo` with the output of `echo hello`
  seq      send -n commands one at a time, each after the previous reply
  burst    send -n commands at once, then wait for all the replies
  startup  start a bot (the words after `--`) and send --cmd every 5 ms until it answers

options:
  --host H        IRC server (127.0.0.1)        --port P      its port (6667)
  --channel C     channel (#bench)              --nick N      our nick (load / nullbot)
  --bot B         the bot's nick                --cmd TEXT    the command (!ping)
  --expect TEXT   a reply contains this (PONG)  -n N          commands (200)
  --timeout S     seconds to wait at most (60)  --log FILE    startup: the bot's output
  --pidfile FILE  startup: where the bot's pid is written
  --no-quickack   do not set TCP_QUICKACK after each read (it is set by default: see quickack())
";

fn usage(why: &str) -> ! {
    eprintln!("ircbench: {why}\n\n{HELP}");
    std::process::exit(2);
}

struct Opts {
    host: String,
    port: u16,
    channel: String,
    nick: Option<String>,
    bot: String,
    cmd: String,
    expect: String,
    n: usize,
    timeout: Duration,
    log: Option<String>,
    pidfile: Option<String>,
    program: Vec<String>,
    quickack: bool,
}

impl Opts {
    fn parse(args: &[String]) -> Opts {
        let mut o = Opts {
            host: "127.0.0.1".into(),
            port: 6667,
            channel: "#bench".into(),
            nick: None,
            bot: String::new(),
            cmd: "!ping".into(),
            expect: "PONG".into(),
            n: 200,
            timeout: Duration::from_secs(60),
            log: None,
            pidfile: None,
            program: Vec::new(),
            quickack: true,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--no-quickack" {
                o.quickack = false;
                continue;
            }
            if a == "--" {
                o.program = it.by_ref().cloned().collect();
                break;
            }
            let Some(v) = it.next() else {
                usage(&format!("`{a}` needs a value"));
            };
            let num = |what: &str| -> u64 { v.parse().unwrap_or_else(|_| usage(&format!("{what}: `{v}` is not a number"))) };
            match a.as_str() {
                "--host" => o.host = v.clone(),
                "--port" => o.port = num("--port") as u16,
                "--channel" => o.channel = v.clone(),
                "--nick" => o.nick = Some(v.clone()),
                "--bot" => o.bot = v.clone(),
                "--cmd" => o.cmd = v.clone(),
                "--expect" => o.expect = v.clone(),
                "-n" => o.n = num("-n") as usize,
                "--timeout" => o.timeout = Duration::from_secs(num("--timeout")),
                "--log" => o.log = Some(v.clone()),
                "--pidfile" => o.pidfile = Some(v.clone()),
                other => usage(&format!("unknown option `{other}`")),
            }
        }
        o
    }
}

// ------------------------------------------------------------------------------- connection

/// One IRC connection: buffered line reading, `PING` answered as lines go by.
struct Irc {
    sock: TcpStream,
    buf: Vec<u8>,
    start: usize,
    quickack: bool,
}

/// A parsed line: sender nick, command, params (the trailing one last).
struct Line<'a> {
    nick: &'a str,
    command: &'a str,
    params: Vec<&'a str>,
}

fn parse(line: &str) -> Line<'_> {
    let mut rest = line;
    let mut nick = "";
    if let Some(r) = rest.strip_prefix(':') {
        let (prefix, r) = r.split_once(' ').unwrap_or((r, ""));
        nick = prefix.split('!').next().unwrap_or("");
        rest = r;
    }
    let (head, trailing) = match rest.split_once(" :") {
        Some((h, t)) => (h, Some(t)),
        None => (rest, None),
    };
    let mut words = head.split(' ').filter(|w| !w.is_empty());
    let command = words.next().unwrap_or("");
    let mut params: Vec<&str> = words.collect();
    params.extend(trailing);
    Line { nick, command, params }
}

impl Irc {
    fn connect(o: &Opts, nick: &str) -> io::Result<Irc> {
        let sock = TcpStream::connect((o.host.as_str(), o.port))?;
        sock.set_nodelay(true)?;
        let mut irc = Irc {
            sock,
            buf: Vec::with_capacity(1 << 16),
            start: 0,
            quickack: o.quickack,
        };
        irc.send(&format!("NICK {nick}\r\nUSER {nick} 0 * :ircbench\r\n"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        irc.until(deadline, |l| {
            if l.command == "433" {
                return Err(io::Error::other(format!("the nick {nick} is taken")));
            }
            Ok(l.command == "001")
        })?
        .ok_or_else(|| io::Error::other("no welcome (001) from the server within 10 s"))?;
        irc.send(&format!("JOIN {}\r\n", o.channel))?;
        irc.until(deadline, |l| Ok(l.command == "366"))?
            .ok_or_else(|| io::Error::other(format!("could not join {}", o.channel)))?;
        Ok(irc)
    }

    fn send(&mut self, s: &str) -> io::Result<()> {
        self.sock.write_all(s.as_bytes())
    }

    /// Reads lines until `f` says yes (`Some(())`) or the deadline passes (`None`).
    fn until(&mut self, deadline: Instant, mut f: impl FnMut(&Line) -> io::Result<bool>) -> io::Result<Option<()>> {
        loop {
            while let Some(end) = self.buf[self.start..].iter().position(|&b| b == b'\n') {
                let raw = &self.buf[self.start..self.start + end];
                self.start += end + 1;
                let text = String::from_utf8_lossy(raw);
                let text = text.trim_end_matches('\r');
                let line = parse(text);
                if line.command == "PING" {
                    let pong = format!("PONG :{}\r\n", line.params.first().copied().unwrap_or(""));
                    self.sock.write_all(pong.as_bytes())?;
                    continue;
                }
                if f(&line)? {
                    return Ok(Some(()));
                }
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.sock.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 65536];
            match self.sock.read(&mut chunk) {
                Ok(0) => return Err(io::Error::other("the server closed the connection")),
                Ok(n) => {
                    if self.quickack {
                        quickack(&self.sock);
                    }
                    self.buf.extend_from_slice(&chunk[..n])
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

fn is_reply(o: &Opts, l: &Line) -> bool {
    l.command == "PRIVMSG"
        && l.nick.eq_ignore_ascii_case(&o.bot)
        && l.params.len() >= 2
        && l.params[0].eq_ignore_ascii_case(&o.channel)
        && l.params[1].contains(&o.expect)
}

unsafe extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const std::ffi::c_void, len: u32) -> i32;
}

/// Acknowledges what was read at once (Linux `TCP_QUICKACK`; it lapses, so it is set again
/// after every read). Without it a server that writes small lines without `TCP_NODELAY` (as
/// ngIRCd does) waits for the delayed acknowledgement — 40 ms — whenever it has a second line
/// for us before the first was acknowledged.
fn quickack(sock: &TcpStream) {
    use std::os::fd::AsRawFd;
    const IPPROTO_TCP: i32 = 6;
    const TCP_QUICKACK: i32 = 12;
    let one: i32 = 1;
    // SAFETY: a valid socket and a pointer to an int of the size given.
    unsafe {
        setsockopt(sock.as_raw_fd(), IPPROTO_TCP, TCP_QUICKACK, (&one as *const i32).cast(), 4);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let k = (sorted.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (k.floor() as usize, k.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (k - lo as f64)
}

/// Waits until nothing more arrives from the bot for `quiet` (the tail of an earlier phase).
fn drain(irc: &mut Irc, o: &Opts, quiet: Duration) -> io::Result<usize> {
    let mut n = 0;
    loop {
        let got = irc.until(Instant::now() + quiet, |l| {
            Ok(l.command == "PRIVMSG" && l.nick.eq_ignore_ascii_case(&o.bot))
        })?;
        if got.is_none() {
            return Ok(n);
        }
        n += 1;
    }
}

// ------------------------------------------------------------------------------- modes

fn seq(o: &Opts) -> io::Result<()> {
    let mut irc = Irc::connect(o, o.nick.as_deref().unwrap_or("load"))?;
    let line = format!("PRIVMSG {} :{}\r\n", o.channel, o.cmd);
    let mut rtts = Vec::with_capacity(o.n);
    let begin = Instant::now();
    for i in 0..o.n {
        let t = Instant::now();
        irc.send(&line)?;
        let got = irc.until(t + o.timeout, |l| Ok(is_reply(o, l)))?;
        if got.is_none() {
            return Err(io::Error::other(format!(
                "no reply to command {} of {} within {:?}",
                i + 1,
                o.n,
                o.timeout
            )));
        }
        rtts.push(ms(t.elapsed()));
        // Further lines of the same reply (a job card) are read before the next command.
        drain(&mut irc, o, Duration::from_millis(0))?;
    }
    let total = begin.elapsed();
    let extra = drain(&mut irc, o, Duration::from_millis(300))?;
    rtts.sort_by(f64::total_cmp);
    println!(
        "{{\"mode\":\"seq\",\"n\":{},\"p50_ms\":{:.3},\"p95_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"per_s\":{:.1},\"late_lines\":{}}}",
        o.n,
        percentile(&rtts, 50.0),
        percentile(&rtts, 95.0),
        percentile(&rtts, 99.0),
        rtts.last().copied().unwrap_or(f64::NAN),
        o.n as f64 / total.as_secs_f64(),
        extra
    );
    Ok(())
}

fn burst(o: &Opts) -> io::Result<()> {
    let mut irc = Irc::connect(o, o.nick.as_deref().unwrap_or("load"))?;
    let line = format!("PRIVMSG {} :{}\r\n", o.channel, o.cmd);
    let all = line.repeat(o.n);
    let begin = Instant::now();
    irc.send(&all)?;
    let sent = begin.elapsed();
    let mut got = 0usize;
    let mut first = None;
    let n = o.n;
    irc.until(begin + o.timeout, |l| {
        if is_reply(o, l) {
            got += 1;
            first.get_or_insert_with(|| begin.elapsed());
        }
        Ok(got == n)
    })?;
    let last = begin.elapsed();
    if got < o.n {
        return Err(io::Error::other(format!("{got} of {} replies within {:?}", o.n, o.timeout)));
    }
    let extra = drain(&mut irc, o, Duration::from_millis(300))?;
    println!(
        "{{\"mode\":\"burst\",\"n\":{},\"sent_ms\":{:.3},\"first_ms\":{:.3},\"all_ms\":{:.3},\"per_s\":{:.1},\"late_lines\":{}}}",
        o.n,
        ms(sent),
        ms(first.unwrap_or_default()),
        ms(last),
        o.n as f64 / last.as_secs_f64(),
        extra
    );
    Ok(())
}

fn startup(o: &Opts) -> io::Result<()> {
    if o.program.is_empty() {
        usage("startup needs the bot's command after `--`");
    }
    let mut irc = Irc::connect(o, o.nick.as_deref().unwrap_or("watch"))?;
    let log = match &o.log {
        Some(p) => Stdio::from(std::fs::File::create(p)?),
        None => Stdio::null(),
    };
    let log2 = match &o.log {
        Some(p) => Stdio::from(std::fs::OpenOptions::new().append(true).open(p)?),
        None => Stdio::null(),
    };
    let begin = Instant::now();
    let child = Command::new(&o.program[0])
        .args(&o.program[1..])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start {}: {e}", o.program[0])))?;
    if let Some(p) = &o.pidfile {
        std::fs::write(p, format!("{}\n", child.id()))?;
    }
    let line = format!("PRIVMSG {} :{}\r\n", o.channel, o.cmd);
    let mut joined = None;
    let deadline = begin + o.timeout;
    let first = loop {
        if Instant::now() >= deadline {
            return Err(io::Error::other(format!("no reply within {:?} of the start", o.timeout)));
        }
        // Only someone in the channel hears it; before the bot has joined this goes nowhere.
        irc.send(&line)?;
        let mut hit = false;
        irc.until(Instant::now() + Duration::from_millis(5), |l| {
            if l.command == "JOIN" && l.nick.eq_ignore_ascii_case(&o.bot) {
                joined.get_or_insert_with(|| begin.elapsed());
            }
            hit = is_reply(o, l);
            Ok(hit)
        })?;
        if hit {
            break begin.elapsed();
        }
    };
    // Answers to the commands it got between joining and being ready.
    let extra = drain(&mut irc, o, Duration::from_millis(1500))?;
    println!(
        "{{\"mode\":\"startup\",\"pid\":{},\"joined_ms\":{:.1},\"first_reply_ms\":{:.1},\"late_lines\":{}}}",
        child.id(),
        joined.map(ms).unwrap_or(f64::NAN),
        ms(first),
        extra
    );
    // The bot keeps running: the caller stops it (its pid is in --pidfile).
    std::mem::forget(child);
    Ok(())
}

fn null_bot(o: &Opts) -> io::Result<()> {
    let nick = o.nick.clone().unwrap_or_else(|| "nullbot".into());
    let mut irc = Irc::connect(o, &nick)?;
    irc.sock.set_read_timeout(None)?;
    let mut out = String::new();
    let mut chunk = vec![0u8; 65536];
    let reply = |out: &mut String, to: &str, text: &str| {
        out.push_str("PRIVMSG ");
        out.push_str(to);
        out.push_str(" :");
        out.push_str(text);
        out.push_str("\r\n");
    };
    let mut seen: HashMap<&'static str, u64> = HashMap::new();
    loop {
        while let Some(end) = irc.buf[irc.start..].iter().position(|&b| b == b'\n') {
            let raw = irc.buf[irc.start..irc.start + end].to_vec();
            irc.start += end + 1;
            let text = String::from_utf8_lossy(&raw);
            let l = parse(text.trim_end_matches('\r'));
            match (l.command, l.params.as_slice()) {
                ("PING", p) => {
                    out.push_str("PONG :");
                    out.push_str(p.first().copied().unwrap_or(""));
                    out.push_str("\r\n");
                }
                ("PRIVMSG", [to, msg]) if to.starts_with('#') => match *msg {
                    "!ping" => {
                        reply(&mut out, to, "PONG");
                        *seen.entry("ping").or_default() += 1;
                    }
                    "!run echo" => {
                        let output = Command::new("echo").arg("hello").stdin(Stdio::null()).output()?;
                        let text = String::from_utf8_lossy(&output.stdout);
                        reply(&mut out, to, text.trim_end());
                        *seen.entry("run").or_default() += 1;
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        if !out.is_empty() {
            irc.sock.write_all(out.as_bytes())?;
            out.clear();
        }
        irc.buf.drain(..irc.start);
        irc.start = 0;
        let n = irc.sock.read(&mut chunk)?;
        if irc.quickack {
            quickack(&irc.sock);
        }
        if n == 0 {
            eprintln!("nullbot: the server closed the connection after {seen:?}");
            return Ok(());
        }
        irc.buf.extend_from_slice(&chunk[..n]);
    }
}
