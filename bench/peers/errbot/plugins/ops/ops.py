"""opsbot benchmark peer: `!ping` -> PONG, `!run echo` -> runs the process `echo hello`."""

import subprocess

from errbot import BotPlugin, botcmd


class Ops(BotPlugin):
    """!ping and !run echo for the side-by-side IRC benchmark"""

    @botcmd
    def ping(self, msg, args):
        """answers PONG"""
        return "PONG"

    @botcmd
    def run(self, msg, args):
        """!run echo -> runs `echo hello` (argv, no shell) and replies with its output"""
        if args.strip() != "echo":
            return "only `!run echo` is available"
        out = subprocess.run(
            ["echo", "hello"], capture_output=True, text=True, timeout=10, check=False
        )
        if out.returncode != 0:
            return f"run failed: exit {out.returncode}: {out.stderr.strip()}"
        return out.stdout.strip()
