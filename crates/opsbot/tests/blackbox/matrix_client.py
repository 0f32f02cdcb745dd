#!/usr/bin/env python3
"""Black-box Matrix client for the conformance suite: a person talking to opsbot.

Logs in with a password (matrix-nio), joins the room, says TEXT there, waits for a message
from someone else (the bot; --bot narrows it to one user id) whose body matches REGEX, prints
that body and exits 0; exits 1 with a clear message on timeout or error. Edits (m.replace)
count with their new content, so a job card that is edited into the expected state matches.

Usage:
  matrix_client.py --homeserver http://127.0.0.1:8008 --user @ana:test.local --password PW \
      --room '#ops:test.local' --text 'opsbot: ping' --regex 'pong' [--timeout 30] [--bot @opsbot:test.local]
"""

import argparse
import asyncio
import re
import sys
import time

from nio import AsyncClient, JoinError, LoginError, RoomMessageNotice, RoomMessageText, RoomSendError


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--homeserver", required=True, help="client URL, e.g. http://127.0.0.1:8008")
    p.add_argument("--user", required=True, help="full user id, e.g. @ana:test.local")
    p.add_argument("--password", required=True)
    p.add_argument("--room", required=True, help="room id or alias to talk in")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--regex", required=True, help="the bot's reply must match this (re.search)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    p.add_argument("--bot", default=None, help="only accept replies from this user id")
    return p.parse_args()


def bodies(event):
    """The texts an event carries: its body, and for an edit its new content's body."""
    content = event.source.get("content", {}) if isinstance(event.source, dict) else {}
    out = [content.get("body", "")]
    new = content.get("m.new_content")
    if isinstance(new, dict) and isinstance(new.get("body"), str):
        out.insert(0, new["body"])
    return [b for b in out if isinstance(b, str)]


async def main():
    args = parse_args()
    pattern = re.compile(args.regex)
    client = AsyncClient(args.homeserver, args.user)
    try:
        resp = await client.login(args.password, device_name="opsbot-blackbox")
        if isinstance(resp, LoginError):
            print(f"error: login failed: {resp.message}", file=sys.stderr)
            return 1
        joined = await client.join(args.room)
        if isinstance(joined, JoinError):
            print(f"error: cannot join {args.room}: {joined.message}", file=sys.stderr)
            return 1
        room_id = joined.room_id
        # Skip everything said before now.
        await client.sync(timeout=0, full_state=True)

        found = asyncio.get_running_loop().create_future()

        async def on_message(room, event):
            if found.done() or room.room_id != room_id or event.sender == client.user_id:
                return
            if args.bot and event.sender != args.bot:
                return
            for body in bodies(event):
                if pattern.search(body):
                    found.set_result(body)
                    return

        client.add_event_callback(on_message, (RoomMessageText, RoomMessageNotice))
        sent = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": args.text})
        if isinstance(sent, RoomSendError):
            print(f"error: cannot send: {sent.message}", file=sys.stderr)
            return 1

        deadline = time.monotonic() + args.timeout
        while not found.done():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await client.sync(timeout=int(min(left, 5.0) * 1000))
        if not found.done():
            print(f"timeout: no reply matching /{args.regex}/ in {args.room} within {args.timeout:g}s", file=sys.stderr)
            return 1
        print(found.result())
        return 0
    finally:
        await client.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
