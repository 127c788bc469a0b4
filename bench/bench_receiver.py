"""Would a process of its own for receiving the stream speed ingest up? One apply loop fed by
a receiver on its event loop, and by one in a child process, beside the materializer.

Run: ``PYTHONPATH=. .venv/bin/python -m bench.bench_receiver [--events 300000] [--rounds 2]``.

A question for the design, not the product's figure (``bench.bench_ingest`` has that).
In one process the event loop's receiving and the writer's Python work share one GIL
(docs/BENCHMARKS.md, "Where ingest's time goes on two cores"); receiving in a child
process would take the event loop's share off the writer's. Both variants here run one
minimal loop: a receiver takes the stream's deliveries as raw frames
(``materializer.delivery.tap``, on the materializer's ``consumer_config``) into
``RawMessage``\\ s, and a writer thread applies batches of ``BATCH_MAX_EVENTS`` with
``Store.apply_batch`` to an empty file, with the product's DuckDB settings. No change
notices, checkpoints or metrics between batches.

- **in process**: the receiver runs on the writer's event loop and appends to its buffer.
- **child process**: the receiver runs in a spawned process and sends what each socket
  read brought as one msgpack frame over a socketpair; the parent's event loop decodes
  the frames into its buffer. The clocks start once the child is ready (imported and
  connected), so its start-up is not counted.
- **child batches**: the receiver runs in a spawned process that keeps the buffer; the
  writer thread asks for one batch ahead of the one it applies, and the child answers
  with up to ``BATCH_MAX_EVENTS`` messages as one msgpack frame, which the writer thread
  reads off a blocking socket and decodes. Nothing of the receiving runs on the parent's
  event loop.

Back-pressure in each, as in the materializer: while three batches wait, flow-control
answers are held back (the parent stops reading the socket; the child holds them while
its socket's send buffer is full, or, sending batches, while three wait in it). Each
round runs raw consume (``bench_ingest.raw_consume_rate``), the materializer
(``bench_ingest.ingest_rate``), then the three variants. Reported: each phase's rate and
ratio to raw consume; this process's CPU per event and the writer thread's (CPU, and wall
time inside ``apply_batch``, decoding a child's batch included); the child's CPU per
event; the nats-server's; and how many of the machine's cores were busy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import nats
import psutil

from bench.bench_gateway import bounded
from bench.bench_ingest import (
    Cores,
    bench_settings,
    ingest_rate,
    machine,
    prefill,
    raw_consume_rate,
)
from materializer.consumer import consumer_config
from materializer.delivery import status_of, tap
from materializer.settings import Settings
from materializer.store import RawMessage, Store
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer

#: Frame header: the msgpack frame's length, little-endian.
_LENGTH = 4
#: Child: flow-control answers wait while this many bytes wait in its socket's buffer.
_HOLD_BYTES = 4 * 1024 * 1024
#: The longest the writer waits on the child for a batch (it is stuck or gone after).
_CHILD_TIMEOUT = 60.0
#: The longest a child may take to start (import and connect) before it says it is ready.
_CHILD_START_TIMEOUT = 60.0
PHASES = ("raw", "materializer", "in process", "child process", "child batches")

Sink = Callable[[list[RawMessage]], None]


@dataclass
class Phase:
    """One phase's figures, summed over the rounds (seconds)."""

    rates: list[float]
    process_cpu: float = 0.0
    writer_cpu: float = 0.0
    writer_wall: float = 0.0
    child_cpu: float = 0.0


