"""A local Stripe for the tests: an HTTP server on 127.0.0.1 that answers the part of Stripe's
API the payment gateway uses (create, retrieve, cancel and search PaymentIntents) with bodies
shaped like Stripe's documented ones, honours Idempotency-Key as Stripe does (the first response
is replayed, other parameters are an idempotency_error), records every request, and misbehaves
on demand like a network and a provider do: a response lost after acting, a connection reset, a
timeout after acting, 429 with Retry-After, 5xx."""

from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

TEST_CARDS = {  # Stripe's test payment methods (docs: "Testing")
    "pm_card_visa": None,
    "pm_card_mastercard": None,
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
CANCELABLE = {"requires_payment_method", "requires_capture", "requires_confirmation",
              "requires_action", "processing"}  # fmt: skip


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class Fault:
    kind: str  # lose_response | reset | timeout_after_acting | rate_limited | server_error
    method: str = "POST"
    path_contains: str = ""  # only a request whose path contains this (e.g. "/cancel")
    retry_after: int = 1
    status: int = 500


@dataclass
class FakeStripe:
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # idempotency key -> (method and path, form, status, body)
    replies: dict[str, tuple[str, dict[str, str], int, dict[str, Any]]] = field(
        default_factory=dict
    )
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    down: bool = False
    hang_seconds: float = 4.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    # --- what tests use ---

    def fail_next(self, kind: str, **options: Any) -> None:
        """The next request of that method misbehaves as `kind` says."""
        with self.lock:
            self.faults.append(Fault(kind, **options))

    def posts(self, path_prefix: str = "/v1/payment_intents") -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and r.path.startswith(path_prefix)]

    def holds(self) -> list[dict[str, Any]]:
        """Intents holding money now (authorized, not canceled)."""
        return [i for i in self.intents.values() if i["status"] == "requires_capture"]

    # --- the API ---

    def handle(self, method: str, path: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if parts[:2] != ["v1", "payment_intents"]:
            return 404, _error("invalid_request_error", f"Unrecognized request URL ({path}).")
        if method == "POST" and len(parts) == 2:
            return self._create(form)
        if method == "GET" and parts[2:] == ["search"]:
            return self._search(form.get("query", ""))
        intent = self.intents.get(parts[2]) if len(parts) > 2 else None
        if intent is None:
            return 404, _error(
                "invalid_request_error",
                f"No such payment_intent: '{parts[2] if len(parts) > 2 else ''}'",
                code="resource_missing",
                param="intent",
            )
        if method == "GET" and len(parts) == 3:
            return 200, intent
        if method == "POST" and parts[3:] == ["cancel"]:
            if intent["status"] not in CANCELABLE:
                return 400, _error(
                    "invalid_request_error",
                    "You cannot cancel this PaymentIntent because it has a status of "
                    f"{intent['status']}.",
                    code="payment_intent_unexpected_state",
                    payment_intent=intent,
                )
            intent.update(
                status="canceled",
                canceled_at=int(time.time()),
                cancellation_reason="requested_by_customer",
                amount_capturable=0,
            )
            return 200, intent
        return 404, _error("invalid_request_error", f"Unrecognized request URL ({path}).")

    def _create(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        for required in ("amount", "currency"):
            if required not in form:
                return 400, _error(
                    "invalid_request_error", f"Missing required param: {required}.", param=required
                )
        method = form.get("payment_method", "")
        if method not in TEST_CARDS:
            return 400, _error(
                "invalid_request_error",
                f"No such PaymentMethod: '{method}'",
                code="resource_missing",
                param="payment_method",
            )
        pid = f"pi_{secrets.token_hex(12)}"
        types = [v for k, v in form.items() if k.startswith("payment_method_types[")]
        intent = {
            "id": pid,
            "object": "payment_intent",
            "amount": int(form["amount"]),
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": form.get("capture_method", "automatic_async"),
            "client_secret": f"{pid}_secret_{secrets.token_hex(8)}",
            "confirmation_method": "automatic",
            "created": int(time.time()),
            "currency": form["currency"],
            "canceled_at": None,
            "cancellation_reason": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "payment_method": method,
            "payment_method_types": types,
            "status": "requires_confirmation",
        }  # fmt: skip
        self.intents[pid] = intent
        if form.get("confirm") != "true":
            return 200, intent
        decline = TEST_CARDS[method]
        if decline is None:
            intent["status"] = (
                "requires_capture" if intent["capture_method"] == "manual" else ("succeeded")
            )
            intent["amount_capturable"] = intent["amount"]
            return 200, intent
        code, decline_code, message = decline
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
        }
        return 402, _error(
            "card_error",
            message,
            code=code,
            decline_code=decline_code,
            payment_intent=intent,
            param="",
        )

    def _search(self, query: str) -> tuple[int, dict[str, Any]]:
        prefix = "metadata['idempotency_key']:'"
        if not (query.startswith(prefix) and query.endswith("'")):
            return 400, _error("invalid_request_error", f"Unsupported query: {query}")
        key = query[len(prefix) : -1].replace("\\'", "'").replace("\\\\", "\\")
        data = [i for i in self.intents.values() if i["metadata"].get("idempotency_key") == key]
        return 200, {
            "object": "search_result",
            "data": data,
            "has_more": False,
            "next_page": None,
            "url": "/v1/payment_intents/search",
        }


def _error(type_: str, message: str, **fields: Any) -> dict[str, Any]:
    return {
        "error": {
            "type": type_,
            "message": message,
            "doc_url": f"https://stripe.com/docs/error-codes/{fields.get('code', type_)}",
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_local",
            **fields,
        }
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        form = dict(parse_qsl(body or url.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with fake.lock:
            fake.requests.append(Recorded(method, url.path, headers, form))
            fault = next(
                (f for f in fake.faults if f.method == method and f.path_contains in url.path),
                None,
            )
            if fault:
                fake.faults.remove(fault)
        if not headers.get("authorization", "").startswith("Bearer sk_"):
            return self._reply(401, _error("invalid_request_error", "Invalid API Key provided."))
        if fake.down:
            return self._reply(503, _error("api_error", "Service unavailable."))
        if fault and fault.kind == "reset":
            return self._reset()
        if fault and fault.kind == "rate_limited":
            return self._reply(
                429,
                _error("invalid_request_error", "Too many requests.", code="rate_limit"),
                {"Retry-After": str(fault.retry_after)},
            )
        if fault and fault.kind == "server_error":
            return self._reply(fault.status, _error("api_error", "Something went wrong."))
        status, reply = self._act(method, url.path, form, headers.get("idempotency-key"))
        if fault and fault.kind == "lose_response":
            return self._reset()
        if fault and fault.kind == "timeout_after_acting":
            time.sleep(fake.hang_seconds)
            return self._reset()
        self._reply(status, reply)

    def _act(
        self, method: str, path: str, form: dict[str, str], key: str | None
    ) -> tuple[int, dict[str, Any]]:
        fake = self.server.fake
        with fake.lock:
            if key and method == "POST":
                seen = fake.replies.get(key)
                if seen is not None:
                    where, first_form, status, reply = seen
                    if where != path or first_form != form:
                        return 400, _error(
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same "
                            f"parameters they were first used with. Try using a key other than "
                            f"'{key}' if you meant to execute a different request.",
                        )
                    return status, reply
            status, reply = fake.handle(method, path, form)
            reply = json.loads(json.dumps(reply))  # a snapshot, as the wire would carry it
            if key and method == "POST" and status < 500:
                fake.replies[key] = (path, form, status, reply)
            return status, reply

    def _reply(self, status: int, body: dict[str, Any], headers: dict | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Request-Id", f"req_{secrets.token_hex(7)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _reset(self) -> None:
        """Close the connection with a TCP reset: the client gets no response at all."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe


def start() -> tuple[_Server, FakeStripe]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.fake = FakeStripe(url=f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.fake


@pytest.fixture
def stripe_server(settings) -> Any:
    """A local Stripe on a free port, and the settings that point the gateway at it."""
    server, fake = start()
    settings.STRIPE_API_KEY = "sk_test_local"
    settings.STRIPE_API_BASE = fake.url
    settings.STRIPE_TIMEOUT = 3.0  # generous: a busy machine must not time out a healthy server
    yield fake
    server.shutdown()
    server.server_close()


def stripe_harness(request: pytest.FixtureRequest) -> Any:
    from bookings.providers.stripe_payments import StripePaymentGateway

    from .implementations import Harness

    fake: FakeStripe = request.getfixturevalue("stripe_server")

    def take_down() -> None:
        fake.down = True

    return Harness(
        StripePaymentGateway(),
        approved_token="pm_card_visa",
        declined_token="pm_card_chargeDeclined",
        take_down=take_down,
        lose_next_response=lambda: fake.fail_next("lose_response"),
    )
