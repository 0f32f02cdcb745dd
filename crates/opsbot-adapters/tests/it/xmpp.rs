//! The XMPP adapter against a real Prosody (opsbot-testkit): sign-in, rooms (real JIDs, no
//! history, nick conflicts), direct messages, posts and XEP-0308 corrections seen by a person's
//! client, long and oversized messages, malformed stanzas, reconnects, a burst of posts.

use opsbot_adapters::xmpp::XmppAdapter;
use opsbot_core::config::XmppConfig;
use opsbot_core::{Adapter, Place, Reply, SendError, Tone};
use opsbot_testkit::xmpp::{BOT_JID, BOT_PASSWORD, Prosody, ROOM, USER_PASSWORD, XmppUser};
use opsbot_testkit::{ChatServer, ChatUser, Heard};
use std::sync::Arc;
use std::time::Duration;

use crate::running::WAIT;

fn config(port: u16) -> XmppConfig {
    XmppConfig {
        jid: BOT_JID.into(),
        password: BOT_PASSWORD.into(),
        server: Some(format!("127.0.0.1:{port}")),
        rooms: vec![ROOM.into()],
        nick: None,
        allow_plain: true,
        tls_ca: None,
    }
}

async fn server() -> Option<Prosody> {
    Prosody::start_new().await.expect("Prosody starts")
}

type Running = crate::running::Running<XmppAdapter>;

/// Starts the adapter on `cfg` and waits until it is connected.
async fn start(cfg: XmppConfig) -> Running {
    Running::spawn_connected(Arc::new(XmppAdapter::new("xmpp", cfg).expect("adapter"))).await
}

async fn heard(user: &mut XmppUser) -> Heard {
    user.next(WAIT).await.expect("the user hears the bot")
}

fn room() -> Place {
    Place::new("xmpp", ROOM)
}