async def receive(
    url: str, sink: Sink, ready: Callable[[], bool], go: Callable[[], Awaitable[None]]
) -> None:
    """Consume the whole stream as the materializer's consumer does, handing what each
    socket read brought to ``sink``; flow control is answered while ``ready()`` (room to
    hand more over), else once it is. The consumer is created once ``go()`` returns.
    Runs until cancelled."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    parser = tap(nc)
    loop = asyncio.get_running_loop()
    pending: list[RawMessage] = []
    held: list[str] = []  # flow-control answers not sent yet
    answers: set[asyncio.Task[None]] = set()
    flushing = False
    subjects: dict[bytes, str] = {}

    def answer(subject: str) -> None:
        task = loop.create_task(nc.publish(subject))
        answers.add(task)
        task.add_done_callback(answers.discard)

    def flush() -> None:
        nonlocal pending, flushing
        flushing = False
        if pending:
            batch, pending = pending, []
            sink(batch)

    def deliveries(
        subject: bytes,
        sequence: int,
        delivered: bytes,
        timestamp: bytes,
        headers: bytes | None,
        payload: bytes,
    ) -> None:
        nonlocal flushing
        name = subjects.get(subject)
        if name is None:
            name = subjects[subject] = subject.decode()
        pending.append(RawMessage(sequence, name, payload, int(timestamp), None))
        if not flushing:  # once per socket read: after the parser returns
            flushing = True
            loop.call_soon(flush)

    def frames(subject: bytes, reply: bytes, headers: bytes | None, payload: bytes) -> None:
        if headers is not None and reply and b"FlowControl" in status_of(headers):
            if ready():
                answer(reply.decode())
            else:
                held.append(reply.decode())

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox)
    parser.add(subscription._id, frames, deliveries)
    await go()
    await js.add_consumer(STREAM_NAME, consumer_config(inbox, 1))
    try:
        while True:
            await asyncio.sleep(0.001)
            if held and ready():
                for subject in held:
                    answer(subject)
                held.clear()
    finally:
        await nc.close()


def child(url: str, sock: socket.socket) -> None:
    """The child process: receive into msgpack frames on ``sock``."""

    async def run() -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        encode = msgspec.msgpack.Encoder().encode
        transport = writer.transport

        async def go() -> None:  # ready: imported and connected; wait for the start
            writer.write(b"\0" * _LENGTH)
            await reader.readexactly(1)

        def send(batch: list[RawMessage]) -> None:
            data = encode(batch)
            writer.write(len(data).to_bytes(_LENGTH, "little") + data)

        await receive(url, send, lambda: transport.get_write_buffer_size() < _HOLD_BYTES, go)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def child_batches(url: str, sock: socket.socket, batch_max: int) -> None:
    """The child process of "child batches": receive into a buffer, and answer each byte
    the parent sends with the next batch off it (at least one message) as one frame."""

    async def run() -> None:
        reader, writer = await asyncio.open_connection(sock=sock)
        encode = msgspec.msgpack.Encoder().encode
        buffer: list[RawMessage] = []
        arrived = asyncio.Event()

        def add(messages: list[RawMessage]) -> None:
            buffer.extend(messages)
            arrived.set()

        async def serve() -> None:
            while True:
                await reader.readexactly(1)  # the parent asks for the next batch
                while not buffer:
                    arrived.clear()
                    await arrived.wait()
                batch = buffer[:batch_max]
                del buffer[:batch_max]
                data = encode(batch)
                writer.write(len(data).to_bytes(_LENGTH, "little") + data)
                await writer.drain()

        serving: list[asyncio.Task[None]] = []

        async def go() -> None:  # ready: imported and connected; wait for the start
            writer.write(b"\0" * _LENGTH)
            await reader.readexactly(1)
            serving.append(asyncio.create_task(serve()))

        await receive(url, add, lambda: len(buffer) < 3 * batch_max, go)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def open_store(settings: Settings, path: Path) -> Store:
    """An empty store at ``path`` with the product's DuckDB settings."""
    return Store.open(
        path,
        memory_limit=settings.duckdb_memory_limit or None,
        threads=settings.duckdb_threads or None,
        row_group_size=settings.duckdb_row_group_size,
    )


