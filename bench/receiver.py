"""The bench's webhook receiver, a process of its own (it stands for a client's server, which is
not on the machine that runs the pipeline):

    python -m bench.receiver PORT ARRIVALS_FILE

It listens on 127.0.0.1:PORT, answers every POST with 204 over kept-alive HTTP/1.1 connections
(asyncio sets TCP_NODELAY on them), and appends `<webhook-id> <arrival time>` to ARRIVALS_FILE
for each request. It prints READY once it listens.

It parses no more HTTP than it needs (the request's length and its webhook-id), so that it costs
the two cores it shares with the pipeline a small part of what Python's http.server does: the
bench measures the pipeline, not its receiver. bench/scenarios.py reports its CPU apart.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import IO

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"


class Connection(asyncio.Protocol):
    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        self.buffer += data
        answered = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length, hook_id = 0, ""
            for line in self.buffer[:end].decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value)
                elif name == "webhook-id":
                    hook_id = value.strip()
            if len(self.buffer) < end + 4 + length:
                break  # the body is still on its way
            self.buffer = self.buffer[end + 4 + length :]
            self.out.write(f"{hook_id} {now}\n")
            answered += 1
        if answered:
            self.out.flush()
            assert self.transport is not None
            self.transport.write(NO_CONTENT * answered)


async def serve(port: int, out: IO[str]) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(out), "127.0.0.1", port)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    with open(path, "a", encoding="ascii") as out:
        asyncio.run(serve(port, out))


if __name__ == "__main__":
    main()
