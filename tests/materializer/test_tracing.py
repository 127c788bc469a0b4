"""Traces of ingest: an event's publisher's trace through the batch commit to the notice."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry import trace

from pulse_bi.contract import CHANGES_SUBJECT
from pulse_bi.simulator import generate
from pulse_bi.streams import ensure_stream
from tests.gateway.conftest import until
from tests.tracing_support import named, span_exporter

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
EVENT_SPAN = "b7ad6b7169203331"


async def test_a_traced_event_links_its_batch_span_and_the_notice_carries_it(
    nc: NATS, materializer: Any
) -> None:
    spans = span_exporter()
    notices: list[Msg] = []

    async def collect(msg: Msg) -> None:
        if b'"kind":"heartbeat"' not in msg.data:
            notices.append(msg)

    await nc.subscribe(CHANGES_SUBJECT, cb=collect)
    js = nc.jetstream()
    await ensure_stream(js)
    messages = list(generate(3, 3).messages)
    first = messages[0]
    await js.publish(
        first.subject, first.data, headers={"traceparent": f"00-{TRACE_ID}-{EVENT_SPAN}-01"}
    )
    ack = await js.publish(messages[1].subject, messages[1].data)  # untraced
    await materializer.wait_for_sequence(ack.seq, timeout=30)
    await until(lambda: any(s.name == "apply batch" for s in spans.get_finished_spans()))
    batch = named(spans, "apply batch")
    assert batch.kind is trace.SpanKind.CONSUMER
    assert [format(link.context.trace_id, "032x") for link in batch.links] == [TRACE_ID]
    assert format(batch.links[0].context.span_id, "016x") == EVENT_SPAN
    batch_id = format(batch.context.trace_id, "032x")
    await until(lambda: any(m.headers for m in notices))
    traced = [m for m in notices if m.headers]
    assert traced[0].headers is not None
    assert traced[0].headers["traceparent"].split("-")[1] == batch_id

    # Untraced events make no span and untraced notices.
    spans.clear()
    notices.clear()
    ack = await js.publish(messages[2].subject, messages[2].data)
    await materializer.wait_for_sequence(ack.seq, timeout=30)
    await until(lambda: bool(notices))
    assert not any(m.headers for m in notices)
    assert not [s for s in spans.get_finished_spans() if s.name == "apply batch"]


async def test_odd_traceparent_headers_on_events_never_stop_ingest(
    nc: NATS, materializer: Any
) -> None:
    span_exporter()
    js = nc.jetstream()
    await ensure_stream(js)
    messages = list(generate(4, 4).messages)
    odd = ["", "garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "x" * 4000]
    last = 0
    for message, header in zip(messages, odd, strict=False):
        ack = await js.publish(message.subject, message.data, headers={"traceparent": header})
        last = ack.seq
    await materializer.wait_for_sequence(last, timeout=30)
