"""Soak benchmark: the real materializer and gateway under steady traffic for a long time.

Run: ``.venv/bin/python -m bench.soak --rate 20 --minutes 30 [--out soak-20.jsonl]``.

nats-server, the materializer and the gateway run as their own processes (bench
``gateway_stack.Stack``); this process publishes simulated Pulse ERP traffic at a steady
rate (the simulator's mix: every event type, 1 % duplicates, 0.1 % bad input), holds a
few live GraphQL subscriptions over real WebSockets and sends named queries over HTTP.
Every ``--sample-seconds`` it writes one JSON line: batch times (from the materializer's
per-batch DEBUG log line), publish → change notice and publish → subscriber latency,
named-query latency, RSS and CPU of both processes, WAL, ``.tmp`` folder and file size,
checkpoints. At the end it compares the first and the last window (5 minutes, or a third
of a shorter run): p99 ratios last/first (target ≤ 1.2 for batch time and notice
latency), the temp folder's bound and the RSS slope; the summary goes to stdout and to
``<out>.summary.json``. It stops by itself and stops every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import nats
import psutil
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from bench.bench_gateway import machine
from bench.gateway_stack import RawWebSocket, Stack
from bench.soak_stats import Visibility, Window, batch_times, compare, sample_trend, summarize
from pulse_bi.contract import CHANGES_SUBJECT, STREAM_NAME, notice_decoder
from pulse_bi.simulator import generate, publish
from pulse_bi.simulator.generator import iter_messages, live_clock, utc_now
from pulse_bi.streams import ensure_stream

#: The materializer with its per-batch DEBUG line on and everything else at INFO.
MATERIALIZER_MAIN = """
import logging
logging.basicConfig(level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("pulse_bi.materializer.consumer").setLevel(logging.DEBUG)
from pulse_bi.cli import main
main(["materializer"])
"""

#: Live queries held by the subscribers, round robin; `pipeline` ones measure latency.
LIVE_QUERIES = {
    "pipeline": "subscription { pipeline { lastSequence } }",
    "salesSummary": "subscription { salesSummary { orders netRevenue } }",
    "arAging": "subscription { arAging { totalOutstanding openInvoices } }",
    "topProducts": "subscription { topProducts(limit: 5) { sku units revenue } }",
}
#: Named queries sent over HTTP in turn, as a dashboard would (``--http-queries`` picks).
HTTP_QUERIES = {
    "salesByHour": "{ salesByHour { hour orders netRevenue } }",
    "arAging": (
        "{ arAging { totalOutstanding openInvoices byCustomer(limit: 10) { customerId total } } }"
    ),
    "overdueInvoices": (
        "{ overdueInvoices(minDaysOverdue: 1, limit: 500) { invoiceId balance daysOverdue } }"
    ),
    "topProducts": "{ topProducts(limit: 10) { sku units revenue } }",
    "lowStock": "{ lowStock { sku warehouse onHand } }",
    "pipeline": "{ pipeline { lastSequence lag } }",
}
MAX_IN_FLIGHT = 20_000


class Soak:
    """One soak run: load, observers and sampler sharing this process's event loop."""

    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.stop = asyncio.Event()
        self.sent: dict[int, float] = {}  # publish index -> perf_counter, until its ack
        self.published: dict[int, float] = {}  # stream sequence -> perf_counter
        self.notices = Visibility("notices")
        self.subscribers: list[Visibility] = []
        self.observers: list[Visibility] = [self.notices]
        self.query_times: list[float] = []
        self.counts = {"published": 0, "stored": 0, "duplicate": 0, "publish_errors": 0}
        self.counts |= {"query_errors": 0, "ws_frames": 0, "ws_reconnects": 0}
        self.first_error: str | None = None
        self.last_sequence = 0

    # -- load ---------------------------------------------------------------------------

    async def publish_loop(self, nc: NATS, seconds: float) -> None:
        """Publish the simulator's live traffic at ``--rate`` for ``seconds``."""
        rate = self.args.rate
        inbox = nc.new_inbox()
        prefix = len(inbox) + 1

        async def on_ack(msg: Msg) -> None:
            self._on_ack(msg, prefix)

        await nc.subscribe(inbox + ".*", cb=on_ack)
        messages = iter_messages(
            self.args.seed,
            clock=live_clock(utc_now(), rate),
            out_of_order=0.02,
            duplicates=0.01,
            bad=0.001,
        )
        began = time.perf_counter()
        index = 0
        while not self.stop.is_set():
            now = time.perf_counter()
            if now - began >= seconds:
                break
            due = min(int((now - began) * rate) + 1, int(seconds * rate))
            while index < due and len(self.sent) < MAX_IN_FLIGHT:
                message = next(messages)
                self.sent[index] = time.perf_counter()
                await nc.publish(
                    message.subject, message.data, reply=f"{inbox}.{index}", headers=message.headers
                )
                index += 1
                self.counts["published"] += 1
            await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        await nc.flush()

    def _on_ack(self, msg: Msg, prefix: int) -> None:
        sent = self.sent.pop(int(msg.subject[prefix:]), None)
        ack: dict[str, Any]
        try:
            ack = json.loads(msg.data) if msg.data else {"error": str(msg.headers)}
        except ValueError:
            ack = {"error": msg.data[:200].decode(errors="replace")}
        if "error" in ack or sent is None:
            self.counts["publish_errors"] += 1
            self.first_error = self.first_error or str(ack)
        elif ack.get("duplicate"):
            self.counts["duplicate"] += 1
        else:
            sequence = int(ack["seq"])
            self.counts["stored"] += 1
            self.last_sequence = max(self.last_sequence, sequence)
            self.published[sequence] = sent
            for observer in self.observers:
                observer.acked(sequence, sent)

    async def on_notice(self, msg: Msg) -> None:
        """A change notice: everything up to its version is visible to the gateway."""
        notice = notice_decoder.decode(msg.data)
        if notice.kind == "change":
            self.notices.saw(notice.version, time.perf_counter(), self.published)

    async def subscriber(self, kind: str, observer: Visibility | None) -> None:
        """One WebSocket subscriber; reconnects if the socket drops."""
        while not self.stop.is_set():
            ws: RawWebSocket | None = None
            try:
                ws = await RawWebSocket.connect(self.stack.gateway_port)
                ws.send('{"type":"connection_init"}')
                await ws.recv()
                payload = {"query": LIVE_QUERIES[kind]}
                ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
                while True:
                    frame = json.loads(await ws.recv())
                    at = time.perf_counter()
                    if frame.get("type") == "ping":
                        ws.send('{"type":"pong"}')
                    elif frame.get("type") == "next":
                        self.counts["ws_frames"] += 1
                        if observer is not None:
                            version = int(frame["payload"]["data"]["pipeline"]["lastSequence"])
                            observer.saw(version, at, self.published)
            except (ConnectionError, OSError, asyncio.IncompleteReadError, KeyError, TypeError):
                self.counts["ws_reconnects"] += 1
                await asyncio.sleep(1)
            finally:
                if ws is not None:
                    ws.close()

    async def query_loop(self) -> None:
        """Named queries over HTTP in turn, one at a time, ``--query-interval`` apart."""
        async with httpx.AsyncClient(base_url=self.stack.gateway_url, timeout=30) as http:
            turn = 0
            queries = [HTTP_QUERIES[name] for name in self.args.http_queries]
            while not self.stop.is_set():
                query = queries[turn % len(queries)]
                turn += 1
                started = time.perf_counter()
                try:
                    reply = await http.post("/graphql", json={"query": query})
                    ok = reply.status_code == 200 and not reply.json().get("errors")
                except (httpx.HTTPError, ValueError):
                    ok = False
                self.query_times.append(time.perf_counter() - started)
                if not ok:
                    self.counts["query_errors"] += 1
                await asyncio.sleep(self.args.query_interval)

    # -- sampling -----------------------------------------------------------------------

    async def sampler(self, out: Any, windows: list[Window], began: float) -> list[dict[str, Any]]:
        """One JSON line per sample until the run stops (then one last sample)."""
        samples: list[dict[str, Any]] = []
        log = self.stack.tmp / "materializer.log"
        offset = log.stat().st_size
        processes = {n: psutil.Process(self.stack.pid(n)) for n in ("materializer", "gateway")}
        processes["load"] = psutil.Process()  # this process: publisher and clients
        cpu = {n: p.cpu_times() for n, p in processes.items()}
        last_at = time.perf_counter()
        async with httpx.AsyncClient(timeout=10) as http:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.args.sample_seconds)
                now = time.perf_counter()
                with log.open("rb") as file:
                    file.seek(offset)
                    chunk = file.read()
                end = chunk.rfind(b"\n") + 1
                offset += end
                sample: dict[str, Any] = {
                    "t": round(now - began, 1),
                    "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    # The machine is shared: its load explains much of the noise.
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
                # Everything measured up to `now` first; the scrapes below may be slow.
                figures = {
                    "batch_seconds": batch_times(chunk[:end]),
                    "notice_latency": self.notices.take(),
                    "subscriber_latency": [v for o in self.subscribers for v in o.take()],
                    "query_latency": self.query_times,
                }
                self.query_times = []
                sample |= dict(self.counts)
                sample |= self._process_figures(processes, cpu, now - last_at)
                sample |= self._disk_figures()
                for key, values in figures.items():
                    sample[key.replace("_seconds", "").replace("_latency", "") + "_ms"] = summarize(
                        values
                    )
                    for window in windows:
                        if window.holds(sample["t"]):
                            window.add(key, values)
                sample |= await self._materializer_figures(http)
                self._forget_seen()
                last_at = now
                samples.append(sample)
                out.write(json.dumps(sample) + "\n")
                out.flush()
                self._print(sample)
                if self.stop.is_set():
                    return samples

    async def _materializer_figures(self, http: httpx.AsyncClient) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        try:
            health = await http.get(self.stack.materializer_url + "/health")
            stats = health.json()
            figures |= {
                "materializer_health": health.status_code,
                "applied_sequence": stats.get("last_sequence"),
                "lag": stats.get("lag"),
            }
            text = (await http.get(self.stack.materializer_url + "/metrics")).text
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name == "pulse_materializer_checkpoint_seconds_count":
                        figures["checkpoints"] = int(s.value)
                    elif s.name == "pulse_materializer_checkpoint_seconds_sum":
                        figures["checkpoint_seconds_total"] = round(s.value, 3)
                    elif s.name == "pulse_materializer_batches_total":
                        figures["batches_total"] = int(s.value)
                    elif s.name == "pulse_materializer_query_seconds_sum":
                        reads = figures.setdefault("query_seconds_by_name", {})
                        reads[s.labels["query"]] = round(s.value, 3)
            gateway = await http.get(self.stack.gateway_url + "/health")
            figures["gateway_health"] = gateway.status_code
        except Exception as exc:  # a failed scrape must not end the sampling
            # (a run once lost its sampler to an import that failed while the virtualenv
            # was being reinstalled under it)
            figures["sample_error"] = f"{type(exc).__name__}: {exc}"
        return figures

    def _process_figures(
        self, processes: dict[str, psutil.Process], cpu: dict[str, Any], elapsed: float
    ) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for name, process in processes.items():
            try:
                times = process.cpu_times()
                figures[f"{name}_rss_mb"] = round(process.memory_info().rss / 2**20, 1)
            except psutil.Error:
                figures[f"{name}_rss_mb"] = None
                figures[f"{name}_exited"] = True
                self.stop.set()
                continue
            used = times.user + times.system - cpu[name].user - cpu[name].system
            figures[f"{name}_cpu_pct"] = round(100 * used / max(elapsed, 1e-3), 1)
            cpu[name] = times
        return figures

    def _disk_figures(self) -> dict[str, Any]:
        path = self.stack.duckdb_path
        temp = path.with_name(path.name + ".tmp")
        wal = path.with_name(path.name + ".wal")
        temp_bytes = (
            sum(f.stat().st_size for f in temp.glob("**/*") if f.is_file()) if temp.is_dir() else 0
        )
        return {
            "file_mb": _mb(path),
            "wal_mb": _mb(wal),
            "tmp_mb": round(temp_bytes / 2**20, 2),
        }

    def _forget_seen(self) -> None:
        """Drop publish times every observer has passed (bounded memory)."""
        seen = min(o.last for o in self.observers)
        for sequence in [s for s in self.published if s <= seen]:
            del self.published[sequence]

    def _print(self, s: dict[str, Any]) -> None:
        print(
            f"t={s['t']:>7.1f}s pub={s['published']} seq={s.get('applied_sequence')} "
            f"batch p99={s['batch_ms']['p99']} notice p99={s['notice_ms']['p99']} "
            f"sub p99={s['subscriber_ms']['p99']} query p99={s['query_ms']['p99']} ms "
            f"rss m={s.get('materializer_rss_mb')} g={s.get('gateway_rss_mb')} MB "
            f"wal={s['wal_mb']} tmp={s['tmp_mb']} file={s['file_mb']} MB "
            f"ckpt={s.get('checkpoints')}",
            flush=True,
        )


def _mb(path: Path) -> float:
    try:
        return round(path.stat().st_size / 2**20, 2)
    except FileNotFoundError:
        return 0.0


async def _prefill(stack: Stack, count: int) -> int:
    """Publish ``count`` simulated events of the last 48 h; wait until they are applied."""
    assert stack.nats is not None
    nc = await nats.connect(stack.nats.url)
    js = nc.jetstream()
    await ensure_stream(js)
    if count:
        await publish(nc, generate(7, count).messages, ack_every=16)
    last = int((await js.stream_info(STREAM_NAME)).state.last_seq)
    await nc.drain()
    async with httpx.AsyncClient(base_url=stack.materializer_url, timeout=5) as http:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (await http.get("/stats")).json()["last_sequence"] >= last:
                return last
            await asyncio.sleep(0.5)
    raise TimeoutError(f"prefill of {count} events not applied within 10 minutes")


async def run(args: argparse.Namespace, stack: Stack, out_path: Path) -> dict[str, Any]:
    """Prefill, then steady traffic for ``--minutes``; the summary."""
    prefilled = await _prefill(stack, args.prefill)
    assert stack.nats is not None
    soak = Soak(args, stack)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, soak.stop.set)
    nc = await nats.connect(stack.nats.url)
    await nc.subscribe(CHANGES_SUBJECT, cb=soak.on_notice)
    seconds = args.minutes * 60
    window = min(300.0, seconds / 3)
    windows = [Window("first", 0, window), Window("last", seconds - window, seconds + 3600)]
    tasks = []
    kinds = list(LIVE_QUERIES)
    for i in range(args.subscribers):
        kind = kinds[i % len(kinds)]
        observer = Visibility(f"subscriber-{i}") if kind == "pipeline" else None
        if observer is not None:
            observer.last = prefilled
            soak.subscribers.append(observer)
            soak.observers.append(observer)
        tasks.append(asyncio.create_task(soak.subscriber(kind, observer)))
    soak.notices.last = prefilled
    await asyncio.sleep(2)  # subscribers have their first result
    tasks.append(asyncio.create_task(soak.query_loop()))
    began = time.perf_counter()
    with out_path.open("w") as out:
        sampler = asyncio.create_task(soak.sampler(out, windows, began))
        await soak.publish_loop(nc, seconds)
        publishing = time.perf_counter() - began
        # Let every observer catch up with the last event before the final sample.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not soak.stop.is_set():
            if min(o.last for o in soak.observers) >= soak.last_sequence and not soak.sent:
                break
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - began
        soak.stop.set()
        samples = await sampler
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await nc.drain()
    return {
        "command": f"python -m bench.soak --rate {args.rate:g} --minutes {args.minutes:g}",
        "machine": machine(),
        "started": samples[0]["at"] if samples else None,
        "rate": args.rate,
        "seconds": round(elapsed, 1),
        "rate_achieved": round(soak.counts["published"] / max(publishing, 1e-9), 1),
        "prefilled_events": prefilled,
        "subscribers": args.subscribers,
        "window_seconds": window,
        "counts": soak.counts,
        "first_publish_error": soak.first_error,
        "events_not_seen_at_end": len(soak.sent) + len(soak.published),
        "max_lag": max((s.get("lag") or 0 for s in samples), default=None),
        "unhealthy_samples": sum(
            1
            for s in samples
            if s.get("materializer_health") != 200 or s.get("gateway_health") != 200
        ),
        "checkpoints": samples[-1].get("checkpoints") if samples else None,
        "first_vs_last": compare(windows[0], windows[1]),
        "trend": sample_trend(samples, window),
    }


