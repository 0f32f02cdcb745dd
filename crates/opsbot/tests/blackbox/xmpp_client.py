#!/usr/bin/env python3
"""Black-box XMPP client for the conformance suite: a person talking to opsbot.

Signs in with slixmpp, joins the multi-user chat room with NICK (asking for no history), says
TEXT there (or directly to the bot with --dm), then waits for a message from the bot whose body
matches REGEX (re.search). Prints that body and exits 0; exits 1 with a clear message on
timeout or error. Corrections (XEP-0308) count with their new content, so a job card that is
corrected into the expected state matches. Delayed (history) messages never count.

The bot is recognised by its account (--bot, default opsbot@DOMAIN of --jid): in the room by
the real JID the room shows for the occupant (rooms must be non-anonymous, as the test Prosody's
are), else by a nick starting with the bot's local part (after a nick conflict it is "opsbot_").

Without --tls the client connects in clear and allows SCRAM/PLAIN without TLS (test servers
only); with --tls it requires STARTTLS, trusting --ca if given.

Usage:
  xmpp_client.py --jid ana@test.local --password PW --host 127.0.0.1 --port 5222 \\
      --room ops@conference.test.local --nick ana --text 'opsbot: ping' --regex 'pong' \\
      [--timeout 30] [--bot opsbot@test.local] [--dm] [--tls [--ca ca.pem]]
"""

import argparse
import asyncio
import logging
import re
import ssl
import sys

import slixmpp
from slixmpp.jid import JID

DELAY_NS = "{urn:xmpp:delay}delay"
LEGACY_DELAY_NS = "{jabber:x:delay}x"
REPLACE_NS = "{urn:xmpp:message-correct:0}replace"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jid", required=True, help="this person's account, ana@test.local")
    p.add_argument("--password", required=True)
    p.add_argument("--host", required=True, help="server address (no DNS SRV lookup)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--room", required=True, help="room JID, ops@conference.test.local")
    p.add_argument("--nick", required=True, help="this person's nick in the room")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--regex", required=True, help="the bot's reply must match this (re.search)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    p.add_argument("--bot", default=None, help="the bot's bare JID (default opsbot@ the domain of --jid)")
    p.add_argument("--dm", action="store_true", help="say TEXT directly to the bot instead of in the room")
    p.add_argument("--tls", action="store_true", help="require STARTTLS")
    p.add_argument("--ca", default=None, help="PEM file of the CA to trust with --tls")
    p.add_argument("--verbose", action="store_true", help="log the XMPP traffic")
    return p.parse_args()


class Person(slixmpp.ClientXMPP):
    def __init__(self, args, done):
        super().__init__(
            args.jid,
            args.password,
            plugin_config={"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}},
        )
        self.args = args
        self.done = done
        self.room = JID(args.room)
        self.bot = JID(args.bot or f"opsbot@{JID(args.jid).domain}").bare
        self.bot_local = JID(self.bot).local
        self.pattern = re.compile(args.regex)
        if args.tls:
            self.enable_starttls = True
            self.enable_direct_tls = False
            self.enable_plaintext = False
            if args.ca:
                self.ssl_context = ssl.create_default_context(cafile=args.ca)
        else:
            self.enable_starttls = False
            self.enable_direct_tls = False
            self.enable_plaintext = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("groupchat_message", self.on_message)
        self.add_event_handler("failed_auth", lambda _: self.finish(None, "sign-in failed (wrong JID or password?)"))
        self.add_event_handler("disconnected", lambda _: self.finish(None, "disconnected from the server"))

    def finish(self, body, error=None):
        if not self.done.done():
            self.done.set_result((body, error))

    async def on_start(self, _event):
        try:
            self.send_presence()
            await self.plugin["xep_0045"].join_muc_wait(self.room, self.args.nick, maxstanzas=0, timeout=self.args.timeout)
        except Exception as e:  # noqa: BLE001 - any failure is reported the same way
            self.finish(None, f"cannot join {self.room} as {self.args.nick}: {e}")
            return
        if self.args.dm:
            self.send_message(mto=self.bot, mbody=self.args.text, mtype="chat")
        else:
            self.send_message(mto=self.room, mbody=self.args.text, mtype="groupchat")

    def from_bot(self, msg):
        sender = msg["from"]
        if msg["type"] == "groupchat":
            if sender.bare != self.room.bare or not sender.resource:
                return False
            nick = sender.resource
            if nick == self.args.nick:
                return False
            real = self.plugin["xep_0045"].get_jid_property(self.room, nick, "jid")
            if real:
                return JID(real).bare == self.bot
            return nick.startswith(self.bot_local)
        if msg["type"] in ("chat", "normal"):
            return sender.bare == self.bot
        return False

    def on_message(self, msg):
        if msg.xml.find(DELAY_NS) is not None or msg.xml.find(LEGACY_DELAY_NS) is not None:
            return
        if not self.from_bot(msg):
            return
        body = msg["body"]
        if not body:
            return
        if self.pattern.search(body):
            self.finish(body)


async def run(args):
    done = asyncio.get_running_loop().create_future()
    person = Person(args, done)
    person.connect(args.host, args.port)
    try:
        body, error = await asyncio.wait_for(done, timeout=args.timeout)
    except asyncio.TimeoutError:
        body, error = None, f"no reply from {person.bot} matching {args.regex!r} within {args.timeout:g} s"
    person.disconnect()
    return body, error


def main():
    args = parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL)
    body, error = asyncio.run(run(args))
    if error is not None:
        print(f"xmpp_client: {error}", file=sys.stderr)
        sys.exit(1)
    print(body)
    sys.exit(0)


if __name__ == "__main__":
    main()