class Applier:
    """The writer side: a buffer, and a writer thread applying batches off it."""

    def __init__(self, settings: Settings, path: Path, phase: Phase) -> None:
        self.store = open_store(settings, path)
        self.batch_max = settings.batch_max_events
        self.phase = phase
        self.buffer: list[RawMessage] = []
        self.arrived = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()

    def add(self, messages: list[RawMessage]) -> None:
        self.buffer.extend(messages)
        self.arrived.set()
        if not self.has_room():
            self.room.clear()

    def has_room(self) -> bool:
        return len(self.buffer) < 3 * self.batch_max

    def _apply(self, batch: list[RawMessage]) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        self.store.apply_batch(batch)
        self.phase.writer_cpu += time.thread_time() - cpu
        self.phase.writer_wall += time.perf_counter() - wall

    async def apply_until(self, last: int) -> None:
        """Apply batches off the buffer until ``last`` is committed; close the store."""
        loop = asyncio.get_running_loop()
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer") as writer:
                while self.store.last_sequence() < last:
                    await self.arrived.wait()
                    batch = self.buffer[: self.batch_max]
                    del self.buffer[: self.batch_max]
                    if not self.buffer:
                        self.arrived.clear()
                    if self.has_room():
                        self.room.set()
                    await loop.run_in_executor(writer, self._apply, batch)
        finally:
            self.store.close()


async def in_process(url: str, settings: Settings, path: Path, last: int, phase: Phase) -> float:
    """Events/s, the receiver on this process's event loop."""
    applier = Applier(settings, path, phase)
    started = 0.0

    async def go() -> None:
        nonlocal started
        started = time.perf_counter()

    receiver = asyncio.create_task(receive(url, applier.add, applier.has_room, go))
    try:
        await applier.apply_until(last)
        return last / (time.perf_counter() - started)
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver


async def in_child(url: str, settings: Settings, path: Path, last: int, phase: Phase) -> float:
    """Events/s, the receiver in a child process (its CPU added to ``phase``)."""
    applier = Applier(settings, path, phase)
    ours, theirs = socket.socketpair()
    process = multiprocessing.get_context("spawn").Process(target=child, args=(url, theirs))
    process.start()
    theirs.close()
    reader, writer = await asyncio.open_connection(sock=ours)
    decode = msgspec.msgpack.Decoder(list[RawMessage]).decode
    try:
        child_process = psutil.Process(process.pid)
        await reader.readexactly(_LENGTH)  # the child is ready: the clocks start
        child_before = sum(child_process.cpu_times()[:2])
        started = time.perf_counter()
        writer.write(b"\1")

        async def read() -> None:
            while True:
                await applier.room.wait()
                length = int.from_bytes(await reader.readexactly(_LENGTH), "little")
                applier.add(decode(await reader.readexactly(length)))

        reading = asyncio.create_task(read())
        try:
            await applier.apply_until(last)
            rate = last / (time.perf_counter() - started)
            phase.child_cpu += sum(child_process.cpu_times()[:2]) - child_before
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
    finally:
        process.terminate()
        process.join(30)
        writer.close()
    return rate


async def in_child_batches(
    url: str,
    settings: Settings,
    path: Path,
    last: int,
    phase: Phase,
    target: Callable[[str, socket.socket, int], None] | None = None,
    timeout: float = _CHILD_TIMEOUT,
) -> float:
    """Events/s, the receiver and its buffer in a child process that hands over whole
    batches, read off a blocking socket and decoded on the writer thread (its CPU added
    to ``phase``): nothing per batch runs on this process's event loop.

    ``target`` runs in the child (``child_batches`` unless told). A child that goes away
    is a ``ConnectionError``, one that sends nothing for ``timeout`` seconds once it is
    ready (``_CHILD_START_TIMEOUT`` before) a ``TimeoutError``: the phase never hangs on
    it."""
    store = open_store(settings, path)
    ours, theirs = socket.socketpair()
    process = multiprocessing.get_context("spawn").Process(
        target=target or child_batches, args=(url, theirs, settings.batch_max_events)
    )
    process.start()
    theirs.close()
    ours.settimeout(_CHILD_START_TIMEOUT)  # blocking reads, but never for ever
    decode = msgspec.msgpack.Decoder(list[RawMessage]).decode

    def read(size: int) -> bytearray:
        data = bytearray(size)
        view, got = memoryview(data), 0
        while got < size:
            received = ours.recv_into(view[got:])
            if not received:
                raise ConnectionError("the child went away")
            got += received
        return data

    def run() -> float:
        read(_LENGTH)  # the child is ready: the clocks start
        ours.settimeout(timeout)
        child_before = sum(child_process.cpu_times()[:2])
        started = time.perf_counter()
        ours.sendall(b"\1?")  # start, and ask for the first batch
        while store.last_sequence() < last:
            length = int.from_bytes(read(_LENGTH), "little")
            data = read(length)
            ours.sendall(b"?")  # the next batch comes while this one is applied
            cpu, wall = time.thread_time(), time.perf_counter()
            store.apply_batch(decode(data))
            phase.writer_cpu += time.thread_time() - cpu
            phase.writer_wall += time.perf_counter() - wall
        rate = last / (time.perf_counter() - started)
        phase.child_cpu += sum(child_process.cpu_times()[:2]) - child_before
        return rate

    try:
        child_process = psutil.Process(process.pid)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer") as pool:
            return await loop.run_in_executor(pool, run)
    finally:
        process.terminate()
        process.join(30)
        ours.close()
        store.close()


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--events", type=bounded(int, 1000, 10_000_000), default=300_000, help="stream length"
    )
    parser.add_argument(
        "--rounds", type=bounded(int, 1, 20), default=2, help="rounds of the five phases"
    )
    return parser


