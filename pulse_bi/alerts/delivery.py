"""Delivery of alert notifications: webhook, Slack-compatible webhook, email over SMTP.

One worker per receiver takes what the engine queued for it, waits ``group_wait`` so a
burst goes out as one message, and sends; a failure is retried with exponential backoff
(``backoff`` doubling up to ``max_backoff``) for as long as it takes. A receiver failing
``unhealthy_after`` times in a row is reported in ``status()`` (the gateway's /health)
and metrics; evaluation never waits for delivery (docs/ALERTS.md, "Delivery").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

from pulse_bi.alerts.engine import Engine, Notification
from pulse_bi.alerts.rules import EmailReceiver, Receiver, SlackReceiver, WebhookReceiver
from pulse_bi.tasks import cancel_until_done

log = logging.getLogger("pulse_bi.alerts.delivery")

SIGNATURE_HEADER = "X-Pulse-Signature"
TIMESTAMP_HEADER = "X-Pulse-Timestamp"


@dataclass
class ReceiverStatus:
    """Delivery health of one receiver."""

    sent: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success: float | None = None


def payload(notifications: list[Notification]) -> dict[str, Any]:
    """The webhook body: a group of notifications (docs/ALERTS.md, "Webhook")."""
    return {
        "version": 1,
        "alerts": [
            {
                "id": n.id,
                "rule": n.rule,
                "kind": n.kind,
                "status": n.status,
                "value": None if n.value is None else str(n.value),
                "threshold": str(n.threshold),
                "since": n.since.isoformat(),
                "at": n.at.isoformat(),
                "description": n.description,
            }
            for n in notifications
        ],
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def text(notifications: list[Notification]) -> str:
    """One line per notification, for Slack and email."""
    lines = []
    for n in notifications:
        mark = "FIRING" if n.status == "firing" else "RESOLVED"
        value = "n/a" if n.value is None else str(n.value)
        lines.append(
            f"[{mark}] {n.rule} ({n.kind}): value {value}, threshold {n.threshold},"
            f" since {n.since.isoformat()}" + (f" - {n.description}" if n.description else "")
        )
    return "\n".join(lines)


class Deliverer:
    """The workers of all receivers."""

    def __init__(self, engine: Engine, on_result: Any = None) -> None:
        self.engine = engine
        self.status = {name: ReceiverStatus() for name in engine.rules.receivers}
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient()
        #: Called as on_result(receiver, outcome, count) for metrics.
        self.on_result = on_result

    def start(self) -> None:
        for name in self.engine.rules.receivers:
            self._tasks.append(asyncio.create_task(self._worker(name), name=f"alerts-{name}"))

    async def close(self) -> None:
        await cancel_until_done(self._tasks)
        await self._http.aclose()

    def unhealthy(self) -> dict[str, str]:
        """Receivers failing ``unhealthy_after`` times in a row, with their last error."""
        limit = self.engine.rules.unhealthy_after
        return {
            name: f"{s.consecutive_failures} deliveries failed in a row: {s.last_error}"
            for name, s in self.status.items()
            if s.consecutive_failures >= limit
        }

    async def _worker(self, name: str) -> None:
        rules = self.engine.rules
        receiver = rules.receivers[name]
        status = self.status[name]
        failures = 0
        while True:
            queued = self.engine.pending(name)
            if not queued:
                await self.engine.changed.wait()
                if rules.group_wait:
                    await asyncio.sleep(rules.group_wait)  # gather a burst into one message
                continue
            try:
                await self._send(name, receiver, queued)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                status.failures += 1
                status.consecutive_failures = failures
                status.last_error = f"{type(exc).__name__}: {exc}"[:500]
                if self.on_result:
                    self.on_result(name, "failed", len(queued))
                delay = min(rules.backoff * 2 ** (failures - 1), rules.max_backoff)
                log.warning(
                    "alert delivery to %s failed (%s); retrying in %.1f s",
                    name,
                    status.last_error,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            status.consecutive_failures = 0
            status.sent += len(queued)
            status.last_success = time.time()
            if self.on_result:
                self.on_result(name, "sent", len(queued))
            self.engine.delivered(name, {n.id for n in queued})

    async def _send(self, name: str, receiver: Receiver, queued: list[Notification]) -> None:
        timeout = self.engine.rules.timeout(name)
        if isinstance(receiver, WebhookReceiver):
            body = json.dumps(payload(queued), separators=(",", ":")).encode()
            headers = {"content-type": "application/json"}
            if receiver.secret:
                stamp = str(int(time.time()))
                headers[TIMESTAMP_HEADER] = stamp
                headers[SIGNATURE_HEADER] = sign(receiver.secret, stamp, body)
            response = await self._http.post(
                receiver.url, content=body, headers=headers, timeout=timeout
            )
            response.raise_for_status()
        elif isinstance(receiver, SlackReceiver):
            body = json.dumps({"text": text(queued)}).encode()
            response = await self._http.post(
                receiver.url,
                content=body,
                headers={"content-type": "application/json"},
                timeout=timeout,
            )
            response.raise_for_status()
        elif isinstance(receiver, EmailReceiver):
            await asyncio.to_thread(_send_mail, receiver, queued, timeout)


def _send_mail(receiver: EmailReceiver, queued: list[Notification], timeout: float) -> None:
    message = EmailMessage()
    firing = sum(1 for n in queued if n.status == "firing")
    resolved = len(queued) - firing
    parts = [f"{firing} firing"] if firing else []
    parts += [f"{resolved} resolved"] if resolved else []
    message["Subject"] = f"[Pulse BI] {', '.join(parts)}: {', '.join(n.rule for n in queued)}"[:200]
    message["From"] = receiver.sender
    message["To"] = ", ".join(receiver.to)
    message.set_content(text(queued))
    with smtplib.SMTP(receiver.host, receiver.port, timeout=timeout) as smtp:
        if receiver.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if receiver.username:
            smtp.login(receiver.username, receiver.password or "")
        smtp.send_message(message)
