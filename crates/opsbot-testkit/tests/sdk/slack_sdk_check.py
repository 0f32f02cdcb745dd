"""Drives the fake Slack with the official Python SDK (slack_sdk) to show it answers as Slack does.

Run by crates/opsbot-testkit/tests/slack_fake.rs, which starts the fake, sets it up (a rate limit on
the first chat.postMessage, a person's message to try to update) and passes the details in the
environment. Every result is one JSON line on stdout: {"check": NAME, "ok": BOOL, "detail": ...};
other lines tell the test what happened ({"event": ...}, {"envelope": ...}, {"http": ...}).
Commands come on stdin, one a line: "quit".
"""

import http.server
import json
import os
import sys
import threading
import warnings

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import Clock, SignatureVerifier
from slack_sdk.socket_mode import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

ENV = os.environ
API_URL = ENV["API_URL"]
BOT_TOKEN = ENV["BOT_TOKEN"]
APP_TOKEN = ENV["APP_TOKEN"]
CHANNEL = ENV["CHANNEL"]
OTHER_CHANNEL = ENV["OTHER_CHANNEL"]
USER_MSG_TS = ENV["USER_MSG_TS"]
SIGNING_SECRET = ENV["SIGNING_SECRET"]

LOCK = threading.Lock()


def out(**kw):
    with LOCK:
        print(json.dumps(kw), flush=True)


def check(name, cond, detail=""):
    out(check=name, ok=bool(cond), detail=str(detail))


def header(resp, name):
    for k, v in (resp.headers or {}).items():
        if k.lower() == name.lower():
            return v[0] if isinstance(v, list) else v
    return None


def expect_error(name, fn, error, status=200):
    try:
        r = fn()
        check(name, False, f"no error: {r.data if hasattr(r, 'data') else r}")
    except SlackApiError as e:
        r = e.response
        check(name, r.status_code == status and r.get("error") == error, f"{r.status_code} {r.data}")


client = WebClient(token=BOT_TOKEN, base_url=API_URL + "/")

# --- Web API ---------------------------------------------------------------------------------

# The test made the next chat.postMessage answer 429 with Retry-After: 7.
try:
    client.chat_postMessage(channel=CHANNEL, text="rate limited?")
    check("ratelimited_429", False, "no error")
except SlackApiError as e:
    r = e.response
    check(
        "ratelimited_429",
        r.status_code == 429 and header(r, "Retry-After") == "7" and r.get("error") == "ratelimited",
        f"{r.status_code} {r.headers} {r.data}",
    )

r = client.auth_test()
check("auth_test", r["ok"] and r["user_id"] == ENV["BOT_USER_ID"] and r["team_id"] == ENV["TEAM_ID"], r.data)

