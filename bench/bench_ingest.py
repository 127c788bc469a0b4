"""Materializer benchmarks: ingest rate vs raw consume rate, notice latency, memory, reads.

Run: ``.venv/bin/python -m bench.bench_ingest [--events 500000] [--rss-events 5000000]``.
Every figure is measured in the same run against a baseline of the same run, since the
machines are shared and noisy: the ingest rate is reported next to the raw consume rate
of the same stream. The raw consume rate is nats-py's ordered push consumer (the plain
JetStream client path, as ``js.subscribe(ordered_consumer=True)`` gives it) with a
callback that only counts: the speed at which a Python client receives the stream at
all. Raw consume and ingest alternate ``--rounds`` times (medians are reported, and each
round's ratio), so a change of load during the run hits both alike. The writer
thread's batches are timed (``WriterClock``): how busy it was, and how much of its time
in a batch it spent off the CPU, waiting for the GIL the event loop holds while it
receives, or for the COMMIT's I/O. The materializer runs with the product's default
settings; settings in this process's environment pass through to it
(``BATCH_MAX_WAIT_MS=5 .venv/bin/python -m bench.bench_ingest``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import psutil
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.bench_gateway import bounded
from materializer.app import Materializer
from materializer.settings import Settings
from materializer.store import Store
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder, query_subject
from pulse_bi.natsserver import LocalNatsServer, free_port
from pulse_bi.simulator import generate, publish
from pulse_bi.streams import ensure_stream


def machine() -> str:
    """One line describing this machine."""
    return (
        f"{platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )


class Cores:
    """CPU seconds over a phase of the run: the nats-server's, and the whole machine's
    busy time (every core, every process; ``psutil.cpu_times``), with the wall time. On
    a machine with a few cores the server that delivers the stream and the process that
    reads it share them: how many were busy says whether the phase had any to spare."""

    def __init__(self, server: psutil.Process) -> None:
        self._server = server
        self.server = self.machine = self.wall = 0.0

    @staticmethod
    def _machine_busy() -> float:
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0)
        return sum(times) - idle

    @contextlib.contextmanager
    def measuring(self) -> Any:
        """Add the CPU seconds and the wall time of the ``with`` block."""
        server = sum(self._server.cpu_times()[:2])
        machine, wall = self._machine_busy(), time.perf_counter()
        try:
            yield self
        finally:
            self.wall += time.perf_counter() - wall
            self.machine += self._machine_busy() - machine
            self.server += sum(self._server.cpu_times()[:2]) - server


def bench_settings(url: str, duckdb_path: Path) -> Settings:
    """The product's settings, with those in this process's environment (as the
    materializer reads them, e.g. ``BATCH_MAX_WAIT_MS=5``), on this run's server and file."""
    return replace(Settings.from_env(), nats_url=url, duckdb_path=duckdb_path, http_port=0)


async def prefill(url: str, count: int, seed: int = 7) -> int:
    """Publish ``count`` simulated events; return the stream's last sequence."""
    # Generated before connecting: generating millions of events blocks the event loop
    # for minutes, and the server closes a connection that leaves its pings unanswered.
    scenario = generate(seed, count)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_stream(js)
    await publish(nc, scenario.messages, ack_every=16)
    info = await js.stream_info(STREAM_NAME)
    await nc.drain()
    return int(info.state.last_seq)


