"""Drives the Mattermost fake with mattermostdriver (an independent client, 7.3.2).

Usage: mm_driver.py PORT TOKEN CHANNEL_ID
Prints one JSON object with what the server answered; exits non-zero on any failure.
"""
import asyncio
import json
import sys
import threading

from mattermostdriver import Driver
from mattermostdriver.exceptions import InvalidOrMissingParameters, NoAccessTokenProvided, NotEnoughPermissions

port, token, channel_id = int(sys.argv[1]), sys.argv[2], sys.argv[3]
out = {}

d = Driver({"url": "127.0.0.1", "port": port, "scheme": "http", "token": token, "timeout": 10})
me = d.login()
out["me"] = {"id": me["id"], "username": me["username"]}

# A wrong token: the driver maps Mattermost's 401 envelope to NoAccessTokenProvided.
bad = Driver({"url": "127.0.0.1", "port": port, "scheme": "http", "token": "wrong", "timeout": 10})
try:
    bad.login()
    out["bad_login"] = "accepted"
except NoAccessTokenProvided as e:
    out["bad_login"] = str(e)

events = []
got_posted = threading.Event()
hello = threading.Event()


async def handler(message):
    ev = json.loads(message)
    events.append(ev)
    if ev.get("event") == "hello":
        hello.set()
    if ev.get("event") == "posted":
        got_posted.set()


def ws():
    asyncio.set_event_loop(asyncio.new_event_loop())
    d.init_websocket(handler)


threading.Thread(target=ws, daemon=True).start()
if not hello.wait(10):
    print(json.dumps({"error": "no hello", "events": events}))
    sys.exit(1)

created = d.posts.create_post({"channel_id": channel_id, "message": "hello from mattermostdriver"})
out["created"] = created
patched = d.posts.patch_post(created["id"], {"message": "patched by mattermostdriver"})
out["patched"] = patched
out["got"] = d.posts.get_post(created["id"])

try:
    d.posts.create_post({"channel_id": channel_id, "message": "x" * 16384})
    out["too_long"] = "accepted"
except InvalidOrMissingParameters as e:
    out["too_long"] = str(e)

uploaded = d.files.upload_file(channel_id, {"files": ("chart.png", b"\x89PNG\r\n\x1a\nfake", "image/png")})
out["uploaded"] = uploaded
with_file = d.posts.create_post({"channel_id": channel_id, "message": "a chart", "file_ids": [uploaded["file_infos"][0]["id"]]})
out["with_file"] = with_file

if not got_posted.wait(10):
    print(json.dumps({"error": "no posted event", "events": events}))
    sys.exit(1)
out["events"] = events
print(json.dumps(out))
sys.stdout.flush()
