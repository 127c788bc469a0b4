"""Publishing to a real nats-server: what lands in the stream, pacing, stopping, errors."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy, StorageType

from pulse_bi.contract import STREAM_NAME
from pulse_bi.simulator import PublishError, generate, iter_messages, publish
from pulse_bi.simulator.events import DUPLICATE_SAME_MSG_ID, SimMessage
from pulse_bi.simulator.generator import live_clock
from pulse_bi.streams import ensure_stream

END = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


async def stream_messages(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(STREAM_NAME)
    return int(info.state.messages)


async def test_stream_gets_every_message_except_duplicates_inside_the_window(nc: NATS) -> None:
    scenario = generate(21, 5000, out_of_order=0.1, duplicates=0.06, bad=0.03, end=END)
    expected = scenario.expected()["counts"]
    dropped = sum(
        m.kind == "duplicate" and m.detail == DUPLICATE_SAME_MSG_ID for m in scenario.messages
    )
    assert dropped > 100
    await ensure_stream(nc.jetstream())

    stats = await publish(nc, scenario.messages)

    assert stats.published == 5000
    assert stats.duplicates == dropped
    assert stats.stored == expected["in_stream"] == 5000 - dropped
    assert stats.in_flight == 0
    assert await stream_messages(nc) == expected["in_stream"]


async def test_stream_holds_the_messages_in_publish_order_with_their_headers(nc: NATS) -> None:
    scenario = generate(22, 300, duplicates=0.1, bad=0.05, end=END)
    js = nc.jetstream()
    await ensure_stream(js)
    await publish(nc, scenario.messages)
    stored = [m for m in scenario.messages if not m.dropped_by_stream]
    for sequence, message in enumerate(stored, start=1):
        raw = await js.get_msg(STREAM_NAME, sequence)
        assert (raw.subject, raw.data) == (message.subject, message.data)
        headers = raw.headers or {}
        assert headers.get("Nats-Msg-Id") == message.msg_id


async def test_a_small_in_flight_window_still_delivers_everything(nc: NATS) -> None:
    scenario = generate(23, 1500, end=END)
    await ensure_stream(nc.jetstream())
    stats = await publish(nc, scenario.messages, max_in_flight=8)
    assert stats.stored == 1500
    assert await stream_messages(nc) == 1500


async def test_rate_paces_the_messages(nc: NATS) -> None:
    scenario = generate(24, 150, end=END)
    await ensure_stream(nc.jetstream())
    started = time.perf_counter()
    stats = await publish(nc, scenario.messages, rate=300)
    elapsed = time.perf_counter() - started
    # Pacing may only slow publishing down: never faster than the rate asked for.
    assert elapsed >= 0.45
    assert stats.rate <= 315


async def stop_after(nc: NATS, count: int) -> asyncio.Event:
    """An event set once ``count`` messages have gone out on the event subjects."""
    stop = asyncio.Event()
    seen = 0

    async def on_message(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            stop.set()

    await nc.subscribe("pulse.events.>", cb=on_message)
    await nc.flush()
    return stop


async def test_setting_stop_ends_an_endless_run_with_every_sent_message_acknowledged(
    nc: NATS,
) -> None:
    await ensure_stream(nc.jetstream())
    endless = iter_messages(25, clock=live_clock(END, 200), scale=2000)
    stop = await stop_after(nc, 30)
    stats = await publish(nc, endless, rate=200, stop=stop)
    assert stats.published >= 30
    assert stats.acked == stats.published
    assert await stream_messages(nc) == stats.stored


async def test_publishing_where_no_stream_listens_raises(nc: NATS) -> None:
    scenario = generate(26, 20, end=END)
    with pytest.raises(PublishError, match="refused 20 of 20"):
        await publish(nc, scenario.messages)


async def test_rate_must_be_positive(nc: NATS) -> None:
    with pytest.raises(ValueError):
        await publish(nc, [], rate=0)


async def test_ensure_stream_creates_the_stream_once_and_keeps_an_existing_one(nc: NATS) -> None:
    js = nc.jetstream()
    created = await ensure_stream(js, duplicate_window=30)
    config = created.config
    assert config.subjects == ["pulse.events.>"]
    assert config.storage == StorageType.FILE
    assert config.retention == RetentionPolicy.LIMITS
    assert config.duplicate_window == 30
    again = await ensure_stream(js)
    assert again.config.duplicate_window == 30


async def test_same_msg_id_after_the_duplicate_window_reaches_the_stream(nc: NATS) -> None:
    # Why the "no_msg_id" duplicates exist: once the window has passed, JetStream stores a
    # re-sent event again and only the consumer can recognise it.
    await ensure_stream(nc.jetstream(), duplicate_window=0.5)
    message = generate(27, 1, end=END).messages[0]
    first = await publish(nc, [message, message])
    assert (first.stored, first.duplicates) == (1, 1)
    # Re-send until the server has purged the id: dropped as a duplicate until then.
    async with asyncio.timeout(10):
        while (await publish(nc, [message])).stored == 0:
            await asyncio.sleep(0.1)
    assert await stream_messages(nc) == 2


def test_messages_without_a_msg_id_are_sent_without_the_header() -> None:
    message = SimMessage("pulse.events.x", b"{}", None)
    assert message.headers is None
    first = next(iter_messages(1, clock=live_clock(END, 1)))
    assert first.headers == {"Nats-Msg-Id": first.msg_id}
    assert first.msg_id is not None and first.msg_id.encode() in first.data


async def test_missing_acks_raise_after_the_timeout(nc: NATS) -> None:
    # A plain subscriber takes the subject instead of a stream: nobody acknowledges.
    async def ignore(msg: Msg) -> None:
        pass

    silent = await nc.subscribe("pulse.events.>", cb=ignore)
    scenario = generate(28, 30, end=END)
    with pytest.raises(PublishError, match="30 of 30 messages not acknowledged"):
        await publish(nc, scenario.messages, ack_timeout=0.3)
    with pytest.raises(PublishError, match="not acknowledged"):
        await publish(nc, scenario.messages, ack_timeout=0.3, max_in_flight=5)
    await silent.unsubscribe()


async def test_ensure_stream_racing_itself_with_other_settings_creates_one_stream(
    nc: NATS,
) -> None:
    js = nc.jetstream()
    first, second = await asyncio.gather(
        ensure_stream(js, duplicate_window=30), ensure_stream(js, duplicate_window=60)
    )
    assert first.config.duplicate_window == second.config.duplicate_window
    assert (await js.streams_info())[0].config.name == STREAM_NAME


async def test_sampled_acks_still_count_stored_and_dropped_messages_exactly(nc: NATS) -> None:
    scenario = generate(29, 5001, duplicates=0.06, bad=0.03, end=END)
    expected = scenario.expected()["counts"]
    await ensure_stream(nc.jetstream())
    stats = await publish(nc, scenario.messages, ack_every=16)
    assert (stats.published, stats.acked) == (5001, 5001)  # the odd last one asked too
    assert stats.stored == expected["in_stream"] == await stream_messages(nc)
    assert stats.duplicates == 5001 - expected["in_stream"] > 0


async def test_stopping_a_sampled_run_still_confirms_every_sent_message(nc: NATS) -> None:
    await ensure_stream(nc.jetstream())
    endless = iter_messages(30, clock=live_clock(END, 300), scale=2000)
    stop = await stop_after(nc, 40)
    stats = await publish(nc, endless, rate=300, ack_every=7, stop=stop)
    assert stats.acked == stats.published >= 40
    assert stats.stored + stats.duplicates == stats.published
    assert await stream_messages(nc) == stats.stored


async def test_sampled_acks_need_the_stream_to_exist(nc: NATS) -> None:
    with pytest.raises(PublishError, match="cannot read stream"):
        await publish(nc, generate(31, 5, end=END).messages, ack_every=4)
    with pytest.raises(ValueError):
        await publish(nc, [], ack_every=0)
