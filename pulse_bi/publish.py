"""``pulse-bi publish``: send one hand-written event and say what the materializer does with it.

The event is checked first with the materializer's own decoder
(``materializer.events.decode``), so the answer is the one ingest would give. A valid
event is published with ``Nats-Msg-Id`` = its id (as producers do, docs/EVENTS.md); then,
unless ``--wait 0``, the materializer is asked (named queries ``pipeline`` and
``rejected_events``) until it has passed the event's stream sequence, and the outcome is
printed: applied, or stored as rejected with the reason.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

import click
import msgspec

from pulse_bi.contract import EVENT_SUBJECT_PREFIX, query_subject, reply_decoder
from pulse_bi.options import SHOW_DEFAULTS

#: Largest event accepted from a file or stdin; real events are a few hundred bytes.
MAX_EVENT_BYTES = 1 << 20


@dataclass(frozen=True)
class Outcome:
    """What happened to a published event."""

    sequence: int | None  # None: JetStream dropped it as a duplicate Nats-Msg-Id
    verdict: str  # "applied", "rejected", "duplicate" or "pending"
    reason: str | None = None


def subject_of(document: Any) -> str:
    """The subject an event goes to: its type's, else one the decoder will refuse."""
    from materializer.events import EVENT_TYPES

    event_type = document.get("type") if isinstance(document, dict) else None
    known = EVENT_TYPES.get(event_type) if isinstance(event_type, str) else None
    if known is not None:
        return known.subject
    suffix = event_type if isinstance(event_type, str) and event_type.isprintable() else "unknown"
    return EVENT_SUBJECT_PREFIX + (suffix.replace(" ", "_").strip(".*>") or "unknown")


def read_event(source: BinaryIO) -> bytes:
    """The bytes of one event, or a usage error when there are none or far too many."""
    payload = source.read(MAX_EVENT_BYTES + 1)
    if len(payload) > MAX_EVENT_BYTES:
        raise click.UsageError(f"the event is larger than {MAX_EVENT_BYTES} bytes")
    if not payload.strip():
        raise click.UsageError("no event given: pass a file with one CloudEvent JSON, or '-'")
    return payload.strip()


async def _ask(nc: Any, name: str, params: dict[str, Any]) -> Any:
    msg = await nc.request(query_subject(name), json.dumps(params).encode(), timeout=1.0)
    reply = reply_decoder.decode(msg.data)
    if reply.error is not None:
        raise RuntimeError(f"{name}: {reply.error.message}")
    return reply.data


async def _outcome(nc: Any, sequence: int, wait: float) -> Outcome:
    """Ask the materializer until it has passed ``sequence``; then applied or rejected."""
    deadline = time.monotonic() + wait
    while True:
        try:
            pipeline = await _ask(nc, "pipeline", {})
            if int(pipeline["last_sequence"]) >= sequence:
                rows = await _ask(nc, "rejected_events", {"limit": 200})
                for row in rows:
                    if int(row["sequence"]) == sequence:
                        return Outcome(sequence, "rejected", str(row["reason"]))
                return Outcome(sequence, "applied")
        except Exception:  # no materializer yet, or busy: try again until the deadline
            pass
        if time.monotonic() >= deadline:
            return Outcome(sequence, "pending")
        await asyncio.sleep(0.1)


async def publish(
    url: str, subject: str, payload: bytes, event_id: str | None, wait: float
) -> Outcome:
    """Publish to JetStream (creating the stream if needed) and find out what happened."""
    import nats

    from pulse_bi.streams import ensure_stream

    # One try, bounded: a wrong URL must fail now, not retry forever.
    nc = await asyncio.wait_for(nats.connect(url, connect_timeout=2, allow_reconnect=False), 5)
    try:
        js = nc.jetstream()
        await ensure_stream(js)
        headers = {"Nats-Msg-Id": event_id} if event_id else None
        ack = await js.publish(subject, payload, headers=headers, timeout=5)
        if ack.duplicate:
            return Outcome(None, "duplicate")
        if wait <= 0:
            return Outcome(ack.seq, "pending")
        return await _outcome(nc, ack.seq, wait)
    finally:
        await nc.close()


@click.command("publish", context_settings=SHOW_DEFAULTS)
@click.argument("source", type=click.File("rb"), default="-")
@click.option(
    "--nats-url",
    envvar="NATS_URL",
    default="nats://127.0.0.1:4222",
    help="NATS server to publish to (NATS_URL; `pulse-bi dev` prints its own).",
)
@click.option("--subject", help="Publish to this subject instead of the one of the event's type.")
@click.option(
    "--dry-run", is_flag=True, help="Only check the event against the contract; publish nothing."
)
@click.option(
    "--force",
    is_flag=True,
    help="Publish even an event the decoder refuses (to see it among the rejected events).",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=5.0,
    help="Seconds to wait for the materializer's verdict (0: publish and return).",
)
def publish_command(
    source: BinaryIO, nats_url: str, subject: str | None, dry_run: bool, force: bool, wait: float
) -> None:
    """Check one hand-written CloudEvent (FILE or stdin) with the materializer's decoder,
    publish it, and print what the materializer does with it."""
    from materializer.events import Rejection, decode

    payload = read_event(source)
    try:
        document = msgspec.json.decode(payload)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past any use
        document = None
    subject = subject or subject_of(document)
    try:
        verdict = decode(subject, payload)
    except Exception as exc:  # decode is meant to be total; never let it crash this tool
        verdict = Rejection(f"the decoder failed: {exc}")
    event_id = document.get("id") if isinstance(document, dict) else None
    event_id = event_id if isinstance(event_id, str) and event_id else None
    if isinstance(verdict, Rejection):
        click.echo(f"invalid: {verdict.reason}")
        click.echo(f"  the materializer would store it as rejected (subject {subject})")
        if not force:
            raise SystemExit(1)
    else:
        click.echo(f"valid {verdict.type} event {verdict.id} (subject {subject})")
    if dry_run:
        return
    try:
        outcome = asyncio.run(publish(nats_url, subject, payload, event_id, wait))
    except Exception as exc:
        raise click.ClickException(f"cannot publish to NATS at {nats_url}: {exc}") from None
    if outcome.verdict == "duplicate":
        click.echo(
            "dropped by JetStream: an event with this id was published within the stream's "
            "duplicate window"
        )
    elif outcome.verdict == "applied":
        click.echo(f"published as sequence {outcome.sequence}: applied by the materializer")
    elif outcome.verdict == "rejected":
        click.echo(f"published as sequence {outcome.sequence}: rejected: {outcome.reason}")
    else:
        click.echo(
            f"published as sequence {outcome.sequence}; the materializer has not reached it "
            f"{'yet (is it running?)' if wait else '(not waited for)'}"
        )
    if outcome.verdict == "rejected":
        sys.exit(1)