#[tokio::test]
async fn room_and_direct_messages_become_envelopes() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "Alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;

    alice.say(ROOM, "opsbot: deploy web").await.unwrap();
    let env = bot.next().await;
    assert_eq!(env.user.platform, "xmpp");
    assert_eq!(
        env.user.id, "alice@test.local",
        "the real JID of a non-anonymous room, not the nick"
    );
    assert_eq!(env.display_name.as_deref(), Some("Alice"));
    assert_eq!(env.place, room());
    assert!(!env.direct);
    assert!(env.mentioned);
    assert_eq!(env.text, "deploy web");

    alice.say(ROOM, "!status").await.unwrap();
    let env = bot.next().await;
    assert!(!env.mentioned);
    assert_eq!(env.text, "!status");

    alice.dm("status please").await.unwrap();
    let env = bot.next().await;
    assert!(env.direct);
    assert_eq!(env.user.id, "alice@test.local");
    assert_eq!(env.place, Place::new("xmpp", "alice@test.local"));
    assert_eq!(env.display_name.as_deref(), Some("alice"));
    assert_eq!(env.text, "status please");

    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn posts_and_corrections_reach_the_user() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    let caps = bot.adapter.capabilities();
    assert!(caps.edit && caps.direct && !caps.buttons && !caps.threads);

    let card = Reply::text(Tone::Progress, "deploy web: running").card(7);
    let posted = bot.adapter.post(&room(), &card).await.expect("posted");
    let id = posted.id.expect("an id to correct later");
    let h = heard(&mut alice).await;
    assert_eq!(h.room.as_deref(), Some(ROOM));
    assert_eq!(h.id.as_deref(), Some(id.as_str()));
    assert!(h.text.contains("deploy web: running"), "{h:?}");
    assert_eq!(h.replaces, None);

    bot.adapter
        .edit(&room(), &id, &Reply::text(Tone::Success, "deploy web: done").card(7))
        .await
        .expect("edited");
    let h = heard(&mut alice).await;
    assert_eq!(h.replaces.as_deref(), Some(id.as_str()), "a XEP-0308 correction of the original");
    assert!(h.text.contains("deploy web: done"), "{h:?}");
    assert_ne!(h.id.as_deref(), Some(id.as_str()), "the correction has its own id");

    // A second correction still names the original.
    bot.adapter
        .edit(&room(), &id, &Reply::text(Tone::Success, "deploy web: done (2)").card(7))
        .await
        .expect("edited");
    assert_eq!(heard(&mut alice).await.replaces.as_deref(), Some(id.as_str()));

    // Direct.
    let dm = Place::new("xmpp", "alice@test.local");
    bot.adapter.post(&dm, &Reply::text(Tone::Info, "just you")).await.expect("posted");
    let h = heard(&mut alice).await;
    assert_eq!(h.room, None);
    assert!(h.text.contains("just you"));

    // The bot's own messages reflected by the room never come back as envelopes.
    alice.say(ROOM, "marker").await.unwrap();
    assert_eq!(bot.next().await.text, "marker");
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_long_reply_arrives_whole() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let bot = start(config(server.port())).await;

    let lines: Vec<String> = (0..3000).map(|i| format!("line {i:04} {}", "x".repeat(40))).collect();
    let reply = Reply::new(Tone::Info).code(lines.join("\n"));
    bot.adapter.post(&room(), &reply).await.expect("posted");
    let mut got = String::new();
    let mut parts = 0;
    while !got.contains("line 2999") {
        let h = heard(&mut alice).await;
        parts += 1;
        if !got.is_empty() {
            got.push('\n');
        }
        got.push_str(&h.text);
    }
    assert!(parts > 1, "150 KB is split");
    let expect = opsbot_adapters::plain(&reply);
    assert_eq!(got.trim_end(), expect.trim_end());
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn joining_replays_no_history() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    for i in 0..5 {
        alice.say(ROOM, &format!("old message {i}")).await.unwrap();
    }
    let mut bot = start(config(server.port())).await;
    alice.say(ROOM, "new message").await.unwrap();
    let env = bot.next().await;
    assert_eq!(env.text, "new message", "no history replayed to the bot");
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_taken_nick_gets_an_underscore() {
    let Some(server) = server().await else { return };
    let mut squatter = server.user_with_nick("mallory", "opsbot").await.expect("mallory");
    let mut bot = start(config(server.port())).await;
    squatter.say(ROOM, "opsbot_: hello").await.unwrap();
    let env = bot.next().await;
    assert!(env.mentioned);
    assert_eq!(env.text, "hello");
    assert_eq!(env.user.id, "mallory@test.local");
    // Mentioning the squatter's nick is not mentioning the bot.
    squatter.say(ROOM, "opsbot: who am I").await.unwrap();
    let env = bot.next().await;
    assert!(!env.mentioned);
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "hi")).await.expect("posted");
    assert!(heard(&mut squatter).await.text.contains("hi"));
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_server_without_starttls_is_refused_unless_allowed() {
    let Some(server) = server().await else { return };
    let mut cfg = config(server.port());
    cfg.allow_plain = false;
    let bot = Running::spawn(Arc::new(XmppAdapter::new("xmpp", cfg).expect("adapter")));
    let res = tokio::time::timeout(WAIT, bot.task).await.expect("run() ends").expect("no panic");
    let err = res.expect_err("refused");
    assert!(err.contains("offers no STARTTLS") && err.contains("allow_plain"), "{err}");
    assert!(!bot.ctx.is_connected());
}

#[tokio::test]
async fn a_wrong_password_is_an_error() {
    let Some(server) = server().await else { return };
    let mut cfg = config(server.port());
    cfg.password = "wrong".into();
    let bot = Running::spawn(Arc::new(XmppAdapter::new("xmpp", cfg).expect("adapter")));
    let res = tokio::time::timeout(WAIT, bot.task).await.expect("run() ends").expect("no panic");
    let err = res.expect_err("refused");
    assert!(err.contains("sign-in"), "{err}");
}