def main() -> None:
    """Parse arguments, run the soak on a fresh stack, print and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=20, help="events/s published")
    parser.add_argument("--minutes", type=float, default=30, help="length of the steady traffic")
    parser.add_argument("--out", type=Path, help="JSON lines file (default soak-<rate>.jsonl)")
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--subscribers", type=int, default=6, help="WebSocket subscribers")
    parser.add_argument("--query-interval", type=float, default=0.2, help="s between queries")
    parser.add_argument("--prefill", type=int, default=50_000, help="events before the soak")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--checkpoint-interval", type=float, help="CHECKPOINT_INTERVAL of the materializer"
    )
    parser.add_argument(
        "--gateway-env", action="append", default=[], help="KEY=VALUE for the gateway"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    parser.add_argument(
        "--http-queries",
        type=lambda text: [name.strip() for name in text.split(",")],
        default=list(HTTP_QUERIES),
        help=f"comma-separated, in turn (default all: {','.join(HTTP_QUERIES)})",
    )
    args = parser.parse_args()
    unknown = [name for name in args.http_queries if name not in HTTP_QUERIES]
    if unknown or not args.http_queries:
        parser.error(f"--http-queries: unknown {unknown}; known: {', '.join(HTTP_QUERIES)}")
    out_path = args.out or Path(f"soak-{args.rate:g}.jsonl")
    env = {"LOG_LEVEL": "INFO"}
    if args.checkpoint_interval is not None:
        env["CHECKPOINT_INTERVAL"] = str(args.checkpoint_interval)
    # SIGTERM while the stack starts: unwind through `finally` so every child stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="pulse-bi-soak-"))
    stack = Stack(tmp)
    try:
        gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
        stack.start(gateway_env, materializer_env=env, materializer_main=MATERIALIZER_MAIN)
        summary = uvloop.run(run(args, stack, out_path))
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    summary["out"] = str(out_path)
    text = json.dumps(summary, indent=2)
    out_path.with_suffix(".summary.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
