//! The IRC adapter against a real ngIRCd (opsbot-testkit), and against a small scripted
//! server for what ngIRCd cannot do: SASL, NickServ, account tags, malformed lines, kicks.

use opsbot_adapters::irc::IrcAdapter;
use opsbot_core::config::IrcConfig;
use opsbot_core::{Adapter, AdapterContext, Button, Place, Reply, SendError, Tone};
use opsbot_testkit::irc::{IrcUser, Ngircd};
use opsbot_testkit::{ChatServer, ChatUser};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::running::WAIT;

fn config(port: u16) -> IrcConfig {
    IrcConfig {
        server: "127.0.0.1".into(),
        port: Some(port),
        tls: false,
        tls_ca: None,
        nick: "opsbot".into(),
        username: None,
        realname: None,
        server_password: None,
        sasl_user: None,
        sasl_password: None,
        nickserv_password: None,
        channels: vec!["#ops".into()],
        line_rate: 1000.0,
        line_burst: 1000,
        max_lines: 12,
    }
}

type Running = crate::running::Running<IrcAdapter>;

/// Starts the adapter on `cfg` and waits until it is connected.
async fn start(cfg: IrcConfig) -> Running {
    Running::spawn_connected(Arc::new(IrcAdapter::new("irc", cfg).expect("adapter"))).await
}

fn room() -> Place {
    Place::new("irc", "#ops")
}

async fn user(srv: &Ngircd, nick: &str) -> IrcUser {
    srv.irc_user(nick).await.expect("test user")
}

