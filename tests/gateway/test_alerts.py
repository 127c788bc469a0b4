"""Alerts end to end: published events -> real materializer -> gateway's alert engine ->
a real HTTP receiver (webhook and Slack-compatible) and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from gateway.settings import Settings
from pulse_bi.alerts.engine import Engine
from pulse_bi.alerts.rules import RulesError, parse
from pulse_bi.contract.registry import PipelineRow
from pulse_bi.natsserver import free_port
from tests.conftest import cloud_event, publish_events
from tests.gateway.conftest import Server, until

SECRET = "webhook-secret"
NOW = dt.datetime.now(dt.UTC)


# -- receivers --------------------------------------------------------------------------


@dataclass
class HttpReceiver:
    """A real HTTP server recording POSTs; answers 500 to the first ``fail`` of them."""

    fail: int = 0
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.attempts += 1
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.posts.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def alerts(self, path: str = "/hook") -> list[dict[str, Any]]:
        return [a for p, _, b in self.posts if p == path for a in json.loads(b)["alerts"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@dataclass
class Alerting:
    """Starts gateways that evaluate the alert rules written to a file of ``directory``."""

    settings: Settings
    server_factory: Any
    directory: Path

    def start(self, rules: str | None = None, file: str = "rules.yaml", **changes: Any) -> Server:
        """Write ``rules`` (None: keep the file as it is) and start a gateway on them."""
        path = self.directory / file
        if rules is not None:
            path.write_text(rules)
        return cast(
            Server, self.server_factory(self.settings.replace(alert_rules=str(path), **changes))
        )


@pytest.fixture
def alerting(settings: Settings, server_factory: Any, tmp_path: Path) -> Alerting:
    return Alerting(settings, server_factory, tmp_path)


def hook_rules(receiver: HttpReceiver, rules: str, defaults: str = "group_wait: 0.1s") -> str:
    """A rules file sending every rule to one signed webhook of ``receiver``."""
    return f"""
receivers:
  hook: {{type: webhook, url: "{receiver.url}/hook", secret: {SECRET}}}
defaults: {{receivers: [hook], {defaults}}}
rules:
{rules}
"""


def rules_yaml(receiver: HttpReceiver, smtp_port: int, extra: str = "") -> str:
    return f"""
receivers:
  hook: {{type: webhook, url: "{receiver.url}/hook", secret: {SECRET}}}
  slack: {{type: slack, url: "{receiver.url}/slack"}}
  mail: {{type: email, host: 127.0.0.1, port: {smtp_port}, sender: bi@example.com,
          to: [ops@example.com]}}
defaults:
  receivers: [hook, slack, mail]
  group_wait: 0.2s
  retry: {{backoff: 0.1s, max_backoff: 0.4s, unhealthy_after: 2}}
rules:
  - name: low-wh1
    kind: low_stock
    warehouse: WH-1
    description: Widgets running out in WH-1
  - name: overdue
    kind: overdue_receivables
    min_days: 10
    threshold: "100.00"
  - name: rejects
    kind: rejected_events
    threshold: 0
    receivers: [hook]
{extra}
"""


def product(sku: str, reorder_point: int) -> dict[str, Any]:
    return cloud_event(
        "product.updated",
        {
            "sku": sku,
            "name": "Widget",
            "category": "tools",
            "reorder_point": reorder_point,
            "unit_cost": "1.00",
        },
    )


def move(sku: str, warehouse: str, delta: int) -> dict[str, Any]:
    return cloud_event(
        "stock.moved",
        {"sku": sku, "warehouse": warehouse, "quantity_delta": delta, "reason": "receipt"},
    )


def invoice(invoice_id: str, amount: str, due: dt.date) -> dict[str, Any]:
    return cloud_event(
        "invoice.issued",
        {
            "invoice_id": invoice_id,
            "customer_id": "C-1",
            "amount": amount,
            "issued_on": (due - dt.timedelta(days=30)).isoformat(),
            "due_date": due.isoformat(),
        },
    )


def payment(invoice_id: str, amount: str) -> dict[str, Any]:
    return cloud_event(
        "payment.received",
        {"payment_id": uuid.uuid4().hex, "invoice_id": invoice_id, "amount": amount},
    )


async def alerts_query(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    response = await http.post(
        "/graphql", json={"query": "{ alerts { rule kind state since value threshold error } }"}
    )
    return {a["rule"]: a for a in response.json()["data"]["alerts"]}


async def alert(http: httpx.AsyncClient, rule: str) -> dict[str, Any]:
    """One rule's state as the `alerts` query shows it."""
    return (await alerts_query(http))[rule]


