"""Alert evaluation: rules re-evaluated on change notices, with ``for`` and hysteresis.

A rule reads one named query (``SOURCES``); a change notice re-evaluates the rules whose
query it may change, decided by the gateway's relevance logic (``spec_relevant``). A
rule's state is ``inactive``, ``pending`` (condition true for less than ``for``) or
``firing``; a firing rule resolves only when its value is past the threshold by the
hysteresis. Each transition to firing or back is one notification, queued durably in the
state file before delivery, so a restart neither re-sends nor loses one
(docs/ALERTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec

from gateway.versions import spec_relevant, touched
from pulse_bi.alerts.rules import Rule, Rules
from pulse_bi.contract import ChangeNotice, QuerySpec
from pulse_bi.contract.registry import (
    LOW_STOCK,
    OVERDUE_INVOICES,
    PIPELINE,
    SALES_SUMMARY,
    OverdueParams,
    PipelineRow,
    SalesSummaryRow,
    SalesWindow,
    StockLevelRow,
    WarehouseFilter,
)

log = logging.getLogger("pulse_bi.alerts")

Status = Literal["inactive", "pending", "firing"]
#: One named query: (name, params struct) -> typed data (gateway ``Upstream.query``).
Query = Callable[[str, Any], Awaitable[Any]]

#: The named query each rule kind reads.
SOURCES: dict[str, QuerySpec] = {  # type: ignore[type-arg]
    "low_stock": LOW_STOCK,
    "overdue_receivables": OVERDUE_INVOICES,
    "revenue_drop": SALES_SUMMARY,
    "pipeline_lag": PIPELINE,
    "rejected_events": PIPELINE,
    "data_gaps": PIPELINE,
}


class RuleState(msgspec.Struct, kw_only=True):
    """What is known of one rule, kept in the state file."""

    status: Status = "inactive"
    #: When the current status began.
    since: dt.datetime | None = None
    #: The last value (None when it could not be computed, e.g. no revenue last week).
    value: Decimal | None = None
    evaluated_at: dt.datetime | None = None
    #: Why the last evaluation failed, if it did.
    error: str | None = None
    #: Whether the current firing was notified (not silenced): only then is its end.
    notified: bool = False


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One transition of one rule, to be delivered to each of its receivers once."""

    id: str
    rule: str
    kind: str
    status: Literal["firing", "resolved"]
    value: Decimal | None
    threshold: Decimal
    since: dt.datetime
    at: dt.datetime
    description: str = ""


class StateFile(msgspec.Struct, kw_only=True):
    rules: dict[str, RuleState] = msgspec.field(default_factory=dict)
    #: receiver -> notifications not yet delivered there.
    outbox: dict[str, list[Notification]] = msgspec.field(default_factory=dict)