async def main(args: argparse.Namespace) -> dict[str, Phase]:
    """Run the rounds and print the figures; returns them by phase."""
    phases = {name: Phase([]) for name in PHASES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        try:
            last = await prefill(server.url, args.events)
            assert server.process is not None
            nats_server = psutil.Process(server.process.pid)
            cores = {name: Cores(nats_server) for name in PHASES}
            settings = Settings.from_env()
            load_before = os.getloadavg()
            for round_ in range(args.rounds):
                for name, phase in phases.items():
                    path = root / f"{name.replace(' ', '-')}-{round_}.duckdb"
                    cpu = time.process_time()
                    with cores[name].measuring():
                        if name == "raw":
                            rate = await raw_consume_rate(server.url, last)
                        elif name == "materializer":
                            rate, *_ = await ingest_rate(bench_settings(server.url, path), last)
                        elif name == "in process":
                            rate = await in_process(server.url, settings, path, last, phase)
                        elif name == "child process":
                            rate = await in_child(server.url, settings, path, last, phase)
                        else:
                            rate = await in_child_batches(server.url, settings, path, last, phase)
                    phase.process_cpu += time.process_time() - cpu
                    phase.rates.append(rate)
            load_after = os.getloadavg()
        finally:
            server.stop()
    events = last * args.rounds
    print(f"machine: {machine()}; stream: {last} events; batches of {settings.batch_max_events}")
    print(
        "load average (1, 5, 15 min): "
        f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' '.join(f'{x:.2f}' for x in load_after)} after"
    )
    raw = statistics.median(phases["raw"].rates)
    for name, phase in phases.items():
        rate = statistics.median(phase.rates)
        ratios = ", ".join(
            f"{r / b:.2f}" for r, b in zip(phase.rates, phases["raw"].rates, strict=True)
        )
        spent = cores[name]
        figures = [f"this process {phase.process_cpu / events * 1e6:.1f} us"]
        if phase.writer_cpu:
            figures.append(
                f"the writer {phase.writer_cpu / events * 1e6:.1f} us"
                f" (wall in its batches {phase.writer_wall / events * 1e6:.1f} us)"
            )
        if phase.child_cpu:
            figures.append(f"the child {phase.child_cpu / events * 1e6:.1f} us")
        figures.append(f"nats-server {spent.server / events * 1e6:.1f} us")
        print(
            f"{name}: {rate:,.0f} events/s, {rate / raw:.2f} x raw (rounds: {ratios});"
            f" CPU per event: {', '.join(figures)}; cores busy"
            f" {spent.machine / spent.wall:.2f} of {psutil.cpu_count()}"
        )
    return phases


if __name__ == "__main__":
    asyncio.run(main(arguments().parse_args()))