# -- end to end -------------------------------------------------------------------------


@pytest.mark.slow
async def test_rules_fire_and_resolve_once_per_transition_everywhere(
    materializer: Any,
    js: JetStreamContext,
    alerting: Alerting,
    http_receiver: HttpReceiver,
    smtp: tuple[Mailbox, int],
) -> None:
    box, smtp_port = smtp
    http_receiver.fail = 2  # the first two webhook/slack posts fail: retried
    server = alerting.start(rules_yaml(http_receiver, smtp_port))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        seq = await publish_events(js, product("SKU-1", 5), move("SKU-1", "WH-1", 10))
        await materializer.wait_for_sequence(seq)

        async def state(rule: str) -> str:
            return str((await alerts_query(http))[rule]["state"])

        await until(lambda: _eq(state("low-wh1"), "inactive"), timeout=10)
        # Crossing: on hand 10 -> 2 (reorder point 5).
        seq = await publish_events(js, move("SKU-1", "WH-1", -8))
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(state("low-wh1"), "firing"), timeout=10)
        # Another warehouse's movement is not relevant and changes nothing.
        seq = await publish_events(js, move("SKU-1", "WH-2", 1))
        await until(lambda: len(http_receiver.alerts("/hook")) >= 1, timeout=10)
        await until(lambda: len(box.messages) >= 1, timeout=10)
        # Back above: resolved.
        seq = await publish_events(js, move("SKU-1", "WH-1", 20))
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(state("low-wh1"), "inactive"), timeout=10)
        await until(lambda: len(http_receiver.alerts("/hook")) >= 2, timeout=10)

        # Overdue receivables: 500 due 40 days ago fires; paying it resolves.
        due = NOW.date() - dt.timedelta(days=40)
        seq = await publish_events(js, invoice("INV-9", "500.00", due))
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(state("overdue"), "firing"), timeout=10)
        assert (await alerts_query(http))["overdue"]["value"] == "500.00"
        seq = await publish_events(js, payment("INV-9", "450.00"))
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(state("overdue"), "inactive"), timeout=10)

        # A rejected event fires the rejects rule.
        seq = await publish_events(js, b"not json at all")
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(state("rejects"), "firing"), timeout=10)

        await until(lambda: len(http_receiver.alerts("/hook")) == 5, timeout=10)
        await until(lambda: _mail_count(box) == 4, timeout=10)
        await asyncio.sleep(1.0)  # nothing more arrives: exactly one per transition

        hook = http_receiver.alerts("/hook")
        assert [(a["rule"], a["status"]) for a in hook] == [
            ("low-wh1", "firing"),
            ("low-wh1", "resolved"),
            ("overdue", "firing"),
            ("overdue", "resolved"),
            ("rejects", "firing"),
        ]
        assert len({a["id"] for a in hook}) == 5
        for path, headers, body in http_receiver.posts:
            if path == "/hook":
                stamp = headers["X-Pulse-Timestamp"]
                mac = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256)
                assert headers["X-Pulse-Signature"] == "sha256=" + mac.hexdigest()
        slack = [json.loads(b)["text"] for p, _, b in http_receiver.posts if p == "/slack"]
        assert sum(t.count("\n") + 1 for t in slack) == 4  # rejects goes to the hook only
        assert "[FIRING] low-wh1" in slack[0]
        assert _mail_count(box) == 4
        assert box.messages[0]["To"] == "ops@example.com"
        metrics = (await http.get("/metrics")).text
        assert 'gateway_alerts_firing{rule="rejects"} 1.0' in metrics
        assert 'gateway_alert_notifications_total{outcome="failed",receiver=' in metrics
        health = (await http.get("/health")).json()
        assert health["alerts"]["firing"] == 1
        assert health["alerts"]["failing_receivers"] == {}


