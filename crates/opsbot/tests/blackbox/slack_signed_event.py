#!/usr/bin/env python3
"""Slack request signing from Slack's own SDK (slack_sdk), against opsbot's Events API door.

1. Slack's documented example (docs.slack.dev "Verifying requests from Slack") through the SDK:
   the SDK's signature must be the documented one (so the SDK is used as Slack means it).
2. Each --check TS:SIGNATURE:BODY_HEX (signatures opsbot made) must be valid for the SDK's
   SignatureVerifier.
3. An app_mention event ("<@BOT> whoami" from --user in --channel), signed by the SDK, POSTed to
   --url: opsbot must answer 200. The same body with a signature for another secret: 401.

Exits 0 when all hold; prints what failed and exits 1 otherwise.
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

from slack_sdk.signature import SignatureVerifier

DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TS = "1531420618"
DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def post(url, body, ts, sig):
    req = urllib.request.Request(
        url,
        data=body.encode(),
        method="POST",
        headers={"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--channel", required=True)
    p.add_argument("--bot", required=True)
    p.add_argument("--check", action="append", default=[])
    a = p.parse_args()
    failures = []

    got = SignatureVerifier(DOC_SECRET).generate_signature(timestamp=DOC_TS, body=DOC_BODY)
    if got != DOC_SIG:
        failures.append(f"the SDK's signature of Slack's example is {got}, not {DOC_SIG}")

    v = SignatureVerifier(a.secret)
    for c in a.check:
        ts, sig, body_hex = c.split(":", 2)
        body = bytes.fromhex(body_hex).decode()
        if not v.is_valid(body=body, timestamp=ts, signature=sig):
            failures.append(f"the SDK refuses opsbot's signature {sig} for a body of {len(body)} chars")

    ts = str(int(time.time()))
    body = json.dumps(
        {
            "token": "unused",
            "team_id": "T0OPSBOT01",
            "api_app_id": "A0OPSBOT01",
            "type": "event_callback",
            "event_id": "Ev0SDK" + ts,
            "event_time": int(ts),
            "event": {
                "type": "app_mention",
                "user": a.user,
                "channel": a.channel,
                "text": f"<@{a.bot}> whoami",
                "ts": ts + ".000200",
                "event_ts": ts + ".000200",
            },
        }
    )
    status, text = post(a.url, body, ts, v.generate_signature(timestamp=ts, body=body))
    if status != 200:
        failures.append(f"a request signed by the SDK got {status}: {text}")
    forged = SignatureVerifier("another-secret-entirely-000000000").generate_signature(timestamp=ts, body=body)
    status, text = post(a.url, body, ts, forged)
    if status != 401:
        failures.append(f"a request signed with another secret got {status}: {text}")

    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"ok: Slack's example, {len(a.check)} opsbot signatures, one signed event, one forged")


if __name__ == "__main__":
    main()
