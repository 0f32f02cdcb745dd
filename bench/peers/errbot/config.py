"""Errbot 6.2.1 configuration for the IRC benchmark peer (loopback only).

Read by bench/peers/errbot/start.sh, which sets PEER_DIR, PEER_PORT, PEER_CHANNEL, PEER_NICK.
"""

import logging
import os

_here = os.path.dirname(os.path.abspath(__file__))
_data = os.path.join(os.environ["PEER_DIR"], "errbot-data")

BACKEND = "IRC"
BOT_DATA_DIR = _data
BOT_EXTRA_PLUGIN_DIR = os.path.join(_here, "plugins")
BOT_LOG_FILE = None  # log to the console only (start.sh's stdout/stderr)
BOT_LOG_LEVEL = logging.INFO
BOT_LOG_SENTRY = False

BOT_IDENTITY = {
    "nickname": os.environ["PEER_NICK"],
    "username": os.environ["PEER_NICK"],
    "server": "127.0.0.1",
    "port": int(os.environ["PEER_PORT"]),
    "ssl": False,
}
CHATROOM_PRESENCE = (os.environ["PEER_CHANNEL"],)
BOT_PREFIX = "!"
BOT_ALT_PREFIXES = ()

# Harmless: no real admin (nobody matches), nobody is notified, no plugin repositories.
BOT_ADMINS = ("nobody-admin!nobody@invalid.invalid",)
BOT_ADMINS_NOTIFICATIONS = ()
BOT_PLUGIN_INDEXES = ()
SUPPRESS_CMD_NOT_FOUND = True

# No VersionChecker (it calls errbot.io) and no Webserver (HTTP listener).
CORE_PLUGINS = (
    "ACLs",
    "Help",
    "Health",
    "Plugins",
    "Utils",
    "ChatRoom",
    "CommandNotFoundFilter",
)

# The IRC backend sleeps between outgoing messages by default (its own flood control).
IRC_CHANNEL_RATE = 0
IRC_PRIVATE_RATE = 0