def sale(order_id: str, total: str, at: dt.datetime) -> dict[str, Any]:
    """An order.created event of one line at event time `at`."""
    line = {"sku": "SKU-1", "quantity": 1, "unit_price": total}
    data = {
        "order_id": order_id,
        "customer_id": "C-1",
        "channel": "web",
        "total_amount": total,
        "lines": [line],
    }
    return cloud_event("order.created", data, time=at.isoformat())


@pytest.mark.slow
async def test_revenue_drop_fires_and_resolves_on_published_orders(
    materializer: Any, js: JetStreamContext, alerting: Alerting, http_receiver: HttpReceiver
) -> None:
    now = dt.datetime.now(dt.UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    if hour + dt.timedelta(hours=1) - now < dt.timedelta(seconds=40):
        # The rule compares the current hour: let it turn before the test, not during it.
        await asyncio.sleep((hour + dt.timedelta(hours=1) - now).total_seconds() + 1)
        now = dt.datetime.now(dt.UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
    rule = "  - {name: rev, kind: revenue_drop, threshold: 0.5, hysteresis: 0.1, for: 0.3s}"
    server = alerting.start(hook_rules(http_receiver, rule))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        # Last week's same hour sold 1000.00, this hour 300.00 so far: ratio 0.3 < 0.5.
        week_ago = hour - dt.timedelta(days=7) + dt.timedelta(minutes=1)
        seq = await publish_events(
            js,
            sale("O-LW-1", "600.00", week_ago),
            sale("O-LW-2", "400.00", week_ago),
            sale("O-NOW-1", "300.00", hour),
        )
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(alert(http, "rev"), "firing", "state"), timeout=10)
        assert Decimal((await alert(http, "rev"))["value"]) == Decimal("0.3")
        # 250.00 more: 0.55, back above 0.5 but inside the hysteresis: still firing.
        seq = await publish_events(js, sale("O-NOW-2", "250.00", hour))
        await materializer.wait_for_sequence(seq)

        async def ratio() -> Decimal:
            return Decimal((await alert(http, "rev"))["value"])

        await until(lambda: _eq(ratio(), Decimal("0.55")), timeout=10)
        assert (await alert(http, "rev"))["state"] == "firing"
        # 100.00 more: 0.65 >= 0.5 + 0.1: resolved.
        seq = await publish_events(js, sale("O-NOW-3", "100.00", hour))
        await materializer.wait_for_sequence(seq)
        await until(lambda: _eq(alert(http, "rev"), "inactive", "state"), timeout=10)
        await until(lambda: len(http_receiver.alerts("/hook")) == 2, timeout=10)
        await asyncio.sleep(1.0)  # nothing more arrives: exactly one per transition
        hook = http_receiver.alerts("/hook")
        assert [(a["rule"], a["status"]) for a in hook] == [("rev", "firing"), ("rev", "resolved")]


@pytest.mark.slow
async def test_data_gaps_fire_on_a_real_gap_and_resolve_when_the_threshold_is_raised(
    materializer_settings: Any,
    js: JetStreamContext,
    alerting: Alerting,
    http_receiver: HttpReceiver,
) -> None:
    from materializer.app import Materializer

    rules_text = hook_rules(
        http_receiver, "  - {name: gaps, kind: data_gaps, threshold: THRESHOLD}"
    )
    server = alerting.start(rules_text.replace("THRESHOLD", "0"))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with Materializer(materializer_settings) as running:
            seq = await publish_events(js, product("SKU-1", 5))
            await running.wait_for_sequence(seq)
            await until(lambda: _eq(alert(http, "gaps"), "0", "value"), timeout=10)
            assert (await alert(http, "gaps"))["state"] == "inactive"
        # While the materializer is down, two of four events leave the stream unapplied.
        seq = await publish_events(js, *(move("SKU-1", "WH-1", 1) for _ in range(4)))
        await js.delete_msg("PULSE_EVENTS", seq - 2)
        await js.delete_msg("PULSE_EVENTS", seq - 1)
        async with Materializer(materializer_settings) as running:
            await running.wait_for_sequence(seq)
            await until(lambda: _eq(alert(http, "gaps"), "firing", "state"), timeout=10)
            assert (await alert(http, "gaps"))["value"] == "2"
            await until(lambda: len(http_receiver.alerts("/hook")) == 1, timeout=10)
            server.stop()
            # Counted since the file was built, a gap resolves when the threshold is raised.
            again = alerting.start(rules_text.replace("THRESHOLD", "2"), port=free_port())
            async with httpx.AsyncClient(base_url=again.url, timeout=10) as http2:
                await until(lambda: len(http_receiver.alerts("/hook")) == 2, timeout=10)
                await asyncio.sleep(1.0)  # nothing more arrives: exactly one per transition
                state = await alerts_query(http2)
    assert state["gaps"]["state"] == "inactive"
    hook = http_receiver.alerts("/hook")
    assert [(a["rule"], a["status"]) for a in hook] == [("gaps", "firing"), ("gaps", "resolved")]
    assert hook[0]["value"] == "2"


@pytest.mark.slow
async def test_pipeline_lag_fires_while_the_materializer_catches_up_and_resolves_after(
    materializer_settings: Any,
    js: JetStreamContext,
    alerting: Alerting,
    http_receiver: HttpReceiver,
) -> None:
    from materializer.app import Materializer

    rule = "  - {name: lag, kind: pipeline_lag, threshold: 100, hysteresis: 50}"
    server = alerting.start(hook_rules(http_receiver, rule))
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        async with Materializer(materializer_settings) as running:
            seq = await publish_events(js, product("SKU-1", 5))
            await running.wait_for_sequence(seq)
            await until(lambda: _eq(alert(http, "lag"), "0", "value"), timeout=10)
        # Published while the materializer is stopped: it restarts 1,500 events behind
        # and catches up in small batches, each announced by a change notice.
        seq = await publish_events(js, *(move("SKU-1", "WH-1", 1) for _ in range(1500)))
        slow = dataclasses.replace(materializer_settings, batch_max_events=5)
        async with Materializer(slow) as running:
            await until(lambda: len(http_receiver.alerts("/hook")) >= 1, timeout=30)
            await running.wait_for_sequence(seq)
            await until(lambda: _eq(alert(http, "lag"), "inactive", "state"), timeout=10)
            await until(lambda: len(http_receiver.alerts("/hook")) == 2, timeout=10)
            await asyncio.sleep(1.0)  # nothing more arrives: exactly one per transition
            assert (await alert(http, "lag"))["value"] == "0"
    hook = http_receiver.alerts("/hook")
    assert [(a["rule"], a["status"]) for a in hook] == [("lag", "firing"), ("lag", "resolved")]
    assert int(hook[0]["value"]) > 100


def _mail_count(box: Mailbox) -> int:
    bodies = [m.get_payload(decode=True).decode() for m in box.messages]  # type: ignore[union-attr]
    return sum(b.count("[FIRING]") + b.count("[RESOLVED]") for b in bodies)


async def _eq(value: Any, wanted: Any, key: str | None = None) -> bool:
    got = await value
    return bool((got[key] if key is not None else got) == wanted)


@pytest.mark.slow
async def test_a_failing_receiver_shows_in_health_and_never_blocks_evaluation(
    materializer: Any, js: JetStreamContext, alerting: Alerting, http_receiver: HttpReceiver
) -> None:
    rules = f"""
[receivers.hook]
type = "webhook"
url = "{http_receiver.url}/hook"
[defaults]
receivers = ["hook"]
group_wait = 0
[defaults.retry]
backoff = "0.05s"
max_backoff = "0.2s"
unhealthy_after = 3
[[rules]]
name = "low"
kind = "low_stock"
"""
    http_receiver.fail = 10**6
    server = alerting.start(rules, file="rules.toml")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        seq = await publish_events(js, product("SKU-1", 5), move("SKU-1", "WH-1", 1))
        await materializer.wait_for_sequence(seq)

        async def degraded() -> bool:
            body = (await http.get("/health")).json()
            return (
                body.get("status") == "degraded" and "hook" in body["alerts"]["failing_receivers"]
            )

        await until(degraded, timeout=10)
        # Evaluation goes on: the rule resolves although nothing could be delivered.
        seq = await publish_events(js, move("SKU-1", "WH-1", 50))
        await materializer.wait_for_sequence(seq)

        async def resolved() -> bool:
            return bool((await alerts_query(http))["low"]["state"] == "inactive")

        await until(resolved, timeout=10)
        assert "alert delivery failing: hook" in (await http.get("/health")).json()["reason"]
        # The receiver comes back: both transitions are delivered, once each.
        http_receiver.fail = 0
        await until(lambda: len(http_receiver.alerts()) == 2, timeout=10)
        assert [a["status"] for a in http_receiver.alerts()] == ["firing", "resolved"]


@pytest.mark.slow
async def test_restart_neither_resends_nor_loses_notifications(
    materializer: Any,
    js: JetStreamContext,
    alerting: Alerting,
    http_receiver: HttpReceiver,
    tmp_path: Path,
) -> None:
    rules = f"""
receivers:
  hook: {{type: webhook, url: "{http_receiver.url}/hook"}}
defaults: {{receivers: [hook], group_wait: 0, retry: {{backoff: 0.05s, max_backoff: 0.1s}}}}
rules:
  - {{name: low, kind: low_stock}}
  - {{name: rejects, kind: rejected_events}}
"""
    first = alerting.start(rules)
    seq = await publish_events(js, product("SKU-1", 5), move("SKU-1", "WH-1", 1))
    await materializer.wait_for_sequence(seq)
    await until(lambda: len(http_receiver.alerts()) == 1, timeout=10)
    # The receiver goes down; a second rule fires; the gateway stops before delivering.
    http_receiver.fail = 10**6
    seq = await publish_events(js, b"{broken")
    await materializer.wait_for_sequence(seq)
    state = tmp_path / "rules.yaml.state.json"
    await until(lambda: b'"rejects/' in state.read_bytes(), timeout=10)
    first.stop()
    # While it is down the low-stock alert resolves (no notice reaches it).
    seq = await publish_events(js, move("SKU-1", "WH-1", 50))
    await materializer.wait_for_sequence(seq)
    http_receiver.fail = 0
    second = alerting.start(port=free_port())
    await until(lambda: len(http_receiver.alerts()) == 3, timeout=15)
    await asyncio.sleep(0.5)
    got = [(a["rule"], a["status"]) for a in http_receiver.alerts()]
    # low fired once (not again after the restart), rejects' queued firing was delivered
    # after the restart, and low's resolution, missed while down, was found at start.
    assert got[0] == ("low", "firing")
    assert sorted(got[1:]) == [("low", "resolved"), ("rejects", "firing")]
    async with httpx.AsyncClient(base_url=second.url) as http:
        states = await alerts_query(http)
        assert states["rejects"]["state"] == "firing"
        assert states["low"]["state"] == "inactive"


# -- rules and the state machine ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "mapping"),
        ("rules: {}", "Expected `array`"),
        ("rules: [{name: a, kind: low_stock, extra: 1}]", "unknown field `extra`"),
        ("rules: [{name: 'a b', kind: low_stock}]", "letters, digits"),
        ("rules: [{name: a, kind: revenue_drop, threshold: 0}]", "fraction"),
        ("rules: [{name: a, kind: low_stock, threshold: .nan}]", "finite"),
        ("rules: [{name: a, kind: low_stock, threshold: 1e400}]", "finite"),
        ("rules: [{name: a, kind: low_stock, for: -1}]", "between 0 and 366 days"),
        ("rules: [{name: a, kind: low_stock, hysteresis: -1}]", "negative"),
        (
            "silences: [{rules: [a], from: 2026-01-02T00:00:00Z, to: 2026-01-01T00:00:00Z}]\n"
            "rules: [{name: a, kind: low_stock}]",
            "before",
        ),
        (
            "silences: [{rules: [b], from: 2026-01-01T00:00:00Z, to: 2026-01-02T00:00:00Z}]\n"
            "rules: [{name: a, kind: low_stock}]",
            "no rule 'b'",
        ),
        ("rules: [{name: ü, kind: low_stock}]", "letters, digits"),
    ],
)
def test_bad_rules_files_are_refused_with_where_and_why(text: str, reason: str) -> None:
    with pytest.raises(RulesError, match=reason):
        parse(text, ".yaml")