#[tokio::test]
async fn room_and_direct_messages_become_envelopes() {
    let Some(srv) = Ngircd::start().await else { return };
    let mut bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    assert_eq!(ana.account(), "ana!~ana@127.0.0.1");

    ana.say("#ops", "opsbot: deploy web").await.unwrap();
    let e = bot.next().await;
    assert_eq!(e.user.to_string(), format!("irc:{}", ana.account()));
    assert_eq!(e.display_name.as_deref(), Some("ana"));
    assert_eq!(e.place, room());
    assert!(e.mentioned && !e.direct);
    assert_eq!(e.text, "deploy web");

    ana.say("#ops", "OpsBot, status 4").await.unwrap();
    let e = bot.next().await;
    assert!(e.mentioned);
    assert_eq!(e.text, "status 4");

    ana.say("#ops", "!deploy web").await.unwrap();
    let e = bot.next().await;
    assert!(!e.mentioned && !e.direct);
    assert_eq!(e.text, "!deploy web");

    ana.say("#ops", "\x02bold\x02 chatter").await.unwrap();
    assert_eq!(bot.next().await.text, "bold chatter");

    ana.dm("hello there").await.unwrap();
    let e = bot.next().await;
    assert!(e.direct);
    assert_eq!(
        e.place,
        Place::new("irc", ana.account()),
        "a direct place names the person, not just the nick"
    );
    assert_eq!(e.text, "hello there");
    assert_eq!(e.user.id, ana.account());

    // the answer to a direct message goes back to the person
    bot.adapter.post(&e.place, &Reply::text(Tone::Info, "hi ana")).await.unwrap();
    let h = ana.next(WAIT).await.expect("a direct answer");
    assert_eq!(h.room, None);
    assert_eq!(h.text, "hi ana");
    assert_eq!(bot.adapter.capabilities().names(), vec!["direct"]);
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn replies_are_compact_lines_and_cards_are_short() {
    let Some(srv) = Ngircd::start().await else { return };
    let bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    let r = Reply::new(Tone::Success)
        .heading("Deploy")
        .status(Tone::Success, "done")
        .fields(vec![("env".into(), "prod".into()), ("took".into(), "3s".into())])
        .code("one\ntwo")
        .table(vec!["job".into(), "state".into()], vec![vec!["deploy".into(), "ok".into()]])
        .buttons(vec![Button {
            label: "Logs".into(),
            command: "logs 4".into(),
            tone: Tone::Info,
        }]);
    let posted = bot.adapter.post(&room(), &r).await.unwrap();
    assert_eq!(posted.id, None);
    let mut got = Vec::new();
    for _ in 0..7 {
        let h = ana.next(WAIT).await.expect("a line");
        assert_eq!(h.room.as_deref(), Some("#ops"));
        got.push(h.text);
    }
    assert_eq!(
        got,
        [
            "Deploy · ✔ done",
            "env: prod · took: 3s",
            "one",
            "two",
            "job | state",
            "deploy | ok",
            "[Logs: logs 4]"
        ]
    );

    // max_lines (12) caps a long reply with a note
    let long = Reply::new(Tone::Info).code((1..=30).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n"));
    bot.adapter.post(&room(), &long).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..12 {
        got.push(ana.next(WAIT).await.expect("a line").text);
    }
    assert_eq!(got[10], "line 11");
    assert_eq!(got[11], "… (19 more lines; see the web console)");

    // a job card: at most three lines
    let card = Reply::new(Tone::Success)
        .status(Tone::Success, "#7 deploy succeeded")
        .para("deploy web to prod")
        .fields(vec![("requested by".into(), "ana".into()), ("duration".into(), "2s".into())])
        .code((1..=50).map(|i| format!("out {i}")).collect::<Vec<_>>().join("\n"))
        .para("… 40 earlier line(s) not shown")
        .card(7);
    bot.adapter.post(&room(), &card).await.unwrap();
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "after the card")).await.unwrap();
    let mut got = Vec::new();
    loop {
        let t = ana.next(WAIT).await.expect("a line").text;
        if t == "after the card" {
            break;
        }
        got.push(t);
    }
    assert_eq!(
        got,
        [
            "✔ #7 deploy succeeded — deploy web to prod",
            "requested by: ana · duration: 2s",
            "│ out 50"
        ]
    );
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn line_breaks_in_replies_cannot_inject_commands() {
    let Some(srv) = Ngircd::start().await else { return };
    let bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    let evil = Reply::new(Tone::Info)
        .heading("ok\r\nQUIT :x")
        .fields(vec![("k\r\nJOIN #evil".into(), "v\u{0}\r\nPRIVMSG ana :spoof".into())])
        .para("first\r\nQUIT :bye\rstill first");
    bot.adapter.post(&room(), &evil).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let l = ana.next_line(WAIT).await.expect("a line");
        assert_eq!(l.room.as_deref(), Some("#ops"), "every line is a message in the room");
        got.push(l.text);
    }
    assert_eq!(
        got,
        [
            "ok  QUIT :x",
            "k  JOIN #evil: v  PRIVMSG ana :spoof",
            "first",
            "QUIT :bye still first"
        ]
    );
    // still connected: the next reply arrives
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "still here")).await.unwrap();
    assert_eq!(ana.next(WAIT).await.expect("still connected").text, "still here");
    assert!(!bot.task.is_finished());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn long_multibyte_reply_is_split_into_lines_that_fit() {
    let Some(srv) = Ngircd::start().await else { return };
    let bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    let mut text = String::new();
    while text.len() < 3000 {
        text.push_str("部署完成🚀服务重启👍🏽");
    }
    bot.adapter.post(&room(), &Reply::text(Tone::Info, text.clone())).await.unwrap();
    let mut joined = String::new();
    let mut lines = 0;
    while joined.len() < text.len() {
        let l = ana.next_line(WAIT).await.expect("a piece of the long reply");
        // what ana received fits, and would fit with a 63-byte host instead of 127.0.0.1
        assert!(l.wire_len <= 512, "line of {} bytes", l.wire_len);
        assert!(
            l.wire_len + (63 - "127.0.0.1".len()) <= 512,
            "no room for a long host: {}",
            l.wire_len
        );
        joined.push_str(&l.raw_text);
        lines += 1;
    }
    assert_eq!(joined, text);
    assert!(lines >= 8, "3000 bytes need at least 8 lines, got {lines}");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_200_posts_arrives_in_order() {
    let Some(srv) = Ngircd::start().await else { return };
    let bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    for i in 0..200 {
        bot.adapter
            .post(&room(), &Reply::text(Tone::Info, format!("msg {i}")))
            .await
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(ana.next(WAIT).await.expect("all 200 arrive").text, format!("msg {i}"));
    }
    // Many replies at once (a burst of PONGs) go out in one write, whole and in order.
    let replies: Vec<Reply> = (0..50).map(|i| Reply::text(Tone::Info, format!("batch {i}"))).collect();
    bot.adapter.post_all(&room(), &replies).await.unwrap();
    for i in 0..50 {
        assert_eq!(ana.next(WAIT).await.expect("all 50 arrive").text, format!("batch {i}"));
    }
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn reconnects_after_the_server_comes_back() {
    let adapter = Arc::new(IrcAdapter::new("irc", config(1)).unwrap());
    // not connected yet: posts wait in the outbox
    assert!(matches!(
        adapter.post(&room(), &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Unavailable(_))
    ));

    let Some(mut srv) = Ngircd::start().await else { return };
    let adapter = Arc::new(IrcAdapter::new("irc", config(srv.port())).unwrap());
    let bot = Running::spawn(adapter.clone());
    bot.connected().await;
    srv.stop().await;
    let r = tokio::time::timeout(WAIT, bot.task)
        .await
        .expect("run() ends when the server dies")
        .unwrap();
    assert!(r.is_err(), "a lost connection is an error: {r:?}");
    assert!(matches!(
        adapter.post(&room(), &Reply::text(Tone::Info, "x")).await,
        Err(SendError::Unavailable(_))
    ));

    srv.start().await.unwrap();
    let bot = Running::spawn(adapter.clone());
    bot.connected().await;
    let mut ana = user(&srv, "ana").await;
    adapter.post(&room(), &Reply::text(Tone::Info, "back")).await.unwrap();
    assert_eq!(ana.next(WAIT).await.expect("a reply after reconnecting").text, "back");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn nick_collision_takes_an_underscore_and_answers_to_it() {
    let Some(srv) = Ngircd::start().await else { return };
    let _squatter = IrcUser::connect(srv.port(), "opsbot", "squat", None).await.expect("squatter");
    let mut bot = start(config(srv.port())).await;
    assert_eq!(bot.adapter.current_nick(), "opsbot_");
    let mut ana = user(&srv, "ana").await;
    ana.set_bot_nick("opsbot_");
    ana.say("#ops", "opsbot_: help").await.unwrap();
    let e = bot.next().await;
    assert!(e.mentioned);
    assert_eq!(e.text, "help");
    ana.say("#ops", "opsbot: help").await.unwrap();
    let e = bot.next().await;
    assert!(!e.mentioned, "the squatter's nick is not a mention of the bot");
    ana.dm("ping").await.unwrap();
    let e = bot.next().await;
    assert!(e.direct);
    bot.adapter.post(&e.place, &Reply::text(Tone::Info, "pong")).await.unwrap();
    let l = ana.next_line(WAIT).await.expect("answer");
    assert_eq!((l.from.as_str(), l.text.as_str()), ("opsbot_", "pong"));
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_utf8_from_a_user_is_decoded_lossily() {
    let Some(srv) = Ngircd::start().await else { return };
    let mut bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    ana.send_raw(b"PRIVMSG #ops :opsbot: caf\xe9 \xff\xfe ok").await.unwrap();
    let e = bot.next().await;
    assert!(e.mentioned);
    assert!(
        e.text.starts_with("caf") && e.text.ends_with("ok") && e.text.contains('\u{fffd}'),
        "{:?}",
        e.text
    );
    ana.say("#ops", "opsbot: still there").await.unwrap();
    assert_eq!(bot.next().await.text, "still there");
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn tls_with_a_private_ca() {
    let Some(srv) = Ngircd::start_tls().await else { return };
    let mut cfg = config(srv.tls_port().expect("a TLS port"));
    cfg.tls = true;
    cfg.tls_ca = srv.ca_path();
    let mut bot = start(cfg.clone()).await;
    let mut ana = user(&srv, "ana").await;
    ana.say("#ops", "opsbot: over tls").await.unwrap();
    assert_eq!(bot.next().await.text, "over tls");
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "secure")).await.unwrap();
    assert_eq!(ana.next(WAIT).await.expect("reply over TLS").text, "secure");
    bot.stop().await.unwrap();

    // without the CA the certificate is refused, with a clear reason
    cfg.tls_ca = None;
    let a = IrcAdapter::new("irc", cfg).unwrap();
    let (ctx, _inbox, _stop) = AdapterContext::standalone();
    let err = tokio::time::timeout(WAIT, a.run(&ctx)).await.unwrap().unwrap_err();
    assert!(err.contains("TLS"), "{err}");
}

// ---- a scripted server, for what ngIRCd does not offer ----

/// One accepted connection of the scripted server: read lines, send lines.
struct Fake {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Fake {
    async fn listen() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = l.local_addr().unwrap().port();
        (l, p)
    }

    async fn accept(l: &TcpListener) -> Fake {
        let (s, _) = tokio::time::timeout(WAIT, l.accept()).await.expect("the adapter connects").unwrap();
        let (r, w) = s.into_split();
        Fake {
            lines: BufReader::new(r).lines(),
            w,
        }
    }

    /// The next line from the adapter.
    async fn recv(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line from the adapter in time")
            .unwrap()
            .expect("the adapter keeps the connection")
    }

    /// Reads until a line starting with `prefix`, returning it.
    async fn expect(&mut self, prefix: &str) -> String {
        loop {
            let l = self.recv().await;
            if l.starts_with(prefix) {
                return l;
            }
        }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.w.write_all(raw).await.unwrap();
    }

    async fn line(&mut self, l: &str) {
        self.send(format!("{l}\r\n").as_bytes()).await;
    }

    /// Registration up to the welcome, for a server without capabilities.
    async fn welcome(&mut self) {
        self.expect("NICK ").await;
        self.expect("USER ").await;
        self.line(":fake 001 opsbot :Welcome").await;
    }

    /// Waits for the bot's `JOIN #ops` and confirms it.
    async fn join_ops(&mut self) {
        assert_eq!(self.expect("JOIN").await, "JOIN #ops");
        self.line(":opsbot!u@h JOIN #ops").await;
    }

    /// Asserts the adapter sends nothing for `d`.
    async fn silent_for(&mut self, d: Duration) {
        if let Ok(l) = tokio::time::timeout(d, self.lines.next_line()).await {
            panic!("expected silence, got {l:?}");
        }
    }
}

#[tokio::test]
async fn sasl_plain_nickserv_and_account_tags() {
    let (l, port) = Fake::listen().await;
    let mut cfg = config(port);
    cfg.sasl_user = Some("opsbot-acct".into());
    cfg.sasl_password = Some("s3cret".into());
    cfg.nickserv_password = Some("ns-pass".into());
    cfg.channels = vec!["#ops".into(), "#keyed sesame".into()];
    let mut bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg).unwrap()));
    let mut f = Fake::accept(&l).await;
    assert_eq!(f.recv().await, "CAP LS 302");
    f.expect("USER ").await;
    f.line(":fake CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL").await;
    f.line(":fake CAP * LS :account-tag message-tags extended-join").await;
    assert_eq!(f.recv().await, "CAP REQ :sasl account-tag extended-join message-tags");
    f.line(":fake CAP * ACK :sasl account-tag extended-join message-tags").await;
    assert_eq!(f.recv().await, "AUTHENTICATE PLAIN");
    f.line("AUTHENTICATE +").await;
    let auth = f.recv().await;
    let b64 = auth.strip_prefix("AUTHENTICATE ").expect("credentials");
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(raw, b"opsbot-acct\0opsbot-acct\0s3cret");
    f.line(":fake 900 opsbot opsbot!u@h opsbot-acct :You are now logged in as opsbot-acct")
        .await;
    f.line(":fake 903 opsbot :SASL authentication successful").await;
    assert_eq!(f.recv().await, "CAP END");
    f.line(":fake 001 opsbot :Welcome").await;
    // logged in with SASL: the NickServ password is not sent anywhere
    assert_eq!(f.recv().await, "JOIN #ops");
    assert_eq!(f.recv().await, "JOIN #keyed sesame");
    bot.connected().await;

    f.line("@account=ana;time=2026-01-01T00:00:00Z :ana!~ana@cloak/ana PRIVMSG #ops :opsbot: deploy")
        .await;
    let e = bot.next().await;
    assert_eq!(e.user.id, "account:ana");
    assert_eq!(e.display_name.as_deref(), Some("ana"));
    assert_eq!(e.text, "deploy");
    f.line("@account=* :bob!b@host PRIVMSG opsbot :hi").await;
    let e = bot.next().await;
    assert_eq!(e.user.id, "bob!b@host", "`*` is no account");
    assert!(e.direct);

    // PING, a kick (rejoin, with the key), shutdown with QUIT
    f.line("PING :tok123").await;
    assert_eq!(f.expect("PONG").await, "PONG :tok123");
    f.line(":op!o@h KICK #keyed opsbot :out").await;
    assert_eq!(f.expect("JOIN").await, "JOIN #keyed sesame");
    let _ = bot.stop.send(true);
    assert_eq!(f.expect("QUIT").await, "QUIT :bye");
    assert_eq!(tokio::time::timeout(WAIT, bot.task).await.unwrap().unwrap(), Ok(()));
}