_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(StateFile)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Engine:
    """Rules, their states and the outbox; ``on_notice`` and ``evaluate_all`` drive it."""

    def __init__(
        self,
        rules: Rules,
        query: Query,
        state_path: Path,
        clock: Callable[[], dt.datetime] = now_utc,
    ) -> None:
        self.rules = rules
        self.query = query
        self.state_path = state_path
        self.clock = clock
        self.state = self._load()
        for rule in rules.rules:
            self.state.rules.setdefault(rule.name, RuleState())
        for name in list(self.state.rules):
            if name not in {r.name for r in rules.rules}:
                del self.state.rules[name]  # a rule removed from the file
        #: Set whenever a state or the outbox changes (subscriptions, delivery wake-up).
        self.changed = asyncio.Event()
        self.version = 0
        self.evaluations = 0
        self.errors = 0
        #: Seconds from a notice's arrival to the end of its rules' evaluation, last 1,000.
        self.latencies: list[float] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- persistence --------------------------------------------------------------------

    def _load(self) -> StateFile:
        try:
            data = self.state_path.read_bytes()
        except FileNotFoundError:
            return StateFile()
        try:
            return _decoder.decode(data)
        except msgspec.DecodeError as exc:
            # Keep the unreadable file for a person to look at; start from scratch.
            broken = self.state_path.with_suffix(self.state_path.suffix + ".unreadable")
            os.replace(self.state_path, broken)
            log.error("alert state %s unreadable (%s); moved to %s", self.state_path, exc, broken)
            return StateFile()

    def save(self) -> None:
        """Write the state file atomically (temporary file, fsync, rename)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_path.with_suffix(self.state_path.suffix + ".partial")
        with partial.open("wb") as file:
            file.write(_encoder.encode(self.state))
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.state_path)

    def _touch(self) -> None:
        self.version += 1
        self.changed.set()
        self.changed = asyncio.Event()

    # -- evaluation ---------------------------------------------------------------------

    def relevant(self, rule: Rule, notice: ChangeNotice, names: set[str]) -> bool:
        """Whether ``notice`` may change the value ``rule`` reads."""
        spec = SOURCES[rule.kind]
        args: dict[str, Any] = {}
        if rule.kind == "low_stock":
            args = {"warehouse": rule.warehouse}
        elif rule.kind == "overdue_receivables":
            args = {"customerId": rule.customer_id}
        elif rule.kind == "revenue_drop":
            return bool(names.intersection(spec.reads))  # two windows: any sales change
        return spec_relevant(spec, args, notice, names)

    async def on_notice(self, notice: ChangeNotice) -> None:
        """Re-evaluate the rules this change notice may affect."""
        if notice.kind == "heartbeat":
            return
        started = time.perf_counter()
        names = touched(notice)
        due = [r for r in self.rules.rules if self.relevant(r, notice, names)]
        if due:
            await self.evaluate(due)
            self.latencies.append(time.perf_counter() - started)
            del self.latencies[:-1000]

    async def evaluate_all(self) -> None:
        """Evaluate every rule (at start, and when the hour turns)."""
        await self.evaluate(list(self.rules.rules))

    async def evaluate(self, rules: list[Rule]) -> None:
        async with self._lock:
            results = await asyncio.gather(*(self._value(r) for r in rules), return_exceptions=True)
            changed = False
            for rule, result in zip(rules, results, strict=True):
                self.evaluations += 1
                state = self.state.rules[rule.name]
                state.evaluated_at = self.clock()
                if isinstance(result, BaseException):
                    if isinstance(result, asyncio.CancelledError):
                        raise result
                    self.errors += 1
                    state.error = f"{type(result).__name__}: {result}"
                    log.warning("alert %s not evaluated: %s", rule.name, state.error)
                    changed = True
                    continue
                state.error = None
                changed |= self._step(rule, state, result)
            if changed:
                self.save()
                self._touch()

    def _step(self, rule: Rule, state: RuleState, value: Decimal | None) -> bool:
        """Advance one rule's state with a new value; True when anything changed."""
        now = self.clock()
        before = (state.status, state.value)
        state.value = value
        breached = value is not None and (
            value < rule.threshold if rule.below else value > rule.threshold
        )
        if state.status == "inactive" and breached:
            state.status, state.since = "pending", now
        if state.status == "pending":
            if not breached:
                state.status, state.since = "inactive", now
            else:
                assert state.since is not None
                wait = rule.for_seconds - (now - state.since).total_seconds()
                if wait <= 0:
                    state.status, state.since = "firing", now
                    self._notify(rule, state, "firing", now)
                else:
                    self._recheck(rule, wait)
        elif state.status == "firing" and value is not None:
            margin = rule.hysteresis
            cleared = (
                value >= rule.threshold + margin if rule.below else value <= rule.threshold - margin
            )
            if cleared:
                since = state.since or now
                state.status, state.since = "inactive", now
                self._notify(rule, state, "resolved", now, since)
        return (state.status, state.value) != before

    def _recheck(self, rule: Rule, wait: float) -> None:
        """Evaluate ``rule`` again when its ``for`` has run out (no notice may come)."""
        old = self._timers.pop(rule.name, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(rule.name, None)
            task = loop.create_task(self.evaluate([rule]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[rule.name] = loop.call_later(wait + 0.01, fire)

    def _notify(
        self,
        rule: Rule,
        state: RuleState,
        status: Literal["firing", "resolved"],
        at: dt.datetime,
        since: dt.datetime | None = None,
    ) -> None:
        if status == "resolved" and not state.notified:
            log.info("alert %s resolved (its firing was silenced)", rule.name)
            return
        if self.rules.silenced(rule.name, at):
            log.info("alert %s %s (silenced)", rule.name, status)
            state.notified = False
            return
        state.notified = status == "firing"
        began = since or at
        notification = Notification(
            id=f"{rule.name}/{began.isoformat()}/{status}",
            rule=rule.name,
            kind=rule.kind,
            status=status,
            value=state.value,
            threshold=rule.threshold,
            since=began,
            at=at,
            description=rule.description,
        )
        log.info("alert %s %s (value %s)", rule.name, status, state.value)
        for receiver in rule.receivers:
            queue = self.state.outbox.setdefault(receiver, [])
            if all(n.id != notification.id for n in queue):  # de-duplicated
                queue.append(notification)

    async def _value(self, rule: Rule) -> Decimal | None:
        """The number a rule compares with its threshold."""
        kind = rule.kind
        if kind == "low_stock":
            rows: list[StockLevelRow] = await self.query(
                LOW_STOCK.name, WarehouseFilter(warehouse=rule.warehouse, limit=5000)
            )
            return Decimal(sum(1 for r in rows if rule.sku is None or r.sku == rule.sku))
        if kind == "overdue_receivables":
            invoices = await self.query(
                OVERDUE_INVOICES.name,
                OverdueParams(min_days_overdue=rule.min_days, customer_id=rule.customer_id),
            )
            return sum((r.balance for r in invoices), Decimal("0.00"))
        if kind == "revenue_drop":
            hour = self.clock().replace(minute=0, second=0, microsecond=0)
            week = dt.timedelta(days=7)
            span = dt.timedelta(hours=1)
            current: SalesSummaryRow = await self.query(
                SALES_SUMMARY.name, SalesWindow(from_=hour, to=hour + span)
            )
            before: SalesSummaryRow = await self.query(
                SALES_SUMMARY.name, SalesWindow(from_=hour - week, to=hour - week + span)
            )
            if before.net_revenue <= 0:
                return None  # nothing to compare with
            return (Decimal(current.net_revenue) / Decimal(before.net_revenue)).quantize(
                Decimal("0.0001")
            )
        pipeline: PipelineRow = await self.query(PIPELINE.name, {})
        if kind == "pipeline_lag":
            return Decimal(pipeline.lag)
        if kind == "rejected_events":
            return Decimal(pipeline.events_rejected)
        return Decimal(pipeline.events_missing)

    # -- delivery bookkeeping -----------------------------------------------------------

    def pending(self, receiver: str) -> list[Notification]:
        """Notifications not yet delivered to ``receiver``, oldest first."""
        return list(self.state.outbox.get(receiver, ()))

    def delivered(self, receiver: str, ids: set[str]) -> None:
        """Drop delivered notifications from the outbox, durably."""
        queue = self.state.outbox.get(receiver, [])
        self.state.outbox[receiver] = [n for n in queue if n.id not in ids]
        self.save()

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