@hsettings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=12,
    )
)
def test_any_document_is_a_rules_file_or_a_rules_error(document: Any) -> None:
    with contextlib.suppress(RulesError):
        parse(json.dumps({"rules": [document]}), ".yaml")


def _pipeline(**values: Any) -> PipelineRow:
    base: dict[str, Any] = dict(
        version=1, last_sequence=1, stream_last_sequence=1, lag=0, events_applied=1,
        events_rejected=0, batches=1, last_event_time=None, last_batch_at=None, status="ok",
        reason="ok", gap_count=0, events_missing=0, gaps=[],
    )  # fmt: skip
    base.update(values)
    return PipelineRow(**base)


async def test_for_and_hysteresis_keep_a_rule_from_flapping(tmp_path: Path) -> None:
    rules = parse(
        """
rules:
  - {name: lag, kind: pipeline_lag, threshold: 100, hysteresis: 50, for: 0.3s}
  - {name: gaps, kind: data_gaps}
""",
        ".yaml",
    )
    current = {"row": _pipeline(lag=0)}

    async def query(name: str, params: Any) -> Any:
        assert name == "pipeline"
        return current["row"]

    engine = Engine(rules, query, tmp_path / "state.json")
    states = engine.state.rules
    await engine.evaluate_all()
    assert states["lag"].status == "inactive"
    current["row"] = _pipeline(lag=150)
    await engine.evaluate_all()
    assert states["lag"].status == "pending"  # not for 0.3 s yet
    current["row"] = _pipeline(lag=90)
    await engine.evaluate_all()
    assert states["lag"].status == "inactive"  # a blip: never fired
    current["row"] = _pipeline(lag=150, events_missing=3)
    await engine.evaluate_all()
    assert states["gaps"].status == "firing" and states["gaps"].value == Decimal(3)
    await asyncio.sleep(0.5)  # the `for` timer re-evaluates without a notice
    assert states["lag"].status == "firing"
    current["row"] = _pipeline(lag=60, events_missing=3)  # below 100, not below 100 - 50
    await engine.evaluate_all()
    assert states["lag"].status == "firing"
    current["row"] = _pipeline(lag=50, events_missing=3)
    await engine.evaluate_all()
    assert states["lag"].status == "inactive"
    assert [(n.rule, n.status) for n in engine.state.outbox.get("x", [])] == []
    await engine.close()