#[tokio::test]
async fn reconnects_after_the_server_comes_back() {
    let Some(mut server) = server().await else { return };
    let adapter = Arc::new(XmppAdapter::new("xmpp", config(server.port())).expect("adapter"));
    // Never connected yet: posts wait.
    let early = adapter.post(&room(), &Reply::text(Tone::Info, "early")).await;
    assert!(matches!(early, Err(SendError::Unavailable(_))), "{early:?}");

    let bot = Running::spawn(adapter.clone());
    bot.connected().await;
    server.stop().await;
    let res = tokio::time::timeout(WAIT, bot.task).await.expect("run() ends").expect("no panic");
    assert!(res.is_err(), "a dead server is an error: {res:?}");
    let during = adapter.post(&room(), &Reply::text(Tone::Info, "during")).await;
    assert!(matches!(during, Err(SendError::Unavailable(_))), "{during:?}");

    server.start().await.expect("restarted");
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = Running::spawn(adapter.clone());
    bot.connected().await;
    alice.say(ROOM, "opsbot: back?").await.unwrap();
    assert_eq!(bot.next().await.text, "back?");
    adapter.post(&room(), &Reply::text(Tone::Info, "back")).await.expect("posted");
    assert!(heard(&mut alice).await.text.contains("back"));
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn malformed_and_unknown_stanzas_are_skipped() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    let full = format!("{BOT_JID}/opsbot");
    // A message type xmpp-parsers refuses, an unknown request, unknown payloads, a delayed
    // (offline/history) message: none may cost the connection, none becomes an envelope.
    alice
        .send_raw(&format!(
            "<message to='{full}' type='bogus' id='m1'><body>bad type</body></message>"
        ))
        .await
        .unwrap();
    alice
        .send_raw(&format!(
            "<iq to='{full}' type='get' id='q1'><query xmlns='urn:example:nothing'/></iq>"
        ))
        .await
        .unwrap();
    alice.send_raw(&format!("<iq to='{full}' type='get' id='q2'/>")).await.unwrap();
    alice
        .send_raw(&format!(
            "<message to='{full}' type='chat' id='m2'><body>old</body><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/></message>"
        ))
        .await
        .unwrap();
    alice
        .send_raw(&format!(
            "<message to='{full}' type='chat' id='m3'><body>with extras</body><weird xmlns='urn:example:w'><deep a='1'>x</deep></weird></message>"
        ))
        .await
        .unwrap();
    alice.dm("still there?").await.unwrap();
    let first = bot.next().await;
    let second = bot.next().await;
    assert_eq!(first.text, "with extras", "an unknown payload is ignored, the message kept");
    assert_eq!(second.text, "still there?");
    assert!(!bot.task.is_finished());
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "yes")).await.expect("posted");
    assert!(heard(&mut alice).await.text.contains("yes"));
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_200_kb_message_does_not_disconnect() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    let big = "y".repeat(200 * 1024);
    alice.dm(&big).await.unwrap();
    alice.say(ROOM, &format!("opsbot: {big}")).await.unwrap();
    alice.dm("after").await.unwrap();
    assert_eq!(bot.next().await.text, "after", "oversized bodies are skipped");
    assert!(!bot.task.is_finished());
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "alive")).await.expect("posted");
    assert!(heard(&mut alice).await.text.contains("alive"));
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_burst_of_200_posts_arrives_in_order() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let bot = start(config(server.port())).await;
    for i in 0..200 {
        bot.adapter
            .post(&room(), &Reply::text(Tone::Info, format!("n{i}")))
            .await
            .expect("posted");
    }
    for i in 0..200 {
        let h = heard(&mut alice).await;
        assert_eq!(h.text.trim(), format!("n{i}"));
    }
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn stopping_leaves_and_later_posts_wait() {
    let Some(server) = server().await else { return };
    let bot = start(config(server.port())).await;
    let adapter = bot.adapter.clone();
    assert_eq!(bot.stop().await, Ok(()));
    let after = adapter.post(&room(), &Reply::text(Tone::Info, "late")).await;
    assert!(matches!(after, Err(SendError::Unavailable(_))), "{after:?}");
}

#[tokio::test]
async fn the_testkit_server_config_is_consistent() {
    let Some(server) = server().await else { return };
    let (toml, env) = server.adapter_toml();
    assert!(toml.contains("type = \"xmpp\"") && toml.contains(&format!("127.0.0.1:{}", server.port())));
    assert_eq!(env, vec![("OPSBOT_TEST_XMPP_PASSWORD".to_string(), BOT_PASSWORD.to_string())]);
    assert_eq!(server.room(), ROOM);
    assert_eq!(server.room_channel(), ROOM);
}

