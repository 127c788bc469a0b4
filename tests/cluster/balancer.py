"""A round-robin TCP balancer for tests: each new connection goes to the next backend.

Stands for the load balancer in front of several gateways (docs/SCALING.md); HTTP
requests on fresh connections and WebSockets alternate between the gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools


class RoundRobin:
    """Listens on 127.0.0.1:``port`` and pipes each connection to the next backend port."""

    def __init__(self, backends: list[int], port: int = 0) -> None:
        self.backends = backends
        self._next = itertools.cycle(range(len(backends)))
        self.connections = [0] * len(backends)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = port

    async def start(self) -> RoundRobin:
        """Listen (again, on the same port after ``stop``)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = next(self._next)
        self.connections[index] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backends[index])
        except OSError:
            writer.close()
            return
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                sink.close()

    async def stop(self) -> None:
        """Stop listening and cut every connection (a link going down)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._pipes):
            task.cancel()
        if self._pipes:
            await asyncio.wait(set(self._pipes), timeout=5)