async def test_silences_and_revenue_drop(tmp_path: Path) -> None:
    rules = parse(
        """
receivers: {hook: {type: webhook, url: "http://127.0.0.1:9/"}}
defaults: {receivers: [hook]}
silences: [{rules: ["*"], from: 2026-11-25T00:00:00Z, to: 2026-11-26T00:00:00Z}]
rules:
  - {name: rev, kind: revenue_drop, threshold: 0.5, hysteresis: 0.1}
""",
        ".yaml",
    )
    clock = {"now": dt.datetime(2026, 11, 25, 10, 30, tzinfo=dt.UTC)}
    revenue: dict[dt.datetime, str] = {}

    async def query(name: str, params: Any) -> Any:
        from pulse_bi.contract.registry import SalesSummaryRow

        net = Decimal(revenue.get(params.from_, "0.00"))
        zero = Decimal("0.00")
        return SalesSummaryRow(
            from_=params.from_, to=params.to, orders=1, cancelled_orders=0, gross_revenue=net,
            cancelled_revenue=zero, net_revenue=net, units=1, average_order_value=net,
        )  # fmt: skip

    engine = Engine(rules, query, tmp_path / "state.json", clock=lambda: clock["now"])
    hour = dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC)
    await engine.evaluate_all()
    assert engine.state.rules["rev"].value is None  # no revenue last week: no ratio
    revenue[hour - dt.timedelta(days=7)] = "1000.00"
    revenue[hour] = "400.00"
    await engine.evaluate_all()
    assert engine.state.rules["rev"].status == "firing"
    assert engine.state.rules["rev"].value == Decimal("0.4")
    assert engine.state.outbox.get("hook", []) == []  # silenced on the 25th
    clock["now"] = dt.datetime(2026, 11, 26, 10, 30, tzinfo=dt.UTC)
    hour = dt.datetime(2026, 11, 26, 10, tzinfo=dt.UTC)
    revenue[hour - dt.timedelta(days=7)] = "1000.00"
    revenue[hour] = "550.00"  # above 0.5 but not 0.5 + 0.1
    await engine.evaluate_all()
    assert engine.state.rules["rev"].status == "firing"
    revenue[hour] = "600.00"
    await engine.evaluate_all()
    assert engine.state.rules["rev"].status == "inactive"
    assert engine.state.outbox.get("hook", []) == []  # its firing was silenced: no resolution
    revenue[hour] = "100.00"  # outside the silence: fires and resolves, both notified
    await engine.evaluate_all()
    revenue[hour] = "700.00"
    await engine.evaluate_all()
    assert [n.status for n in engine.state.outbox["hook"]] == ["firing", "resolved"]
    # The state survives a new engine (a restart), and an unreadable file is set aside.
    again = Engine(rules, query, tmp_path / "state.json")
    assert again.state.outbox["hook"][0].rule == "rev"
    (tmp_path / "state.json").write_text("{not json")
    fresh = Engine(rules, query, tmp_path / "state.json")
    assert fresh.state.outbox == {}
    assert (tmp_path / "state.json.unreadable").exists()


@pytest.mark.slow
async def test_live_alerts_subscription_sees_the_transition(
    materializer: Any, js: JetStreamContext, alerting: Alerting
) -> None:
    import websockets

    server = alerting.start("rules: [{name: low, kind: low_stock}]\n")
    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    try:
        await ws.send('{"type": "connection_init"}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        query = "subscription { alerts { rule state value } }"
        await ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": {"query": query}}))

        async def frame() -> dict[str, Any]:
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message["type"] == "next":
                    return dict(message["payload"]["data"]["alerts"][0])

        assert (await frame())["state"] in ("inactive", "pending")
        seq = await publish_events(js, product("SKU-1", 5), move("SKU-1", "WH-1", 1))
        await materializer.wait_for_sequence(seq)
        while (latest := await frame())["state"] != "firing":
            pass
        assert latest == {"rule": "low", "state": "firing", "value": "1"}
    finally:
        await ws.close()
