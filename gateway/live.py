"""The live-query hub: one execution and one encoded payload per distinct subscription.

Subscribers with the same document, variables and auth scope form a group. A change
notice marks the groups whose data it may touch; the refresh loop runs each marked group
once, encodes the `payload` once, and — only when it differs from the last one sent —
pushes the same text to every subscriber (each frame is the subscriber's id spliced in
front of the shared payload). Bursts of notices are coalesced per group: a notice after
a quiet spell is refreshed at once, and a group marked while its refresh runs, or within
its window after it, is refreshed once more when that window has passed, not once per
notice. The window is ``GATEWAY_LIVE_COALESCE_MS``, or longer once a group has spent more
than its share of the time refreshing (``GATEWAY_LIVE_REST_RATIO``, ``Budget``), so a query
that is slow to run is refreshed less often and takes a bounded share of the time; groups
are refreshed independently, so a slow query never holds back a fast one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from graphql import DocumentNode
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from gateway.execution import Executor, encoder, result_payload
from gateway.metrics import Metrics
from gateway.schema import Context
from gateway.settings import Settings
from gateway.upstream import CHARGE, Charge, Upstream
from gateway.versions import Versions, relevant
from pulse_bi.contract import CHANGES_SUBJECT, QUERIES, ChangeNotice, notice_decoder
from pulse_bi.tasks import cancel_until_done

log = logging.getLogger("gateway.live")

_id_encoder = msgspec.json.Encoder()

#: Root fields with arguments that default to the current time, and those arguments
#: (``QuerySpec.clock``).
_CLOCK_FIELDS: dict[str, tuple[str, ...]] = {
    spec.field: tuple(spec.graphql_arg(param) for param in spec.clock)
    for spec in QUERIES
    if spec.clock
}


class Sink(Protocol):
    """Where a subscriber's frames go (a WebSocket connection's send queue)."""

    def push(self, text: str) -> None:
        """Queue one text frame; never blocks."""


@dataclass(eq=False)
class Subscriber:
    """One subscription of one connection."""

    sink: Sink
    id: str
    #: Frame text before the payload, e.g. `{"id":"1","type":"next","payload":`.
    prefix: str
    group: LiveGroup | None = None

    def send(self, payload: str) -> None:
        """Push one result frame."""
        self.sink.push(self.prefix + payload + "}")


def frame_prefix(sub_id: str, message_type: str) -> str:
    """The constant start of every result frame of one subscription."""
    return (
        '{"id":' + _id_encoder.encode(sub_id).decode() + ',"type":"' + message_type + '","payload":'
    )


#: Seconds of refreshing a live group may run ahead of its share of the time
#: (``Budget``): a few slow refreshes in a row (a checkpoint or a fold holding the
#: materializer's reads back) pass without a rest; only a query that stays over its
#: share rests (docs/GATEWAY.md, "A group's window").
BURST_SECONDS = 0.25


@dataclass(eq=False)
class Budget:
    """The share of the time one live group may spend refreshing: ``1 / (1 + ratio)``.

    A token bucket counted in seconds of refreshing: it fills at ``share`` seconds per
    second while the group is not refreshing, up to ``BURST_SECONDS``, and a refresh of
    *t* seconds takes ``t * (1 - share)`` from it (the rest of *t* it earned while
    running). When a refresh leaves it below zero, the group rests until it is back at
    zero: over any stretch of time the group refreshes at most ``share`` of it, plus
    ``BURST_SECONDS`` and the refresh it ends in. With no burst this would be a rest of
    ``ratio * t`` after every refresh; with ratio 0 the group never rests.

    What a refresh costs may be less than the time it took: the hub charges the time
    the gateway spent on it and the materializer's CPU time for its named queries, not
    the time their replies took to come (``gateway.upstream.Charge``), which under load
    is mostly waiting for the materializer's writer and query threads.
    """

    credit: float = BURST_SECONDS
    at: float = -math.inf

    def spend(self, ratio: float, started: float, ended: float, cost: float | None = None) -> float:
        """Charge a refresh that ran from ``started`` to ``ended`` and cost ``cost``
        seconds (None: all of that time); the rest it needs after."""
        share = 1.0 / (1.0 + ratio)
        took = ended - started
        filled = min(BURST_SECONDS, self.credit + (started - self.at) * share)
        self.credit = filled + took * share - (took if cost is None else cost)
        self.at = ended
        return max(0.0, -self.credit / share)


@dataclass(eq=False)
class LiveGroup:
    """Subscribers sharing one live query."""

    key: tuple[Any, ...]
    document: DocumentNode
    operation_name: str | None
    variables: Mapping[str, Any] | None
    field_name: str
    args: Mapping[str, Any]
    context: Context
    subscribers: set[Subscriber] = field(default_factory=set)
    payload: str | None = None
    dirty: bool = False
    #: Refreshes started and the newest one whose result was applied: an older
    #: execution finishing late must not overwrite a newer result.
    issued: int = 0
    applied: int = 0
    #: The last result carried errors (e.g. the materializer was down): retry on heartbeat.
    failed: bool = False
    #: A refresh by the loop is running; the loop time before which the next may not start.
    running: bool = False
    not_before: float = -math.inf
    #: How far ahead of its share of the time the group may still refresh.
    budget: Budget = field(default_factory=Budget)


class Hub:
    """Groups live subscriptions and refreshes them when change notices touch their data."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        upstream: Upstream,
        versions: Versions,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.upstream = upstream
        self.versions = versions
        self.metrics = metrics
        self.groups: dict[tuple[Any, ...], LiveGroup] = {}
        self.subscriber_count = 0
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._semaphore = asyncio.Semaphore(settings.live_concurrency)
        self._rounds: set[asyncio.Task[None]] = set()
        self._initial: set[asyncio.Task[None]] = set()
        self._clock: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the refresh loop; subscribe to notices once NATS is connected."""
        self._runner = asyncio.create_task(self._run(), name="live-hub")
        self._clock = asyncio.create_task(self._hourly(), name="live-hub-clock")
        self._watchdog = asyncio.create_task(self._watch_heartbeats(), name="live-hub-watchdog")
        self.upstream.on_connect(self._subscribe_notices)

    async def _subscribe_notices(self, nc: NATS) -> None:
        await nc.subscribe(CHANGES_SUBJECT, cb=self._on_message)
        await nc.flush()

    async def close(self) -> None:
        """Stop the refresh loop and forget every group."""
        await cancel_until_done(
            t
            for t in [*self._initial, *self._rounds, self._runner, self._clock, self._watchdog]
            if t
        )
        self.groups.clear()

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        subscriber: Subscriber,
        key: tuple[Any, ...],
        document: DocumentNode,
        operation_name: str | None,
        variables: Mapping[str, Any] | None,
        field: str,
        args: Mapping[str, Any],
        context: Context,
    ) -> None:
        """Add a subscriber; it gets the current result at once, then each new one."""
        group = self.groups.get(key)
        if group is None:
            group = LiveGroup(key, document, operation_name, variables, field, args, context)
            self.groups[key] = group
            self.metrics.live_groups.set(len(self.groups))
            # The first result now, not after the current refresh cycle.
            task = asyncio.create_task(self._refresh(group))
            self._initial.add(task)
            task.add_done_callback(self._initial.discard)
        group.subscribers.add(subscriber)
        subscriber.group = group
        self.subscriber_count += 1
        self.metrics.subscriptions.inc()
        if group.payload is not None:
            subscriber.send(group.payload)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove a subscriber; the group goes when its last subscriber does."""
        group = subscriber.group
        if group is None:
            return
        subscriber.group = None
        group.subscribers.discard(subscriber)
        self.subscriber_count -= 1
        self.metrics.subscriptions.dec()
        if not group.subscribers and self.groups.get(group.key) is group:
            del self.groups[group.key]
            self.metrics.live_groups.set(len(self.groups))

    # -- notices --------------------------------------------------------------------------

    async def _on_message(self, msg: Msg) -> None:
        try:
            notice = notice_decoder.decode(msg.data)
        except msgspec.DecodeError:
            log.warning("ignoring an unreadable change notice: %r", msg.data[:200])
            return
        self.on_notice(notice)

    def on_notice(self, notice: ChangeNotice) -> None:
        """Advance the data versions and mark the live queries the notice may change."""
        self.metrics.notices.labels(notice.kind).inc()
        names = self.versions.observe(notice)
        marked = False
        for group in self.groups.values():
            if group.dirty:
                continue
            if (
                names is None
                or group.failed
                or (names and relevant(group.field_name, group.args, notice, names))
            ):
                group.dirty = True
                marked = True
        if marked:
            self._wake.set()

    async def _hourly(self) -> None:
        # Not polling: default windows ("last 24 h", "today") are defined by the clock,
        # so the hour turning is itself a change of what those live queries show.
        while True:
            now = time.time()
            await asyncio.sleep(3600 - now % 3600 + 0.5)
            self.on_hour()

    async def _watch_heartbeats(self) -> None:
        # Not polling for data: when the materializer's heartbeats stop, re-run every live
        # query once, so subscribers see the outage as an error instead of numbers that
        # silently stopped changing. Failed groups refresh on the next heartbeat.
        period = max(self.versions.ttl / 2, 0.1)
        silent = False
        while True:
            await asyncio.sleep(period)
            if self.versions.known:
                silent = False
            elif self.versions.seen is not None and not silent:
                silent = True
                log.warning("no heartbeat from the materializer for %.1f s", self.versions.ttl)
                self.refresh_all()

    def on_hour(self) -> None:
        """Refresh live queries whose time window or date defaults to now."""
        marked = False
        for group in self.groups.values():
            if group.field_name in _CLOCK_FIELDS and any(
                group.args.get(name) is None for name in _CLOCK_FIELDS[group.field_name]
            ):
                group.dirty = marked = True
        if marked:
            self._wake.set()

    def refresh_all(self) -> None:
        """Re-run every live query (e.g. after reconnecting to NATS)."""
        for group in self.groups.values():
            group.dirty = True
        self._wake.set()

    # -- refreshing -----------------------------------------------------------------------

    async def _run(self) -> None:
        # Per group, leading edge: a group marked after a quiet spell is refreshed at once;
        # one marked while its refresh runs, or within its window after it, waits for the
        # window to pass since that refresh ended (docs/GATEWAY.md, "Bursts"). Groups do
        # not wait for one another.
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            due = math.inf
            for group in self.groups.values():
                if not group.dirty or group.running:
                    continue
                if group.not_before > now:
                    due = min(due, group.not_before)
                    continue
                group.dirty = False
                group.running = True
                task = asyncio.create_task(self._round(group))
                self._rounds.add(task)
                task.add_done_callback(self._rounds.discard)
            if due == math.inf:
                await self._wake.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due - now)

    async def _round(self, group: LiveGroup) -> None:
        """One refresh of a marked group, then its window: the coalescing window, or the
        rest its ``Budget`` needs when that is longer."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        charge = Charge()
        try:
            async with self._semaphore:
                started = loop.time()
                CHARGE.set(charge)  # this task's context: its named queries add to it
                await self._refresh(group)
        except Exception:
            # Never let one bad refresh end live updates for this group or anyone else.
            log.exception("live refresh failed")
        finally:
            ended = loop.time()
            self.metrics.live_refresh_seconds.labels(group.field_name).observe(ended - started)
            # The gateway's own time (round trips running at once can wait longer in
            # sum than the refresh took) and what the materializer says it spent.
            cost = max(0.0, ended - started - charge.waited) + charge.work
            self.metrics.live_charged_seconds.labels(group.field_name).observe(cost)
            # A failed refresh (the materializer down, its replies timing out) measured
            # waiting, not work: it is not charged, and resting after it would only delay
            # the recovery.
            rest = (
                0.0
                if group.failed
                else group.budget.spend(self.settings.live_rest_ratio, started, ended, cost)
            )
            group.not_before = ended + max(self.settings.live_coalesce_ms / 1000.0, rest)
            group.running = False
            if group.dirty:
                self._wake.set()

    async def _refresh(self, group: LiveGroup) -> None:
        """Execute once, encode once, send to all — unless nothing changed."""
        if not group.subscribers:
            return
        self.metrics.live_refreshes.inc()
        group.issued += 1
        ticket = group.issued
        try:
            result = await self.executor.execute(
                group.document, group.context, group.variables, group.operation_name
            )
            payload = encoder.encode(result_payload(result)).decode()
        except Exception:
            log.exception("live query failed")
            group.failed = True
            return
        if ticket < group.applied:
            return
        group.applied = ticket
        group.failed = bool(result.errors)
        if payload == group.payload:
            return
        group.payload = payload
        subscribers = list(group.subscribers)
        for subscriber in subscribers:
            subscriber.send(payload)
        self.metrics.live_messages.inc(len(subscribers))
        self.metrics.live_fanout.observe(len(subscribers))

    def stats(self) -> dict[str, int]:
        """Groups and subscribers, for /stats."""
        return {"groups": len(self.groups), "subscriptions": self.subscriber_count}
