"""Bulk delivery (materializer/delivery.py) over a real nats-server.

A tapped subscription must see every frame byte for byte and in order (headers or not,
reply or not, empty, binary and 1 MiB payloads split over many socket reads), while the
same connection keeps serving other subscriptions, requests and pings through nats-py.
The ingestor on top of it must survive its consumer vanishing from the server.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from typing import Any

import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from materializer import consumer as consumer_module
from materializer.app import Materializer
from materializer.consumer import _ack_position
from materializer.delivery import TapParser, header_values, status_of, tap
from materializer.settings import Settings
from pulse_bi.contract import STREAM_NAME
from pulse_bi.natsserver import LocalNatsServer
from tests.conftest import publish_events
from tests.materializer.test_runtime import order


async def test_tapped_frames_arrive_whole_and_in_order_beside_ordinary_traffic(
    nats_server: LocalNatsServer,
) -> None:
    receiver = await nats.connect(nats_server.url)
    sender = await nats.connect(nats_server.url)
    try:
        parser = tap(receiver)
        assert tap(receiver) is parser  # installed once
        frames: list[tuple[bytes, bytes, bytes | None, bytes]] = []
        tapped = await receiver.subscribe("tap.>")
        parser.add(tapped._id, lambda *frame: frames.append(frame))
        ordinary: list[Msg] = []

        async def collect(msg: Msg) -> None:
            ordinary.append(msg)

        await receiver.subscribe("plain.>", cb=collect)

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data[::-1])

        await sender.subscribe("echo", cb=echo)
        await sender.flush()
        await receiver.flush()

        big = os.urandom(1024 * 1024 - 4096)
        sent: list[tuple[bytes, bytes, bytes | None, bytes]] = []
        for i in range(300):
            payload = [b"", b"\xff\xfe\x00 not utf-8", f"event {i}".encode(), big][i % 4]
            headers = {"Nats-Msg-Id": f"m-{i}", "traceparent": "00-x"} if i % 3 == 0 else None
            reply = f"answer.{i}" if i % 2 else ""
            subject = f"tap.s.{i % 5}"
            await sender.publish(subject, payload, reply=reply, headers=headers)
            sent.append((subject.encode(), reply.encode(), headers and b"", payload))
            if i % 50 == 0:
                await sender.publish("plain.x", f"plain {i}".encode())
        await sender.flush()
        answer = await receiver.request("echo", b"abc", timeout=5)
        assert answer.data == b"cba"
        for _ in range(200):
            if len(frames) == len(sent) and len(ordinary) == 6:
                break
            await asyncio.sleep(0.05)
        assert [(s, r, p) for s, r, _, p in frames] == [(s, r, p) for s, r, _, p in sent]
        for i, (_, _, block, _) in enumerate(frames):
            if i % 3 == 0:
                assert block is not None
                assert header_values(block) == {"Nats-Msg-Id": f"m-{i}", "traceparent": "00-x"}
                assert status_of(block) == b""
            else:
                assert block is None
        assert [m.data for m in ordinary] == [f"plain {i}".encode() for i in range(0, 300, 50)]
        # Untapped again: the subscription's frames go back to nats-py.
        parser.remove(tapped._id)
        await sender.publish("tap.s.0", b"after")
        await sender.flush()
        assert (await tapped.next_msg(timeout=5)).data == b"after"
    finally:
        await sender.drain()
        await receiver.drain()


async def test_messages_of_a_dropped_subscription_are_counted_and_go_nowhere(
    nats_server: LocalNatsServer,
) -> None:
    """``drop``: what the server sent before an UNSUB reached it (here: no UNSUB at all,
    so the server keeps sending) is counted in ``strays`` and reaches neither the tap nor
    nats-py; tapped again, the subscription's frames reach the tap. (JetStream deliveries
    take the same way: ``test_frames_cut_anywhere_come_out_whole``; a client may not
    publish with a ``$JS.ACK`` reply.)"""
    receiver = await nats.connect(nats_server.url)
    sender = await nats.connect(nats_server.url)
    try:
        parser = tap(receiver)
        frames: list[Any] = []
        tapped = await receiver.subscribe("gone.>")
        parser.add(tapped._id, lambda *frame: frames.append(frame))
        await receiver.flush()  # subscribed at the server before the sender publishes

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        await sender.subscribe("echo", cb=echo)
        await sender.flush()

        async def send(count: int) -> None:
            for _ in range(count):
                await sender.publish("gone.h", b"with headers", headers={"a": "b"})
                await sender.publish("gone.plain", b"frame", reply="r")
            await sender.flush()
            # Answered after the messages above reached this connection.
            await receiver.request("echo", b"x", timeout=5)

        await send(2)
        assert len(frames) == 4
        parser.drop(tapped._id)
        await send(3)
        assert parser.strays == 6
        assert len(frames) == 4
        assert tapped.pending_msgs == 0  # nats-py saw none of them
        parser.add(tapped._id, lambda *frame: frames.append(frame))
        await send(1)
        assert (len(frames), parser.strays) == (6, 6)
    finally:
        await sender.drain()
        await receiver.drain()


async def test_ingest_subscribes_again_when_its_consumer_is_deleted(
    materializer_settings: Settings,
    js: JetStreamContext,
    nc: NATS,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No heartbeat for two intervals: the ingestor creates a consumer again after the
    last message it received, and nothing is lost or applied twice."""
    monkeypatch.setattr(consumer_module, "HEARTBEAT_SECONDS", 0.5)  # nats-server's least: 0.1
    first = [order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(20)]
    later = [order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(20, 50)]
    caplog.set_level(logging.INFO, "pulse_bi.materializer.consumer")
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(await publish_events(js, *first), timeout=30)
        consumers = await js.consumers_info(STREAM_NAME)
        assert consumers
        for consumer in consumers:
            await js.delete_consumer(STREAM_NAME, consumer.name)
        last = await publish_events(js, *later)
        await running.wait_for_sequence(last, timeout=30)
        stats = running.store.stats()
    assert stats["last_sequence"] == last
    assert stats["events_applied"] == 50
    assert "no message or heartbeat" in caplog.text