#[tokio::test]
async fn sasl_failure_is_a_clear_error() {
    let (l, port) = Fake::listen().await;
    let mut cfg = config(port);
    cfg.sasl_user = Some("opsbot".into());
    cfg.sasl_password = Some("wrong".into());
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg.clone()).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.expect("USER ").await;
    f.line(":fake CAP * LS :sasl").await;
    assert_eq!(f.recv().await, "CAP REQ :sasl");
    f.line(":fake CAP * ACK :sasl").await;
    f.expect("AUTHENTICATE PLAIN").await;
    f.line("AUTHENTICATE +").await;
    f.expect("AUTHENTICATE ").await;
    f.line(":fake 904 opsbot :SASL authentication failed").await;
    let err = tokio::time::timeout(WAIT, bot.task).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("SASL") && err.contains("authentication failed"), "{err}");

    // a server without SASL: refused before sending the password anywhere
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.expect("USER ").await;
    f.line(":fake CAP * LS :multi-prefix").await;
    let err = tokio::time::timeout(WAIT, bot.task).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("does not offer SASL"), "{err}");
}

#[tokio::test]
async fn malformed_lines_are_skipped_and_the_connection_kept() {
    let (l, port) = Fake::listen().await;
    let mut bot = Running::spawn(Arc::new(IrcAdapter::new("irc", config(port)).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.welcome().await;
    f.join_ops().await;
    bot.connected().await;
    f.send(b"\r\n:\r\n@\r\n:only-a-prefix\r\n\xff\xfe\x00 garbage \x01\r\nPRIVMSG\r\n:x!y@z PRIVMSG\r\n")
        .await;
    // an over-long line, in pieces, with no newline for more than 8 KiB
    let long = vec![b'a'; 6000];
    f.send(b":x!y@z PRIVMSG #ops :").await;
    f.send(&long).await;
    f.send(&long).await;
    f.send(b" tail of the long line\r\n").await;
    f.send(b":ana!a@h PRIVMSG #ops :opsbot: caf\xe9 ok\r\n").await;
    let e = bot.next().await;
    assert_eq!(e.text, "caf\u{fffd} ok");
    assert!(!bot.task.is_finished());
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "alive")).await.unwrap();
    assert_eq!(f.expect("PRIVMSG").await, "PRIVMSG #ops :alive");
    // the server's ERROR ends the connection with the reason
    f.line("ERROR :Closing Link: bye").await;
    let err = tokio::time::timeout(WAIT, bot.task).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("Closing Link"), "{err}");
}

