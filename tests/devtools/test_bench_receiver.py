"""The bench's webhook receiver (bench/receiver.py): its figures are only as good as its
answers and its record of arrivals."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

from devtools import harness

ROOT = Path(__file__).resolve().parents[2]


def test_the_receiver_answers_each_request_on_one_connection_and_notes_each_arrival(tmp_path):
    port, arrivals = harness.free_port(), tmp_path / "arrivals.txt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", str(port), str(arrivals)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        statuses, sockets = [], []
        for i, body in enumerate([b"{}", b'{"type": "booking.created"}' * 200, b""]):
            conn.request("POST", "/hook", body=body, headers={"webhook-id": f"msg_{i}"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
            sockets.append(conn.sock)  # None once an answer closed the connection
        conn.close()
        assert statuses == [204, 204, 204]
        assert sockets[0] is not None and sockets == [sockets[0]] * 3
        ids = [line.split()[0] for line in arrivals.read_text().splitlines()]
        assert ids == ["msg_0", "msg_1", "msg_2"]
    finally:
        proc.terminate()
        proc.wait(10)