_TOKEN = st.text(st.sampled_from("abcxyz.$_-0123456789"), min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and not s.endswith(".")
)
_NAME = st.text(st.sampled_from("abcXYZ_-0123456789"), min_size=1, max_size=8)
#: JetStream ack subjects: the usual form (two names, five numbers) and near misses
#: (the domain form's four names, a number too few or too many, names that are numbers).
_ACK_REPLY = st.builds(
    lambda names, numbers: ".".join(["$JS", "ACK", *names, *map(str, numbers)]),
    st.lists(_NAME, min_size=1, max_size=4),
    st.lists(st.integers(0, 2**64), min_size=4, max_size=6),
)
_FRAME = st.tuples(
    _TOKEN,  # subject
    st.one_of(st.just(""), _TOKEN, _ACK_REPLY),  # reply
    st.one_of(st.none(), st.binary(max_size=40)),  # header block
    st.binary(max_size=300),  # payload, any bytes (CRLF included)
)


def _wire(sid: int, subject: str, reply: str, headers: bytes | None, payload: bytes) -> bytes:
    """A frame as nats-server writes it."""
    args = [subject, str(sid), *([reply] if reply else [])]
    if headers is None:
        return f"MSG {' '.join(args)} {len(payload)}\r\n".encode() + payload + b"\r\n"
    total = len(headers) + len(payload)
    line = f"HMSG {' '.join(args)} {len(headers)} {total}\r\n".encode()
    return line + headers + payload + b"\r\n"


def _expected(subject: str, reply: str, headers: bytes | None, payload: bytes) -> tuple[Any, ...]:
    """What a subscription tapped with a receiver gets for one frame: a JetStream delivery
    when its reply is an ack subject of the usual form, else the frame."""
    tokens = reply.split(".")
    if len(tokens) == 9 and tokens[:2] == ["$JS", "ACK"] and all(t.isdigit() for t in tokens[4:]):
        _, _, _, _, _, sequence, delivered, timestamp, _ = tokens
        return (
            "delivery",
            subject.encode(),
            int(sequence),
            delivered.encode(),
            timestamp.encode(),
            headers or None,
            payload,
        )
    return ("frame", subject.encode(), reply.encode(), headers or None, payload)