#[tokio::test]
async fn starttls_with_a_private_ca() {
    let Some(server) = Prosody::start_new_tls().await.expect("Prosody starts") else {
        return;
    };
    let ca = server.ca_pem().expect("a CA file");
    let mut cfg = config(server.port());
    cfg.allow_plain = false;
    cfg.tls_ca = Some(ca);
    // allow_plain = false: connecting at all proves STARTTLS, with our CA trusted.
    // (The testkit's user speaks plain TCP only, so nobody listens here; the room join and a
    // post going through are what can be seen.)
    let bot = start(cfg).await;
    bot.adapter
        .post(&room(), &Reply::text(Tone::Info, "over TLS"))
        .await
        .expect("posted");
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn starttls_refuses_an_untrusted_certificate() {
    let Some(server) = Prosody::start_new_tls().await.expect("Prosody starts") else {
        return;
    };
    let mut cfg = config(server.port());
    cfg.allow_plain = false;
    let bot = Running::spawn(Arc::new(XmppAdapter::new("xmpp", cfg).expect("adapter")));
    let res = tokio::time::timeout(WAIT, bot.task).await.expect("run() ends").expect("no panic");
    let err = res.expect_err("refused");
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
}

/// The conformance suite's black-box client (slixmpp) against the adapter: a second, real
/// client library that must understand what the adapter sends (room messages, corrections).
#[tokio::test]
async fn the_blackbox_slixmpp_client_talks_to_the_adapter() {
    let Some(server) = server().await else { return };
    let venv_python = opsbot_testkit::chat_venv().join("bin/python");
    let Some(python) = opsbot_testkit::require("the chat venv (slixmpp)", "OPSBOT_CHAT_PYTHON", &[&venv_python.to_string_lossy()]) else {
        return;
    };
    server.register("pyuser", "pypass").expect("pyuser");
    let mut bot = start(config(server.port())).await;
    let adapter = bot.adapter.clone();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../opsbot/tests/blackbox/xmpp_client.py");
    let run = |dm: bool| {
        let mut cmd = tokio::process::Command::new(&python);
        cmd.arg(&script).args([
            "--jid",
            "pyuser@test.local",
            "--password",
            "pypass",
            "--host",
            "127.0.0.1",
            "--port",
            &server.port().to_string(),
            "--room",
            ROOM,
            "--nick",
            "py",
            "--text",
            "opsbot: ping",
            "--regex",
            "^done: ping$",
            "--timeout",
            "20",
        ]);
        if dm {
            cmd.arg("--dm");
        }
        cmd.kill_on_drop(true).output()
    };
    for dm in [false, true] {
        let child = tokio::spawn(run(dm));
        let env = bot.next().await;
        assert_eq!(env.text, "ping");
        assert_eq!(env.user.id, "pyuser@test.local");
        assert_eq!(env.direct, dm);
        let id = adapter
            .post(&env.place, &Reply::text(Tone::Progress, "working: ping"))
            .await
            .expect("posted")
            .id
            .expect("id");
        adapter
            .edit(&env.place, &id, &Reply::text(Tone::Success, "done: ping"))
            .await
            .expect("corrected");
        let out = child.await.expect("joined").expect("the script runs");
        assert!(
            out.status.success(),
            "xmpp_client.py failed (dm = {dm}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "done: ping");
    }
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_kicked_bot_stays_connected_and_room_posts_wait() {
    let Some(server) = server().await else { return };
    // Alice creates the room, so she owns it and may kick.
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    alice
        .send_raw(&format!(
            "<iq type='set' to='{ROOM}' id='kick1'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='opsbot' role='none'/></query></iq>"
        ))
        .await
        .unwrap();
    // Once the room says the bot is out, room posts wait (Unavailable) instead of bouncing.
    let t = tokio::time::Instant::now();
    loop {
        match bot.adapter.post(&room(), &Reply::text(Tone::Info, "still here?")).await {
            Err(SendError::Unavailable(why)) => {
                assert!(why.contains("not in the room"), "{why}");
                break;
            }
            Ok(_) => {
                assert!(t.elapsed() < WAIT, "the kick never reached the bot");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // The connection itself is kept: direct messages still work both ways.
    alice.dm("are you there").await.unwrap();
    assert_eq!(bot.next().await.text, "are you there");
    let dm = Place::new("xmpp", "alice@test.local");
    bot.adapter
        .post(&dm, &Reply::text(Tone::Info, "yes, outside the room"))
        .await
        .expect("posted");
    let mut got = heard(&mut alice).await;
    while got.room.is_some() {
        got = heard(&mut alice).await;
    }
    assert!(got.text.contains("outside the room"));
    assert!(!bot.task.is_finished());
    assert_eq!(bot.stop().await, Ok(()));
}

#[tokio::test]
async fn a_semi_anonymous_room_gives_occupant_jids() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    // The owner makes the room semi-anonymous: only moderators see real JIDs (the bot is not one).
    let answer = alice
        .iq(
            &format!(
                "<iq type='set' to='{ROOM}' id='cfg1'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_whois'><value>moderators</value></field></x></query></iq>"
            ),
            "cfg1",
        )
        .await
        .expect("an answer");
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
    let mut bot = start(config(server.port())).await;
    alice.say(ROOM, "opsbot: who am I").await.unwrap();
    let env = bot.next().await;
    assert_eq!(env.user.id, format!("{ROOM}/alice"), "without a real JID: the occupant JID");
    assert_eq!(env.text, "who am I");
    assert_eq!(bot.stop().await, Ok(()));
}

/// Stanzas tokio-xmpp's parser cannot take (names or attribute values over 8 KiB are fatal to
/// it) are dropped before the parser by the adapter's guard: the connection stays.
#[tokio::test]
async fn hostile_stanzas_do_not_cost_the_connection() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    let long = "i".repeat(20_000);
    let deep = "<a>".repeat(200) + &"</a>".repeat(200);
    for hostile in [
        format!("<message to='{BOT_JID}' type='chat' id='{long}'><body>long id</body></message>"),
        format!("<message to='{BOT_JID}' type='chat'><body>long name</body><{long} xmlns='urn:x'/></message>"),
        format!("<message to='{BOT_JID}' type='chat'><body>long attribute name</body><x xmlns='urn:x' {long}='1'/></message>"),
        format!("<message to='{BOT_JID}' type='chat'><body>deep</body><x xmlns='urn:x'>{deep}</x></message>"),
        format!("<message to='{ROOM}' type='groupchat' id='{long}'><body>opsbot: long id in the room</body></message>"),
    ] {
        alice.send_raw(&hostile).await.unwrap();
    }
    alice.dm("after").await.unwrap();
    assert_eq!(bot.next().await.text, "after");
    assert!(!bot.task.is_finished());
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "alive")).await.expect("posted");
    assert!(heard(&mut alice).await.text.contains("alive"));
    assert_eq!(bot.stop().await, Ok(()));
}

/// Makes the room semi-anonymous: only moderators see real JIDs.
async fn semi_anonymous(owner: &mut XmppUser) {
    let answer = owner
        .iq(
            &format!(
                "<iq type='set' to='{ROOM}' id='cfg-whois'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\
                 <field var='muc#roomconfig_whois'><value>moderators</value></field></x></query></iq>"
            ),
            "cfg-whois",
        )
        .await
        .expect("an answer");
    assert_eq!(answer.attr("type"), Some("result"), "{answer:?}");
}

/// A muc#admin change by the room's owner, answered with a result.
async fn admin(owner: &mut XmppUser, id: &str, item: &str) {
    let answer = owner
        .iq(
            &format!("<iq type='set' to='{ROOM}' id='{id}'><query xmlns='http://jabber.org/protocol/muc#admin'>{item}</query></iq>"),
            id,
        )
        .await
        .expect("an answer");
    assert_eq!(answer.attr("type"), Some("result"), "{id}: {answer:?}");
}

/// The review's sequence: the bot, a moderator in a semi-anonymous room, learns that the nick
/// `ana` is ana@test.local; it is kicked; ana leaves and mallory takes the nick while the bot is
/// out; the bot rejoins as a plain participant. Mallory must not count as ana@test.local.
#[tokio::test]
async fn a_rejoined_bot_does_not_take_a_reused_nick_for_its_old_owner() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    semi_anonymous(&mut alice).await;
    let adapter = XmppAdapter::new("xmpp", config(server.port()))
        .expect("adapter")
        .with_rejoin_every(Duration::from_secs(2));
    let mut bot = Running::spawn(Arc::new(adapter));
    bot.connected().await;
    admin(&mut alice, "mod1", "<item nick='opsbot' role='moderator'/>").await;
    let mut ana = server.user_with_nick("ana", "ana").await.expect("ana");
    ana.say(ROOM, "opsbot: hello").await.unwrap();
    let env = bot.next().await;
    assert_eq!(env.user.id, "ana@test.local", "as a moderator the bot sees real JIDs");

    admin(&mut alice, "kick1", "<item nick='opsbot' role='none'/>").await;
    ana.quit().await;
    server.register("mallory", USER_PASSWORD).expect("mallory");
    let mut mallory = XmppUser::connect(server.port(), "mallory", USER_PASSWORD).await.expect("mallory");
    let t = tokio::time::Instant::now();
    while let Err(e) = mallory.join(ROOM, "ana").await {
        assert!(t.elapsed() < WAIT, "mallory cannot take the nick: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Messages said while the bot is out never reach it; the first one heard is after the rejoin.
    let env = loop {
        assert!(t.elapsed() < WAIT * 2, "the bot never came back");
        mallory.say(ROOM, "opsbot: deploy web").await.unwrap();
        if let Ok(Some(env)) = tokio::time::timeout(Duration::from_millis(500), bot.inbox.recv()).await {
            break env;
        }
    };
    assert_eq!(env.text, "deploy web");
    assert_eq!(env.user.id, format!("{ROOM}/ana"), "the occupant JID, not ana's account");
    assert_eq!(bot.stop().await, Ok(()));
}

/// Private messages through a room, carbon-wrapped messages and messages from the bot's own
/// account are no commands.
#[tokio::test]
async fn room_private_carbon_and_own_messages_are_ignored() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let mut bot = start(config(server.port())).await;
    let full = format!("{BOT_JID}/opsbot");
    // A private message to the bot's occupant JID (the room relays it from ops@.../alice).
    alice
        .message(&format!("{ROOM}/opsbot"), "chat", "opsbot: private deploy")
        .await
        .unwrap();
    // A carbon of somebody else's message, with a cover body of its own.
    alice
        .send_raw(&format!(
            "<message to='{full}' type='chat' id='c1'><body>cover</body><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' type='chat' from='boss@test.local/x' to='{BOT_JID}'><body>deploy web</body></message></forwarded></received></message>"
        ))
        .await
        .unwrap();
    // Another resource of the bot's own account.
    let mut twin = XmppUser::connect(server.port(), "opsbot", BOT_PASSWORD)
        .await
        .expect("the bot's account");
    twin.message(&full, "chat", "deploy from myself").await.unwrap();
    alice.dm("after").await.unwrap();
    assert_eq!(bot.next().await.text, "after", "nothing before it became an envelope");
    assert_eq!(bot.stop().await, Ok(()));
}

/// Banned while in the room: room posts are rejected at once and stay so across rejoins
/// (each refused with <forbidden/>), until the ban is lifted.
#[tokio::test]
async fn a_banned_bot_gets_room_posts_rejected() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    let adapter = XmppAdapter::new("xmpp", config(server.port()))
        .expect("adapter")
        .with_rejoin_every(Duration::from_secs(1));
    let bot = Running::spawn(Arc::new(adapter));
    bot.connected().await;
    bot.adapter.post(&room(), &Reply::text(Tone::Info, "hi")).await.expect("posted");
    admin(&mut alice, "ban1", &format!("<item jid='{BOT_JID}' affiliation='outcast'/>")).await;
    let t = tokio::time::Instant::now();
    loop {
        match bot.adapter.post(&room(), &Reply::text(Tone::Info, "still here?")).await {
            Err(SendError::Rejected(why)) => {
                assert!(why.contains("banned"), "{why}");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(t.elapsed() < WAIT, "the ban never reached the bot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Rejoins (every second here) are refused: still rejected.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let res = bot.adapter.post(&room(), &Reply::text(Tone::Info, "now?")).await;
    assert!(matches!(res, Err(SendError::Rejected(_))), "{res:?}");
    // Direct messages are not affected.
    let dm = Place::new("xmpp", "alice@test.local");
    bot.adapter.post(&dm, &Reply::text(Tone::Info, "dm")).await.expect("posted");
    // Lifted: the next rejoin succeeds and posts go again.
    admin(&mut alice, "unban1", &format!("<item jid='{BOT_JID}' affiliation='none'/>")).await;
    let t = tokio::time::Instant::now();
    while bot.adapter.post(&room(), &Reply::text(Tone::Info, "back")).await.is_err() {
        assert!(t.elapsed() < WAIT, "the bot never rejoined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!bot.task.is_finished());
    assert_eq!(bot.stop().await, Ok(()));
}

/// Banned before it starts: the join is refused with <forbidden/>, the adapter connects without
/// the room, and room posts are rejected (not left waiting forever).
#[tokio::test]
async fn a_room_that_refuses_the_join_rejects_posts() {
    let Some(server) = server().await else { return };
    let mut alice = server.user_with_nick("alice", "alice").await.expect("alice");
    admin(&mut alice, "ban0", &format!("<item jid='{BOT_JID}' affiliation='outcast'/>")).await;
    let bot = start(config(server.port())).await;
    match bot.adapter.post(&room(), &Reply::text(Tone::Info, "hi")).await {
        Err(SendError::Rejected(why)) => assert!(why.contains("banned") && why.contains(ROOM), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(bot.stop().await, Ok(()));
}