blocks = [
    {"type": "header", "text": {"type": "plain_text", "text": "#1 queued"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*deploy* web"}},
    {"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}, "action_id": "cancel", "value": "!cancel 1", "style": "danger"},
    ]},
]
r = client.chat_postMessage(channel=CHANNEL, text="#1 queued", blocks=blocks)
posted_ts = r["ts"]
check("post_message", r["ok"] and r["channel"] == CHANNEL and r["message"]["text"] == "#1 queued" and "." in posted_ts, r.data)
out(posted=posted_ts)

r = client.chat_postMessage(channel=CHANNEL, text="in a thread", thread_ts=posted_ts)
check("post_in_thread", r["ok"] and r["message"].get("thread_ts") == posted_ts and r["ts"] > posted_ts, r.data)

r = client.chat_update(channel=CHANNEL, ts=posted_ts, text="#1 running", blocks=blocks[1:])
check("update_message", r["ok"] and r["ts"] == posted_ts and r["text"] == "#1 running", r.data)

expect_error("invalid_auth", lambda: WebClient(token="xoxb-wrong", base_url=API_URL + "/").auth_test(), "invalid_auth")
expect_error("not_authed", lambda: WebClient(base_url=API_URL + "/").auth_test(), "not_authed")
expect_error("app_token_on_bot_method", lambda: WebClient(token=APP_TOKEN, base_url=API_URL + "/").auth_test(), "not_allowed_token_type")
expect_error("bot_token_opens_no_socket", lambda: client.apps_connections_open(app_token=BOT_TOKEN), "not_allowed_token_type")
expect_error("channel_not_found", lambda: client.chat_postMessage(channel="C999999999", text="x"), "channel_not_found")
expect_error("not_in_channel", lambda: client.chat_postMessage(channel=OTHER_CHANNEL, text="x"), "not_in_channel")
expect_error("too_many_blocks", lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "divider"}] * 51), "invalid_blocks")
expect_error("malformed_block", lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "section"}]), "invalid_blocks")
expect_error(
    "long_button_label",
    lambda: client.chat_postMessage(channel=CHANNEL, text="x", blocks=[{"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "x" * 76}, "action_id": "a"}]}]),
    "invalid_blocks",
)
with warnings.catch_warnings():
    # The SDK warns about a missing `text` before sending; the point here is Slack's answer.
    warnings.simplefilter("ignore")
    expect_error("no_text", lambda: client.chat_postMessage(channel=CHANNEL, text=""), "no_text")
expect_error("msg_too_long", lambda: client.chat_postMessage(channel=CHANNEL, text="x" * 40001), "msg_too_long")
expect_error("message_not_found", lambda: client.chat_update(channel=CHANNEL, ts="1000000000.000001", text="x"), "message_not_found")
expect_error("cant_update_message", lambda: client.chat_update(channel=CHANNEL, ts=USER_MSG_TS, text="x"), "cant_update_message")

MODAL = {
    "type": "modal",
    "callback_id": "form",
    "private_metadata": "!deploy",
    "title": {"type": "plain_text", "text": "Deploy"},
    "submit": {"type": "plain_text", "text": "Run"},
    "blocks": [
        {"type": "input", "block_id": "b_env", "label": {"type": "plain_text", "text": "Environment"},
         "element": {"type": "static_select", "action_id": "env", "options": [
             {"text": {"type": "plain_text", "text": "staging"}, "value": "staging"},
             {"text": {"type": "plain_text", "text": "prod"}, "value": "prod"}]}},
        {"type": "input", "block_id": "b_ver", "label": {"type": "plain_text", "text": "Version"},
         "element": {"type": "plain_text_input", "action_id": "version"}},
    ],
}
expect_error("invalid_trigger_id", lambda: client.views_open(trigger_id="12345.98765.abcd2358fdea", view=MODAL), "invalid_trigger_id")

r = client.files_upload_v2(channel=CHANNEL, content="line 1\nline 2\n", filename="output.txt", title="Output", initial_comment="the output")
files = r.get("files") or []
check("files_upload_v2", r["ok"] and len(files) == 1 and files[0]["id"].startswith("F"), r.data)

# --- Signing: Slack's documented example, then the fake's own requests -------------------------


class FixedClock(Clock):
    def now(self):
        return 1531420618.0


DOC_BODY = ("token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
doc = SignatureVerifier("8f742231b10e8888abcd99yyyzzz85a5", clock=FixedClock())
check("sdk_doc_vector", doc.is_valid(DOC_BODY, "1531420618", ENV["DOC_SIGNATURE"]), ENV["DOC_SIGNATURE"])

verifier = SignatureVerifier(SIGNING_SECRET)


class Hooks(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ts = self.headers.get("X-Slack-Request-Timestamp", "")
        sig = self.headers.get("X-Slack-Signature", "")
        valid = verifier.is_valid(body=body, timestamp=ts, signature=sig)
        answer = b""
        kind = None
        if self.path.endswith("/events"):
            payload = json.loads(body)
            kind = payload.get("type")
            if kind == "url_verification":
                answer = payload["challenge"].encode()
            elif kind == "event_callback":
                kind = payload["event"]["type"]
        out(http=self.path, valid=valid, kind=kind, retry=self.headers.get("X-Slack-Retry-Num"),
            content_type=self.headers.get("Content-Type"))
        self.send_response(200 if valid else 401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
threading.Thread(target=server.serve_forever, daemon=True).start()
out(http_port=server.server_address[1])

# --- Socket Mode --------------------------------------------------------------------------------


def on_request(c: SocketModeClient, req: SocketModeRequest):
    if req.type == "events_api":
        c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        ev = req.payload["event"]
        out(envelope="events_api", event_type=ev["type"], text=ev.get("text"), retry_attempt=req.retry_attempt,
            event_id=req.payload.get("event_id"))
    elif req.type == "slash_commands":
        trigger = req.payload["trigger_id"]
        try:
            r = c.web_client.views_open(trigger_id=trigger, view=MODAL)
            check("views_open", r["ok"] and r["view"]["id"].startswith("V") and r["view"]["private_metadata"] == "!deploy", r.data)
        except SlackApiError as e:
            check("views_open", False, e.response.data)
        expect_error("trigger_used_twice", lambda: c.web_client.views_open(trigger_id=trigger, view=MODAL), "expired_trigger_id")
        c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "got it"}))
        out(envelope="slash_commands", command=req.payload["command"], text=req.payload["text"])
    else:
        c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        out(envelope=req.type, payload_type=req.payload.get("type"))


sm = SocketModeClient(app_token=APP_TOKEN, web_client=client, ping_interval=1)
sm.socket_mode_request_listeners.append(on_request)
sm.connect()
out(event="socket_connected")

for line in sys.stdin:
    if line.strip() == "quit":
        break
sm.close()
server.shutdown()
out(event="done")
