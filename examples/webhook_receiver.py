"""A webhook receiver, as a client would write one: standard library only. It verifies each
message's Standard Webhooks signature and age, ignores a webhook-id it has already processed (the
same message retried), and logs the event. `make run` starts it for the demo client.

    WEBHOOK_SECRET=whsec_... python examples/webhook_receiver.py --port 8001

In production, receive over https, and keep the processed ids in your database."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE = 5 * 60  # seconds: an older (or future) timestamp is refused, against replays


def verify(secret: str, headers: dict[str, str], body: bytes) -> dict:
    """The event if one of the webhook-signature's v1 signatures matches, else ValueError."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > TOLERANCE:
        raise ValueError("timestamp too old or too new")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in headers["webhook-signature"].split():
        version, _, signature = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return json.loads(body)
    raise ValueError("no signature matches")


class Receiver(ThreadingHTTPServer):
    def __init__(self, port: int, secret: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.secret = secret
        self.seen: set[str] = set()  # processed webhook-ids (a database table in production)


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = verify(self.server.secret, headers, body)
        except (KeyError, ValueError) as exc:
            log(f"REFUSED {headers.get('webhook-id', '?')}: {exc}")
            self.answer(400)
            return
        if event["id"] in self.server.seen:
            log(f"duplicate {event['id']} (already processed)")
        else:
            self.server.seen.add(event["id"])
            data = event["data"]
            extra = data.get("reason") or data.get("message") or ""
            log(
                f"verified {event['type']:<27} {data.get('reference')} #{event['sequence']} "
                f"state={data.get('state')} {extra}".rstrip()
            )
        self.answer(204)

    def answer(self, status: int) -> None:
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass  # one line per event is enough


def log(line: str) -> None:
    print(f"webhook receiver: {line}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    port = parser.parse_args().port
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret.startswith("whsec_"):
        sys.exit("Set WEBHOOK_SECRET to the endpoint's secret (whsec_...).")
    log(f"listening on http://127.0.0.1:{port}/")
    Receiver(port, secret).serve_forever()


if __name__ == "__main__":
    main()