@settings(max_examples=300, deadline=None)
@given(frames=st.lists(_FRAME, max_size=30), cuts=st.lists(st.integers(0, 5000), max_size=30))
def test_frames_cut_anywhere_come_out_whole(
    frames: list[tuple[str, str, bytes | None, bytes]], cuts: list[int]
) -> None:
    """Wherever the socket reads cut the stream, every frame comes out once, whole: to the
    tap, or to the receiver with the ack subject's positions when it is a JetStream
    delivery of the usual form."""
    stream = b"".join(_wire(7, *frame) for frame in frames)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})

    def run(receiving: bool, dropped: bool = False) -> list[tuple[Any, ...]]:
        parser = TapParser(NATS())  # tapped frames never reach the (unconnected) client
        out: list[tuple[Any, ...]] = []
        parser.add(
            7,
            lambda *frame: out.append(("frame", *frame)),
            (lambda *delivery: out.append(("delivery", *delivery))) if receiving else None,
        )
        if dropped:
            parser.drop(7)

        async def feed() -> None:
            for start, stop in itertools.pairwise(bounds):
                await parser.parse(stream[start:stop])

        asyncio.run(feed())
        assert not parser.buf
        assert parser.strays == (len(frames) if dropped else 0)
        return out

    assert run(False) == [("frame", s.encode(), r.encode(), h or None, p) for s, r, h, p in frames]
    assert run(True) == [_expected(*frame) for frame in frames]
    # Dropped (being unsubscribed): every frame is counted and goes nowhere.
    assert run(True, dropped=True) == []


async def test_frames_on_the_ingest_inbox_that_are_not_deliveries_of_the_stream(
    materializer_settings: Settings,
    js: JetStreamContext,
    nc: NATS,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever reaches the consumer's inbox besides the stream's deliveries is never
    applied and never stops ingest: messages published to it (nats-server refuses a
    ``$JS.ACK`` reply from a client, so those have another reply or none), and frames
    with ack subjects the server does not write (cut short, words for numbers). An ack
    subject of the domain form is a delivery like the usual one: applied when it is the
    next sequence, ignored when it comes again."""
    caplog.set_level(logging.WARNING, "pulse_bi.materializer.consumer")
    first = [order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(5)]
    later = [order(f"O-{i}", "1.00", time="2026-11-25T10:00:00Z") for i in range(5, 10)]
    async with Materializer(materializer_settings) as running:
        await running.wait_for_sequence(await publish_events(js, *first), timeout=30)
        ingestor = running.ingestor
        assert ingestor is not None and ingestor._subscription is not None
        stranger = json.dumps(order("O-stranger", "9.00", time="2026-11-25T10:00:00Z")).encode()
        for reply in ("other.reply", ""):
            await nc.publish(ingestor._subscription.subject, stranger, reply=reply)
        await nc.flush()
        # Frames as the server would write them, handed to the consumer directly.
        subject = b"pulse.events.orders.created"
        timestamp = 1796091716234651890
        for reply in (
            b"$JS.ACK.PULSE_EVENTS.c.1.6",  # cut short
            b"$JS.ACK.PULSE_EVENTS.c.1.x.6." + b"%d" % timestamp + b".0",
            b"$JS.ACK.a.b.c.d.e.f.g.h.i.j.k",  # the domain form's length, words
            b"$JS.ACK.",
            # The domain form, again for an applied sequence: not applied twice.
            b"$JS.ACK.wh1.ACCHASH.PULSE_EVENTS.c.2.3.9." + b"%d" % timestamp + b".0.tok",
        ):
            ingestor._deliver(subject, reply, None, stranger)
        assert "ignored a message on the consumer's inbox" in caplog.text
        # The domain form for the next sequence: applied as that message of the stream.
        domain_form = b"$JS.ACK.wh1.ACCHASH.PULSE_EVENTS.c.1.6.6." + b"%d" % timestamp + b".0"
        ingestor._deliver(subject, domain_form, None, stranger)
        await running.wait_for_sequence(6, timeout=30)
        last = await publish_events(js, *later)  # the stream's own 6 comes after the forged one
        await running.wait_for_sequence(last, timeout=30)
        stats = running.store.stats()
        status = running.health()
        assert status[0] == "ok", status
        received = running.store.read(
            lambda cur: cur.execute(
                "SELECT order_id FROM order_events WHERE sequence = 6"
            ).fetchall()
        )
    assert (stats["last_sequence"], stats["events_applied"]) == (last, 10)
    assert stats["events_rejected"] == 0
    assert received == [("O-stranger",)]


@pytest.mark.parametrize(
    ("reply", "position"),
    [
        # The usual form: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>
        ("$JS.ACK.S.c.1.42.7.1796091716234651890.0", (42, 7, 1796091716234651890)),
        # The domain form, with and without the trailing token.
        ("$JS.ACK.wh1.ACCHASH.S.c.1.42.7.1796091716234651890.0", (42, 7, 1796091716234651890)),
        ("$JS.ACK._.ACCHASH.S.c.3.42.7.1796091716234651890.0.tok", (42, 7, 1796091716234651890)),
    ],
)
def test_ack_subject_positions(reply: str, position: tuple[int, int, int]) -> None:
    assert _ack_position(reply.encode()) == position
