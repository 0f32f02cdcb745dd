//! Mattermost through the real `opsbot serve` binary and the local fake of Mattermost
//! (`opsbot_testkit::mattermost`): the slash command with its token, and message buttons whose
//! presses are checked like typed text, with opsbot's signature on each button's context.

use crate::harness::{Bot, Sandbox, run_id};
use opsbot_testkit::mattermost::{BotPost, FakeMattermost, TOKEN, TOKEN_ENV};
use serde_json::Value;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const COMMAND_TOKEN: &str = "xkcdcommandtoken0000000001";

async fn start(fake: &FakeMattermost, ana: &str, bob: &str) -> Bot {
    let sb = Sandbox::new();
    let port = opsbot_testkit::free_port();
    let cfg = sb.config(&format!(
        r#"
[bot]
name = "opsbot"

[web]
public_url = "http://127.0.0.1:{port}"

[access]
default_role = "guest"

[people.ana]
name = "Ana"
accounts = ["mattermost:{ana}"]
roles = ["admin"]

[people.bob]
name = "Bob"
accounts = ["mattermost:{bob}"]
roles = ["viewer"]

[roles.viewer]
allow = [{{ verbs = "view", jobs = "*" }}]

[jobs.wait]
description = "Waits"
runner = {{ type = "exec", argv = ["sleep", "{{{{ secs }}}}"] }}
[[jobs.wait.params]]
name = "secs"
type = "int"
min = 1
max = 60
required = true

[adapters.mattermost]
type = "mattermost"
url = "{url}"
token = "${{env:{TOKEN_ENV}}}"
command_token = "${{env:OPSBOT_TEST_MM_COMMAND_TOKEN}}"
send_rate = 1000
send_burst = 1000
"#,
        url = fake.url()
    ));
    let env = [(TOKEN_ENV, TOKEN), ("OPSBOT_TEST_MM_COMMAND_TOKEN", COMMAND_TOKEN)];
    let (serve, addr) = sb.serve_at(&cfg, &env, &format!("127.0.0.1:{port}"));
    let bot = Bot { _sandbox: sb, serve, addr };
    crate::harness::adapters_connected(&bot.addr, &bot.serve, 1).await;
    bot
}

/// The first post of the bot (from `from` on) whose message contains `needle`.
async fn wait_post(fake: &FakeMattermost, from: usize, needle: &str, bot: &Bot) -> BotPost {
    let t = Instant::now();
    loop {
        if let Some(p) = fake.bot_posts().into_iter().skip(from).find(|p| visible(p).contains(needle)) {
            return p;
        }
        assert!(
            t.elapsed() < WAIT,
            "no bot post containing {needle:?}; the bot posted {:#?}\n--- opsbot's log:\n{}",
            fake.bot_posts().iter().skip(from).map(visible).collect::<Vec<_>>(),
            bot.serve.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn visible(p: &BotPost) -> String {
    let props = p.props.as_object().cloned().unwrap_or_default();
    opsbot_testkit::mattermost::visible_text(&p.message, &props)
}

/// The id of the action labelled `label` in a post's attachments.
fn action(post: &BotPost, label: &str) -> String {
    post.props["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
        .find(|a| a["name"].as_str().is_some_and(|n| n.contains(label)))
        .and_then(|a| a["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no button {label:?} in {:#}", post.props))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_need_their_token_and_buttons_are_checked_like_typing() {
    let fake = FakeMattermost::launch().await.expect("fake Mattermost");
    let ana = fake.add_user("ana");
    let bob = fake.add_user("bob");
    let bot = start(&fake, &ana, &bob).await;
    let ch = fake.channel();
    let command_url = format!("http://{}/hooks/mattermost/command", bot.addr);

    // The slash command with the right token: acknowledged, then answered in the channel.
    fake.set_command(&command_url, COMMAND_TOKEN);
    let from = fake.bot_posts().len();
    let (status, body) = fake.slash(&ana, &ch, "/opsbot", "whoami").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let p = wait_post(&fake, from, "person `ana`", &bot).await;
    assert_eq!(p.channel_id, ch);
    // With another token (a command of another team, or a guess): refused, nothing done.
    fake.set_command(&command_url, "not-the-token-000000000000");
    let from = fake.bot_posts().len();
    let (status, body) = fake.slash(&ana, &ch, "/opsbot", "wait secs=1").await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("token"), "a clear reason: {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fake.bot_posts().iter().skip(from).all(|p| !visible(p).contains("queued")),
        "nothing runs from a refused command"
    );
    fake.set_command(&command_url, COMMAND_TOKEN);

    // Ana's run: its card has a Cancel button that calls opsbot back.
    let from = fake.bot_posts().len();
    fake.post(&ana, &ch, "!wait secs=30", None).await.unwrap();
    let card = wait_post(&fake, from, "queued", &bot).await;
    let id = run_id(&visible(&card));
    let cancel = action(&card, "Cancel");

    // Bob (a viewer) presses it: refused as his typed `cancel N` would be.
    let from = fake.bot_posts().len();
    let (status, body) = fake.click(&bob, &card.id, &cancel).await.unwrap();
    assert_eq!(status, 200, "{body}");
    wait_post(&fake, from, &format!("You may not cancel #{id}"), &bot).await;
    // A context Bob made up (another command, no valid signature) is refused outright.
    let mut forged = fake
        .stored_post(&card.id)
        .and_then(|p| {
            p["props"]["attachments"][0]["actions"]
                .as_array()?
                .iter()
                .find(|a| a["id"] == cancel.as_str())
                .map(|a| a["integration"]["context"].clone())
        })
        .expect("the button's context");
    if let Some(obj) = forged.as_object_mut() {
        for v in obj.values_mut() {
            if v.as_str().is_some_and(|s| s.contains(&format!("cancel {id}"))) {
                *v = Value::String("run wait secs=1".into());
            }
        }
    }
    let from = fake.bot_posts().len();
    let (status, body) = fake.click_with_context(&bob, &card.id, &cancel, forged).await.unwrap();
    assert_eq!(status, 403, "an altered context is refused: {body}");
    let (status, _) = fake
        .click_with_context(&bob, &card.id, &cancel, serde_json::json!({"command": "run wait secs=1"}))
        .await
        .unwrap();
    assert_eq!(status, 403, "an unsigned context is refused");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.bot_posts().iter().skip(from).all(|p| !visible(p).contains("queued")));

    // Ana's press cancels her run; the card is edited to show it.
    let from = fake.bot_posts().len();
    let (status, body) = fake.click(&ana, &card.id, &cancel).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let t = Instant::now();
    loop {
        let edited = fake
            .bot_posts()
            .into_iter()
            .skip(from)
            .any(|p| p.id == card.id && visible(&p).contains("cancelled"));
        if edited {
            break;
        }
        assert!(t.elapsed() < WAIT, "the card was not edited to cancelled\n{}", bot.serve.stderr());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
