"""A partition that leaves sockets open is noticed by the client's pings
(pulse_bi/natsclient.py, docs/SCALING.md "Client settings")."""

from __future__ import annotations

import asyncio

import nats

from pulse_bi.natsclient import client_options
from pulse_bi.natsserver import LocalNatsServer


class FreezingProxy:
    """Forwards TCP to a server until frozen; then holds every socket open and silent."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"nats://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if not self.frozen.is_set():
                writer.write(data)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()


async def test_a_silent_partition_is_noticed_by_the_pings(nats_server: LocalNatsServer) -> None:
    proxy = FreezingProxy(nats_server.port)
    url = await proxy.start()
    lost = asyncio.Event()

    async def disconnected() -> None:
        lost.set()

    options = client_options(url, "partition-test", ping_interval=0.2)
    nc = await nats.connect(**options, disconnected_cb=disconnected)
    try:
        await nc.flush(timeout=2)
        proxy.frozen.set()
        # 0.2 s x (2 outstanding + 1); nats-py's defaults would take minutes.
        await asyncio.wait_for(lost.wait(), timeout=10)
    finally:
        await nc.close()
        await proxy.close()


def test_options_list_every_server_and_never_give_up() -> None:
    options = client_options(" nats://a:4222, nats://b:4222 ,,", "x")
    assert options["servers"] == ["nats://a:4222", "nats://b:4222"]
    assert options["max_reconnect_attempts"] == -1
    assert options["ping_interval"] * (options["max_outstanding_pings"] + 1) <= 60
