"""The Pulse-Min-Version header of a named-query request: any value is a number or 0."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from materializer.readiness import MIN_VERSION_WAIT, ReadGate, min_version, wait_for_version
from pulse_bi.contract import MIN_VERSION_HEADER, query_subject
from tests.gateway.conftest import until


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42", 42),
        ("0", 0),
        ("", 0),
        ("-5", 0),
        ("1e9", 0),
        ("4.5", 0),
        (" 7", 0),
        ("٣", 0),  # a unicode digit is not a version
        ("9" * 21, 0),  # beyond any stream sequence: ignored, not a crash
        ("18446744073709551615", 18446744073709551615),
        ("abc", 0),
    ],
)
def test_header_values(raw: str, expected: int) -> None:
    assert min_version({MIN_VERSION_HEADER: raw}) == expected


def test_absent_header() -> None:
    assert min_version(None) == 0
    assert min_version({}) == 0
    assert min_version({"Other": "5"}) == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_is_a_version_or_zero(raw: str) -> None:
    value = min_version({MIN_VERSION_HEADER: raw})
    assert value >= 0
    assert value == 0 or str(value) == raw.lstrip("0") or raw.strip("0") == ""


async def test_wait_is_bounded_when_the_version_never_comes() -> None:
    calls: list[tuple[int, float]] = []

    async def never(version: int, timeout: float) -> None:
        calls.append((version, timeout))
        async with asyncio.timeout(timeout):
            await asyncio.Event().wait()

    await wait_for_version(never, 10, current=3)
    assert calls == [(10, MIN_VERSION_WAIT)]
    await wait_for_version(never, 3, current=3)  # already there: no wait
    assert len(calls) == 1


class Endpoints:
    def __init__(self) -> None:
        self.reading = True
        self.switches: list[str] = []

    async def leave_reads(self) -> None:
        self.reading = False
        self.switches.append("leave")

    async def join_reads(self) -> None:
        self.reading = True
        self.switches.append("join")


async def test_gate_leaves_beyond_the_limit_and_joins_within_half() -> None:
    lag = [0]
    endpoints = Endpoints()
    gate = ReadGate(endpoints, lambda: lag[0], max_lag=100)
    for value, reading in [(100, True), (101, False), (60, False), (50, True), (101, False)]:
        lag[0] = value
        await gate.check()
        assert endpoints.reading is reading, value
    assert endpoints.switches == ["leave", "join", "leave"]
    assert gate.left == 2


async def test_gate_off_never_leaves() -> None:
    endpoints = Endpoints()
    gate = ReadGate(endpoints, lambda: 10**12, max_lag=0)
    await gate.check()
    assert endpoints.switches == []


@pytest.mark.parametrize("raw", ["", "abc", "-1", "1e99", "٣", "9" * 5000, "0"])
async def test_any_header_gets_an_answer_over_real_nats(
    materializer: Any, nc: Any, raw: str
) -> None:
    message = await nc.request(
        query_subject("pipeline"), b"{}", timeout=5, headers={MIN_VERSION_HEADER: raw}
    )
    reply = msgspec.json.decode(message.data)
    assert "error" not in reply, reply
    assert reply.get("version", 0) == 0 and "data" in reply


async def test_a_version_never_reached_costs_at_most_the_wait(materializer: Any, nc: Any) -> None:
    started = time.monotonic()
    message = await nc.request(
        query_subject("pipeline"), b"{}", timeout=5, headers={MIN_VERSION_HEADER: str(10**15)}
    )
    assert MIN_VERSION_WAIT <= time.monotonic() - started < 5
    assert msgspec.json.decode(message.data).get("version", 0) == 0  # what it has


async def _answered(nc: Any) -> bool:
    """Whether a named query gets an answer now (False: nobody in the read group)."""
    try:
        reply = await nc.request(query_subject("pipeline"), b"{}", timeout=1)
    except (NoRespondersError, NatsTimeoutError):
        return False
    return "data" in msgspec.json.decode(reply.data)


async def test_leaving_and_joining_the_read_group_over_real_nats(
    materializer: Any, nc: Any
) -> None:
    service = materializer.service
    await service.leave_reads()
    await service.leave_reads()  # twice: no error
    # The server may take a moment to drop the interest; then nothing answers.
    await until(lambda: _not(_answered(nc)), timeout=5, interval=0.05)
    for _ in range(3):
        assert not await _answered(nc)
    # Health still answers while out of the read group.
    health = await nc.request("pulse.bi.materializer.health", b"", timeout=2)
    assert msgspec.json.decode(health.data)["reading"] is False
    await service.join_reads()
    await service.join_reads()
    await until(lambda: _answered(nc), timeout=5, interval=0.05)
    await service.leave_reads()  # the fixture then stops it while out: no error


async def _not(value: Any) -> bool:
    return not await value


async def test_stopping_while_out_of_the_read_group(materializer_settings: Any) -> None:
    from materializer.app import Materializer

    async with Materializer(materializer_settings) as running:
        assert running.service is not None
        await running.service.leave_reads()
    # Closed cleanly: nothing raised on the way out.
