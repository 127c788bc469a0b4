"""The alert engine hosted by the gateway, when ``GATEWAY_ALERT_RULES`` names a rules file.

It subscribes to change notices on its own, evaluates through the gateway's named-query
client, delivers through ``pulse_bi.alerts.delivery`` and exposes its state to GraphQL
(``alerts``), /health and /metrics (docs/ALERTS.md). Run it on one gateway replica: each
replica with rules evaluates and notifies on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from nats.aio.client import Client as NATS
from prometheus_client import Counter, Gauge, Histogram

from gateway.upstream import Upstream
from gateway.versions import TRACKED
from pulse_bi.alerts.delivery import Deliverer
from pulse_bi.alerts.engine import Engine
from pulse_bi.alerts.rules import Rules, load
from pulse_bi.contract import CHANGES_SUBJECT, notice_decoder
from pulse_bi.tasks import cancel_until_done

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.alerts")

#: Seconds between retries of rules whose last evaluation failed (materializer down).
RETRY_FAILED = 30.0


class AlertService:
    """Engine, deliverer, notice subscription, metrics."""

    def __init__(self, gateway: Gateway, rules_path: Path, state_path: Path | None) -> None:
        self.gateway = gateway
        self.rules: Rules = load(rules_path)  # RulesError stops start-up with the reason
        state = state_path or rules_path.with_name(rules_path.name + ".state.json")
        upstream = gateway.upstream

        async def query(name: str, params: Any) -> Any:
            return (await upstream.query(name, params)).data

        self.engine = Engine(self.rules, query, state)
        registry = gateway.metrics.registry
        self.m_firing = Gauge(
            "gateway_alerts_firing", "1 while the rule fires", ["rule"], registry=registry
        )
        self.m_notifications = Counter(
            "gateway_alert_notifications",
            "Alert deliveries by receiver and outcome (sent, failed)",
            ["receiver", "outcome"],
            registry=registry,
        )
        self.m_latency = Histogram(
            "gateway_alert_evaluation_seconds",
            "From a change notice to the end of its rules' evaluation",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=registry,
        )
        self.deliverer = Deliverer(
            self.engine, lambda r, o, n: self.m_notifications.labels(r, o).inc(n)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)
        self._last_version: int | None = None
        self._shown_version = -1

    async def start(self) -> None:
        self.gateway.upstream.on_connect(self._subscribe)
        self.deliverer.start()
        self._tasks.append(asyncio.create_task(self._run(), name="alerts-evaluate"))
        self._tasks.append(asyncio.create_task(self._clock(), name="alerts-clock"))

    async def close(self) -> None:
        await cancel_until_done(self._tasks)
        await self.deliverer.close()
        await self.engine.close()

    async def _subscribe(self, nc: NATS) -> None:
        async def on_message(msg: Any) -> None:
            try:
                notice = notice_decoder.decode(msg.data)
            except msgspec.DecodeError:
                return
            with contextlib.suppress(asyncio.QueueFull):  # then the gap check evaluates all
                self._queue.put_nowait(notice)

        await nc.subscribe(CHANGES_SUBJECT, cb=on_message)

    async def _run(self) -> None:
        upstream = self.gateway.upstream
        while not upstream.connected:
            await asyncio.sleep(0.05)
        await self._safe(self.engine.evaluate_all())
        self._publish_metrics()
        while True:
            notice = await self._queue.get()
            missed = (
                self._last_version is not None
                and notice.previous_version is not None
                and notice.previous_version > self._last_version
            )
            if notice.kind != "heartbeat" or self._last_version is None:
                self._last_version = max(self._last_version or 0, notice.version)
            if missed or self._queue.qsize() > 1000:
                await self._safe(self.engine.evaluate_all())
            else:
                started = asyncio.get_running_loop().time()
                await self._safe(self.engine.on_notice(notice))
                self.m_latency.observe(asyncio.get_running_loop().time() - started)
            self._publish_metrics()

    async def _clock(self) -> None:
        """When the hour turns (revenue rules) and while rules fail to evaluate."""
        while True:
            now = dt.datetime.now(dt.UTC)
            turn = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
            await asyncio.sleep(min(RETRY_FAILED, (turn - now).total_seconds() + 0.5))
            failed = [
                r for r in self.rules.rules if self.engine.state.rules[r.name].error is not None
            ]
            hourly = [r for r in self.rules.rules if r.kind == "revenue_drop"]
            due = hourly if dt.datetime.now(dt.UTC) >= turn else []
            due += [r for r in failed if r not in due]
            if due:
                await self._safe(self.engine.evaluate(due))
                self._publish_metrics()

    async def _safe(self, work: Any) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # one bad evaluation never stops the loop
            log.exception("alert evaluation failed")

    def _publish_metrics(self) -> None:
        for name, state in self.engine.state.rules.items():
            self.m_firing.labels(name).set(1 if state.status == "firing" else 0)
        if self.engine.version != self._shown_version:
            self._shown_version = self.engine.version
            # `alerts` is not a named query: the response cache keys it by every topic
            # (gateway/execution.py `field_reads`), so a new generation of them all is
            # what retires its cached answers. Alert changes are rare; the cost is one
            # cache miss per cached query.
            self.gateway.versions.bump(TRACKED)
            self._refresh_live()

    def _refresh_live(self) -> None:
        """Mark the live ``alerts`` subscriptions for a refresh by the hub (gateway/live.py)."""
        hub = self.gateway.hub
        marked = False
        for group in hub.groups.values():
            if group.field_name == "alerts":
                group.dirty = True
                marked = True
        if marked:
            hub._wake.set()

    def health(self) -> dict[str, Any]:
        """For /health: firing count and failing receivers."""
        states = self.engine.state.rules.values()
        return {
            "rules": len(self.rules.rules),
            "firing": sum(1 for s in states if s.status == "firing"),
            "failing_receivers": self.deliverer.unhealthy(),
        }


#: The service of each gateway, by its upstream (what a GraphQL context carries).
_SERVICES: weakref.WeakKeyDictionary[Upstream, AlertService] = weakref.WeakKeyDictionary()


def for_upstream(upstream: Any) -> AlertService | None:
    """The alert service of the gateway that owns ``upstream``, if it has one.

    A costly GraphQL operation runs on a worker thread with a wrapper of the upstream
    (gateway/bounded.py ``_MainLoopUpstream``): its ``_upstream`` is the gateway's.
    """
    return _SERVICES.get(getattr(upstream, "_upstream", upstream))


def create(gateway: Gateway) -> AlertService | None:
    """The gateway's alert service when GATEWAY_ALERT_RULES is set (RulesError if bad)."""
    settings = gateway.settings
    if not settings.alert_rules:
        return None
    state = Path(settings.alert_state) if settings.alert_state else None
    service = AlertService(gateway, Path(settings.alert_rules), state)
    _SERVICES[gateway.upstream] = service
    return service
