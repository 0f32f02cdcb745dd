#!/usr/bin/env python3
"""Black-box IRC client for the conformance suite: a person talking to opsbot.

Connects with the `irc` package (jaraco's irc.client reactor), joins the channel, says TEXT
there (or privately to the bot with --dm), then waits for a PRIVMSG or NOTICE from the bot
whose text matches REGEX (re.search on one line, or on the lines received so far joined with
newlines, since a reply may take several lines). Prints what matched and exits 0; exits 1
with a clear message on timeout or error. IRC formatting (bold, colours) is removed before
matching.

The bot is recognised by its nick: any nick starting with --bot (default "opsbot"), because
after a nick collision the bot is "opsbot_". --dm sends to exactly --bot.

Usage:
  irc_client.py --server 127.0.0.1 --port 6667 --nick ana --room '#ops' \
      --text 'opsbot: ping' --regex 'pong' [--timeout 30] [--bot opsbot] [--dm]
      [--tls [--ca ca.pem]] [--password SERVER_PASSWORD]
"""

import argparse
import functools
import re
import ssl
import sys
import time

import irc.client
import irc.connection
from jaraco.stream import buffer

FORMATTING = re.compile(r"\x03(\d{1,2}(,\d{1,2})?)?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="host name or address")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nick", required=True, help="this person's nick (also the user name)")
    p.add_argument("--password", default=None, help="server password (PASS), if the server needs one")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca", default=None, help="PEM file of the CA to trust with --tls")
    p.add_argument("--room", required=True, help="channel to join and talk in, e.g. '#ops'")
    p.add_argument("--text", required=True, help="what to say")
    p.add_argument("--regex", required=True, help="the bot's reply must match this (re.search)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply")
    p.add_argument("--bot", default="opsbot", help="the bot's nick (replies from nicks starting with it count)")
    p.add_argument("--dm", action="store_true", help="say TEXT privately to the bot instead of in the room")
    return p.parse_args()


def main():
    args = parse_args()
    pattern = re.compile(args.regex)
    # Lines that are not UTF-8 must not crash the client.
    irc.client.ServerConnection.buffer_class = buffer.LenientDecodingLineBuffer
    state = {"sent": False, "match": None, "error": None, "lines": []}

    factory = irc.connection.Factory()
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.ca) if args.ca else ssl.create_default_context()
        factory = irc.connection.Factory(wrapper=functools.partial(ctx.wrap_socket, server_hostname=args.server))

    reactor = irc.client.Reactor()
    try:
        conn = reactor.server().connect(
            args.server, args.port, args.nick, password=args.password, username=args.nick, ircname=args.nick, connect_factory=factory
        )
    except (irc.client.ServerConnectionError, OSError, ssl.SSLError) as e:
        print(f"error: cannot connect to {args.server}:{args.port}: {e}", file=sys.stderr)
        return 1

    def say(c):
        if state["sent"]:
            return
        state["sent"] = True
        c.privmsg(args.bot if args.dm else args.room, args.text)

    def on_welcome(c, _event):
        c.join(args.room)

    def on_join(c, event):
        if irc.client.NickMask(event.source).nick == c.get_nickname() and event.target.lower() == args.room.lower():
            say(c)

    def on_message(c, event):
        nick = irc.client.NickMask(event.source).nick if event.source else ""
        if not state["sent"] or not nick.startswith(args.bot) or nick == c.get_nickname():
            return
        text = FORMATTING.sub("", event.arguments[0] if event.arguments else "")
        state["lines"].append(text)
        if pattern.search(text):
            state["match"] = text
        elif pattern.search("\n".join(state["lines"])):
            state["match"] = "\n".join(state["lines"])

    def on_nick_taken(c, _event):
        state["error"] = f"the nick {args.nick} is taken"

    def on_error(_c, event):
        state["error"] = f"the server closed the link: {' '.join(event.arguments) or event.target}"

    def on_disconnect(_c, _event):
        if state["match"] is None and state["error"] is None:
            state["error"] = "disconnected from the server"

    reactor.add_global_handler("welcome", on_welcome)
    reactor.add_global_handler("join", on_join)
    for kind in ("pubmsg", "privmsg", "pubnotice", "privnotice"):
        reactor.add_global_handler(kind, on_message)
    reactor.add_global_handler("nicknameinuse", on_nick_taken)
    reactor.add_global_handler("error", on_error)
    reactor.add_global_handler("disconnect", on_disconnect)

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and state["match"] is None and state["error"] is None:
        reactor.process_once(0.2)

    if state["match"] is not None:
        print(state["match"])
        try:
            conn.quit("done")
        except irc.client.ServerNotConnectedError:
            pass
        return 0
    if state["error"] is not None:
        print(f"error: {state['error']}", file=sys.stderr)
        return 1
    heard = "\n".join(state["lines"]) or "(nothing)"
    what = "joining the room" if not state["sent"] else f"a reply matching /{args.regex}/"
    print(f"error: timed out after {args.timeout:g}s waiting for {what}; the bot said:\n{heard}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