#[tokio::test]
async fn server_eof_during_registration_is_an_error() {
    let (l, port) = Fake::listen().await;
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", config(port)).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.expect("USER ").await;
    drop(f);
    let err = tokio::time::timeout(WAIT, bot.task).await.unwrap().unwrap().unwrap_err();
    assert!(err.contains("closed"), "{err}");
}

#[tokio::test]
async fn the_chat_server_trait_and_its_adapter_toml_work_together() {
    let Some(srv) = Ngircd::start().await else { return };
    let mut srv: Box<dyn ChatServer> = Box::new(srv);
    let (body, env) = srv.adapter_toml();
    assert!(env.is_empty());
    let text = format!("[jobs.hello]\nrunner = {{ type = \"exec\", argv = [\"true\"] }}\n\n[adapters.irc]\n{body}");
    let cfg = opsbot_core::config::Config::parse(&text, std::path::Path::new("/tmp/opsbot-irc-test.toml"), Default::default())
        .unwrap_or_else(|e| panic!("adapter_toml() is a valid adapter table: {e:?}"));
    let adapter = opsbot_adapters::build(&cfg.adapters[0], &[]).expect("the adapter builds");
    let (ctx, mut inbox, stop) = AdapterContext::standalone();
    let (a, c) = (adapter.clone(), ctx.clone());
    let task = tokio::spawn(async move { a.run(&c).await });
    while !ctx.is_connected() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut bob = srv.user("bob").await.unwrap();
    bob.say(&srv.room(), "opsbot: ping").await.unwrap();
    let e = tokio::time::timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(e.place.channel, srv.room_channel());
    assert_eq!(e.user.id, bob.account());
    adapter.post(&e.place, &Reply::text(Tone::Success, "pong")).await.unwrap();
    let h = bob.next(WAIT).await.expect("the answer");
    assert_eq!((h.room, h.text.as_str()), (Some(srv.room()), "pong"));
    bob.dm("hi").await.unwrap();
    let e = tokio::time::timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert!(e.direct);

    srv.stop().await;
    assert!(tokio::time::timeout(WAIT, task).await.unwrap().unwrap().is_err());
    srv.start().await.unwrap();
    let (a, c) = (adapter.clone(), ctx.clone());
    let task = tokio::spawn(async move { a.run(&c).await });
    let mut bob = srv.user("bob").await.unwrap();
    let t = tokio::time::Instant::now();
    while adapter
        .post(&Place::new("irc", "#ops"), &Reply::text(Tone::Info, "back"))
        .await
        .is_err()
    {
        assert!(t.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // bob may have joined before the bot: the line arrives either way
    assert_eq!(bob.next(WAIT).await.expect("after restart").text, "back");
    let _ = stop.send(true);
    assert_eq!(tokio::time::timeout(WAIT, task).await.unwrap().unwrap(), Ok(()));
}

#[tokio::test]
async fn a_direct_reply_never_goes_to_whoever_took_the_nick() {
    let Some(srv) = Ngircd::start().await else { return };
    let mut bot = start(config(srv.port())).await;
    let mut ana = user(&srv, "ana").await;
    ana.dm("status").await.unwrap();
    let place = bot.next().await.place;
    assert_eq!(place.channel, "ana!~ana@127.0.0.1");
    // while Ana holds her nick, the answer arrives
    bot.adapter.post(&place, &Reply::text(Tone::Info, "for ana")).await.unwrap();
    assert_eq!(ana.next(WAIT).await.expect("Ana's answer").text, "for ana");

    // Ana leaves; Mallory takes the nick `ana` with another user name
    ana.send_raw(b"QUIT :bye").await.unwrap();
    let t = tokio::time::Instant::now();
    let mut mallory = loop {
        match IrcUser::connect(srv.port(), "ana", "mallory", None).await {
            Ok(m) => break m,
            Err(e) => {
                assert!(t.elapsed() < WAIT, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let r = bot.adapter.post(&place, &Reply::text(Tone::Info, "job card for ana")).await;
    assert!(
        matches!(&r, Err(SendError::Rejected(m)) if m.contains("left or changed nick")),
        "{r:?}"
    );
    assert!(
        mallory.next_line(Duration::from_secs(1)).await.is_none(),
        "Mallory receives nothing"
    );

    // nobody holds the nick: dropped as well
    mallory.send_raw(b"NICK notana").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = bot.adapter.post(&place, &Reply::text(Tone::Info, "x")).await;
    assert!(matches!(r, Err(SendError::Rejected(_))), "{r:?}");
    // a bare nick is no direct place
    let r = bot.adapter.post(&Place::new("irc", "ana"), &Reply::text(Tone::Info, "x")).await;
    assert!(matches!(r, Err(SendError::Rejected(_))), "{r:?}");
    assert!(mallory.next_line(Duration::from_millis(500)).await.is_none());
    bot.stop().await.unwrap();
}

#[tokio::test]
async fn nickserv_gets_the_password_only_when_it_is_a_network_service() {
    let (l, port) = Fake::listen().await;
    let mut cfg = config(port);
    cfg.nickserv_password = Some("ns-pass".into());

    // an impostor holding the nick NickServ on an ordinary server: no IDENTIFY
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg.clone()).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.welcome().await;
    assert_eq!(f.recv().await, "WHOIS NickServ");
    assert_eq!(f.recv().await, "JOIN #ops");
    f.line(":fake 311 opsbot NickServ mallory evil.host * :NickServ").await;
    f.line(":fake 312 opsbot NickServ irc.example.net :A server").await;
    f.line(":fake 318 opsbot NickServ :End of /WHOIS list.").await;
    f.line("PING :after-whois").await;
    assert_eq!(f.recv().await, "PONG :after-whois", "nothing (no IDENTIFY) before the PONG");
    let _ = bot.stop.send(true);
    assert_eq!(f.recv().await, "QUIT :bye");
    drop(f);

    // no NickServ at all: no IDENTIFY
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg.clone()).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.welcome().await;
    assert_eq!(f.recv().await, "WHOIS NickServ");
    f.line(":fake 401 opsbot NickServ :No such nick/channel").await;
    f.line("PING :x").await;
    assert_eq!(f.expect("P").await, "PONG :x");
    let _ = bot.stop.send(true);
    assert_eq!(f.recv().await, "QUIT :bye");
    drop(f);

    // NickServ on the services server: identified
    for confirm in [
        ":fake 312 opsbot NickServ services.example.net :Services",
        ":fake 320 opsbot NickServ :is a Network Service",
        ":fake 313 opsbot NickServ :is a Network Service",
    ] {
        let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", cfg.clone()).unwrap()));
        let mut f = Fake::accept(&l).await;
        f.welcome().await;
        assert_eq!(f.recv().await, "WHOIS NickServ");
        f.line(":fake 311 opsbot NickServ NickServ services. * :Nickname Services").await;
        f.line(confirm).await;
        f.line(":fake 318 opsbot NickServ :End of /WHOIS list.").await;
        assert_eq!(f.expect("PRIVMSG").await, "PRIVMSG NickServ :IDENTIFY opsbot ns-pass", "{confirm}");
        let _ = bot.stop.send(true);
        f.expect("QUIT").await;
    }
}

#[tokio::test]
async fn replies_to_a_channel_wait_until_the_bot_is_in_it() {
    let (l, port) = Fake::listen().await;
    let bot = Running::spawn(Arc::new(IrcAdapter::new("irc", config(port)).unwrap()));
    let mut f = Fake::accept(&l).await;
    f.welcome().await;
    assert_eq!(f.recv().await, "JOIN #ops");
    bot.connected().await;
    // the join is not confirmed yet: the reply waits for it
    let a = bot.adapter.clone();
    let post = tokio::spawn(async move { a.post(&room(), &Reply::text(Tone::Info, "one")).await });
    f.silent_for(Duration::from_millis(500)).await;
    f.line(":opsbot!u@h JOIN #ops").await;
    assert_eq!(f.recv().await, "PRIVMSG #ops :one");
    post.await.unwrap().unwrap();

    // kicked: nothing is written into the channel until the bot is back in it
    f.line(":op!o@h KICK #ops opsbot :out").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = bot.adapter.clone();
    let post = tokio::spawn(async move { a.post(&room(), &Reply::text(Tone::Info, "two")).await });
    assert_eq!(f.recv().await, "JOIN #ops", "the rejoin comes before the reply");
    f.line(":opsbot!u@h JOIN #ops").await;
    assert_eq!(f.recv().await, "PRIVMSG #ops :two");
    post.await.unwrap().unwrap();

    // kicked and banned: the reply is Unavailable (it stays in the outbox) and nothing is sent
    f.line(":op!o@h KICK #ops opsbot :out").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = bot.adapter.clone();
    let post = tokio::spawn(async move { a.post(&room(), &Reply::text(Tone::Info, "three")).await });
    assert_eq!(f.recv().await, "JOIN #ops");
    f.line(":fake 474 opsbot #ops :Cannot join channel (+b)").await;
    let r = post.await.unwrap();
    assert!(matches!(&r, Err(SendError::Unavailable(m)) if m.contains("not in #ops")), "{r:?}");
    // a channel the bot does not join is refused at once
    let r = bot
        .adapter
        .post(&Place::new("irc", "#elsewhere"), &Reply::text(Tone::Info, "x"))
        .await;
    assert!(matches!(r, Err(SendError::Rejected(_))), "{r:?}");
    f.line("PING :end").await;
    assert_eq!(f.recv().await, "PONG :end", "no PRIVMSG was written while out of the channel");
    bot.stop().await.unwrap();
}