async def raw_consume_rate(url: str, last: int) -> float:
    """Events/s of nats-py's ordered consumer reading the stream, its callback only counting."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    done = asyncio.Event()
    seen = 0

    async def receive(msg: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= last:
            done.set()

    started = time.perf_counter()
    sub = await js.subscribe(
        "pulse.events.>",
        stream=STREAM_NAME,
        cb=receive,
        ordered_consumer=True,
        idle_heartbeat=5.0,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
        pending_msgs_limit=100_000,
    )
    await done.wait()
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await nc.drain()
    return last / elapsed


class WriterClock:
    """Times every ``Store.apply_batch`` of this process (the writer thread's batches):
    wall and thread CPU summed, and the span from the first batch's start to the last's
    end. Wall time the writer spends off the CPU inside a batch is time it waited: for
    the GIL (the event loop receives meanwhile) or for I/O (the COMMIT's fsync)."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.span = 0.0
        self.events = 0
        self.first = self.last = 0.0

    def __enter__(self) -> WriterClock:
        self.first = 0.0
        inner = self._inner = Store.apply_batch

        def timed(store: Store, messages: Any) -> Any:
            started, cpu = time.perf_counter(), time.thread_time()
            try:
                return inner(store, messages)
            finally:
                self.last = time.perf_counter()
                self.first = self.first or started
                self.wall += self.last - started
                self.cpu += time.thread_time() - cpu
                self.events += len(messages)

        Store.apply_batch = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Store.apply_batch = self._inner  # type: ignore[method-assign]
        self.span += self.last - self.first


async def ingest_rate(
    settings: Settings, last: int, clock: WriterClock | None = None
) -> tuple[float, float, dict[str, float], tuple[int, int, int]]:
    """Events/s from an empty DuckDB file to the whole stream committed; RSS MB; the
    CPU seconds each thread of this process spent meanwhile, by thread name; and how
    often the consumer paused for a full buffer, with how many messages arrived for a
    subscription already gone (received twice) and the most payload bytes the buffer
    grew past a pause (what the server had queued). With a ``clock``, the writer's
    batches are timed too."""
    process = psutil.Process()
    before = {t.id: t.user_time + t.system_time for t in process.threads()}
    started = time.perf_counter()
    with clock or contextlib.nullcontext():
        async with Materializer(settings) as running:
            await running.wait_for_sequence(last, timeout=3600)
            elapsed = time.perf_counter() - started
            rss = process.memory_info().rss / 2**20
            names = {t.native_id: t.name for t in threading.enumerate()}
            cpu: dict[str, float] = {}
            for thread in process.threads():
                name = names.get(thread.id, "other")
                used = thread.user_time + thread.system_time - before.get(thread.id, 0.0)
                cpu[name] = cpu.get(name, 0.0) + used
            ingestor = running.ingestor
            pauses = (
                (ingestor.pauses, ingestor.strays, ingestor.held_peak_bytes)
                if ingestor is not None
                else (0, 0, 0)
            )
    return last / elapsed, rss, cpu, pauses


async def notice_latency(
    settings: Settings,
    rate: int,
    seconds: float,
    events: list[tuple[float, float]] | None = None,
) -> list[float]:
    """Publish → change notice latencies (ms) at ``rate`` events/s; each event's publish
    and notice times (``time.perf_counter``) appended to ``events`` too, when given."""
    latencies: list[float] = []
    async with Materializer(settings) as running:
        nc = await nats.connect(settings.nats_url)
        js = nc.jetstream()
        published: dict[int, float] = {}

        async def on_notice(msg: Any) -> None:
            notice = notice_decoder.decode(msg.data)
            if notice.kind != "change":
                return
            now = time.perf_counter()
            for seq in [s for s in published if s <= notice.version]:
                sent = published.pop(seq)
                latencies.append((now - sent) * 1000)
                if events is not None:
                    events.append((sent, now))

        await nc.subscribe(CHANGES_SUBJECT, cb=on_notice)
        scenario = generate(11, int(rate * seconds))
        interval = 1 / rate
        start = time.perf_counter()
        for i, message in enumerate(scenario.messages):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent = time.perf_counter()
            ack = await js.publish(message.subject, message.data)
            published[ack.seq] = sent
        await running.wait_for_sequence(ack.seq, timeout=60)
        await asyncio.sleep(0.2)
        await nc.drain()
    return latencies


async def query_round_trips(settings: Settings, count: int) -> list[float]:
    """Round trips (ms) of the ``sales_by_hour`` named query over 24 h."""
    times: list[float] = []
    async with Materializer(settings):
        nc = await nats.connect(settings.nats_url)
        params = json.dumps({"from": "2026-01-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}).encode()
        for _ in range(count):
            started = time.perf_counter()
            await nc.request(query_subject("sales_by_hour"), params, timeout=5)
            times.append((time.perf_counter() - started) * 1000)
        await nc.drain()
    return times


def rss_after(url: str, duckdb_path: Path, events: int) -> float:
    """RSS (MB) of a materializer process after it has applied ``events`` events."""
    env = {
        **os.environ,
        "NATS_URL": url,
        "DUCKDB_PATH": str(duckdb_path),
        "MATERIALIZER_HTTP_PORT": str(free_port()),
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "pulse_bi", "materializer"], env=env)
    try:
        while True:
            time.sleep(1)
            try:
                url_stats = f"http://127.0.0.1:{env['MATERIALIZER_HTTP_PORT']}/stats"
                with urllib.request.urlopen(url_stats, timeout=2) as response:
                    if json.load(response)["last_sequence"] >= events:
                        break
            except OSError:
                continue
        return psutil.Process(process.pid).memory_info().rss / 2**20
    finally:
        process.terminate()
        process.wait(timeout=60)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100)."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = LocalNatsServer(store_dir=root / "nats").start()
        try:
            last = await prefill(server.url, args.events)
            load_before = os.getloadavg()
            raws: list[float] = []
            ingests: list[float] = []
            rss = 0.0
            cpu = {"raw": 0.0, "ingest": 0.0}  # this process's CPU seconds, all threads
            assert server.process is not None
            nats_server = psutil.Process(server.process.pid)
            cores = {"raw": Cores(nats_server), "ingest": Cores(nats_server)}
            pauses = strays = held_peak = 0  # the consumer's, for a full buffer (all rounds)
            threads: dict[str, float] = {}  # the same during ingest, by thread
            clock = WriterClock()  # the writer's batches, all rounds
            for round_ in range(args.rounds):
                started = time.process_time()
                with cores["raw"].measuring():
                    raws.append(await raw_consume_rate(server.url, last))
                cpu["raw"] += time.process_time() - started
                settings = bench_settings(server.url, root / f"ingest-{round_}.duckdb")
                started = time.process_time()
                with cores["ingest"].measuring():
                    rate, rss, by_thread, (paused, stray, peak) = await ingest_rate(
                        settings, last, clock
                    )
                pauses += paused
                strays += stray
                held_peak = max(held_peak, peak)
                cpu["ingest"] += time.process_time() - started
                ingests.append(rate)
                for name, seconds in by_thread.items():
                    threads[name] = threads.get(name, 0.0) + seconds
            raw, ingest = statistics.median(raws), statistics.median(ingests)
            load_after = os.getloadavg()
            print(f"machine: {machine()}; switch interval {sys.getswitchinterval() * 1e3:g} ms")
            print(f"stream: {last} events")
            print(
                "load average (1, 5, 15 min): "
                f"{' '.join(f'{x:.2f}' for x in load_before)} before, "
                f"{' '.join(f'{x:.2f}' for x in load_after)} after"
            )
            print(
                f"raw consume (nats-py ordered consumer, no work): {raw:,.0f} events/s "
                f"(rounds: {', '.join(f'{r:,.0f}' for r in raws)})"
            )
            print(
                f"ingest to committed aggregates: {ingest:,.0f} events/s "
                f"({ingest / raw:.2f} x raw), RSS {rss:.0f} MB "
                f"(rounds: {', '.join(f'{r:,.0f}' for r in ingests)}; ratio per round: "
                f"{', '.join(f'{i / r:.2f}' for i, r in zip(ingests, raws, strict=True))})"
            )
            events = last * args.rounds
            print(
                f"CPU of this process per event: raw consume {cpu['raw'] / events * 1e6:.1f} us, "
                f"ingest {cpu['ingest'] / events * 1e6:.1f} us (all threads, DuckDB's included)"
            )
            raw_cores, ingest_cores = cores["raw"], cores["ingest"]
            print(
                "nats-server CPU per event: raw consume"
                f" {raw_cores.server / events * 1e6:.1f} us, ingest"
                f" {ingest_cores.server / events * 1e6:.1f} us; cores busy (the whole machine,"
                f" of {psutil.cpu_count()}): raw consume {raw_cores.machine / raw_cores.wall:.2f},"
                f" ingest {ingest_cores.machine / ingest_cores.wall:.2f}"
            )
            print(
                f"consumer paused for a full buffer: {pauses} times, the buffer growing at most"
                f" {held_peak / 2**20:.1f} MiB of payload past a pause; messages that arrived"
                f" for a subscription already gone (received twice): {strays}"
            )
            busiest = sorted(threads.items(), key=lambda item: -item[1])[:4]
            print(
                "ingest CPU per event by thread: "
                + ", ".join(f"{name} {seconds / events * 1e6:.1f} us" for name, seconds in busiest)
            )
            print(
                f"writer thread in its batches: busy {100 * clock.wall / clock.span:.0f} % of"
                f" the time from the first batch to the last; per event wall"
                f" {clock.wall / events * 1e6:.1f} us, CPU {clock.cpu / events * 1e6:.1f} us (the"
                " rest waiting for the GIL or I/O); its CPU alone caps ingest at"
                f" {events / clock.cpu:,.0f} events/s ({events / clock.cpu / raw:.2f} x raw)"
            )
            reads = await query_round_trips(
                bench_settings(server.url, root / "ingest-0.duckdb"),
                args.queries,
            )
            print(
                f"named query sales_by_hour round trip: p50 {percentile(reads, 50):.2f} ms, "
                f"p99 {percentile(reads, 99):.2f} ms ({len(reads)} requests)"
            )
            lat = await notice_latency(
                bench_settings(server.url, root / "ingest-0.duckdb"),
                rate=1000,
                seconds=args.latency_seconds,
            )
            print(
                f"publish -> change notice at 1,000 events/s: p50 {percentile(lat, 50):.1f} ms,"
                f" p99 {percentile(lat, 99):.1f} ms ({len(lat)} events)"
            )
        finally:
            server.stop()
        if args.rss_events:
            server = LocalNatsServer(store_dir=root / "nats-rss").start()
            try:
                last = await prefill(server.url, args.rss_events, seed=3)
                rss_mb = rss_after(server.url, root / "rss.duckdb", last)
                print(f"materializer RSS after {last:,} events: {rss_mb:.0f} MB")
            finally:
                server.stop()


def arguments() -> argparse.ArgumentParser:
    """The command line: counts and the switch interval within bounds, or a clear error."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=bounded(int, 1, 100_000_000), default=500_000)
    parser.add_argument(
        "--rounds", type=bounded(int, 1, 100), default=3, help="raw consume / ingest pairs"
    )
    parser.add_argument("--queries", type=bounded(int, 1, 10_000_000), default=2000)
    parser.add_argument("--latency-seconds", type=bounded(float, 0.01, 86_400), default=10)
    parser.add_argument(
        "--rss-events", type=bounded(int, 0, 100_000_000), default=0, help="e.g. 5000000"
    )
    parser.add_argument(
        "--switch-interval",
        type=bounded(float, 1e-6, 1.0),
        help="the interpreter's GIL switch interval in seconds (sys.setswitchinterval)",
    )
    return parser


if __name__ == "__main__":
    parsed = arguments().parse_args()
    if parsed.switch_interval is not None:
        sys.setswitchinterval(parsed.switch_interval)
    asyncio.run(main(parsed))
