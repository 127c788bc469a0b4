"""bench.sql_decode proves only what ``events.decode`` accepts, with the same values, and
proves the simulator's whole stream; bench_sql_decode reports what it measured."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

import duckdb
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import bench_sql_decode, sql_decode
from materializer import events
from pulse_bi.simulator import generate
from tests.materializer.test_fuzz import mutated_events, valid_document

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@functools.cache
def _conn() -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(config={"threads": 1, "autoload_known_extensions": False})
    conn.execute("SET TimeZone = 'UTC'")
    return conn


def _agree(items: Sequence[tuple[str, bytes]]) -> dict[int, tuple[Any, ...]]:
    """Load ``items`` in SQL; every event it proves, ``events.decode`` accepts alike."""
    subjects = [subject for subject, _ in items]
    payloads = [payload for _, payload in items]
    if not sql_decode.load(_conn(), subjects, payloads):
        # Refused whole only for invalid UTF-8, which Arrow will not take as text.
        assert any(not _utf8(p) for p in payloads)
        return {}
    proven = sql_decode.proven(_conn())
    assert sql_decode.proven_count(_conn()) == len(proven)
    for sequence, value in proven.items():
        subject, payload = items[sequence - 1]
        event = events.decode(subject, payload)
        assert not isinstance(event, events.Rejection), (payload, event)
        assert sql_decode.as_tuple(event) == value, payload
    return proven


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode()
    except UnicodeDecodeError:
        return False
    return True


def test_the_simulated_stream_is_proven_whole_with_the_same_values() -> None:
    messages = generate(7, 3000).messages
    proven = _agree([(m.subject, m.data) for m in messages])
    assert len(proven) == len(messages)  # not one fallback: the property below is not vacuous
    assert {value[0] for value in proven.values()} == set(events.EVENT_TYPES)


@PROPERTY
@given(st.lists(mutated_events(), min_size=1, max_size=12))
def test_a_mutated_event_is_proven_only_if_decode_accepts_it_alike(
    items: list[tuple[str, bytes]],
) -> None:
    _agree(items)


# fmt: off
#: Raw JSON tokens at the edges of what the fast path lets through, by the kind of value
#: they replace: numbers DuckDB reads as doubles (exponents, long digits, more decimals),
#: what its reader takes and msgspec does not (NaN, Infinity), strings of every kind,
#: times and dates at the window's edges and beyond.
NUMBERS = [
    "0", "-0", "1", "-1", "1.0", "2.5", "12.30", "0.1", "-0.01", "1e2", "1E+2", "1.5e1",
    "0.100000000000000000001", "1.00000000000000001e2", "9999999999999.99",
    "99999999999999.99", "1234567890123456", "9223372036854775808", "1000000000",
    "1000000001", "-1000000000", "-1000000001", "NaN", "Infinity", "-Infinity", "true",
    "null", "[]", "{}", '"12.30"', '"1e2"', '"NaN"', '" 1.5"', '"1.234"', '"-0.001"',
    '"99999999999999.99"', '"9999999999999999.99"', '"5"',
]
STRINGS = [
    '""', '"x"', '"é€😀"', '"\\u00e9"', '"a\\"b"', '":x"', '"' + "x" * 256 + '"',
    '"' + "x" * 257 + '"', '"' + "é" * 256 + '"', '"' + "é" * 257 + '"',
    '"' + "y" * 4097 + '"', '"receipt"', '"Receipt"', '"1.0"', "null", "1", "[]",
]
TIMES = [
    '"2026-11-25T10:04:05Z"', '"2026-11-25T10:04:05+14:00"', '"2026-11-25T10:04:05.123456Z"',
    '"2026-11-25T10:04:05.1234567Z"', '"2026-11-25 10:04:05Z"', '"2026-11-25T10:04:05"',
    '"2026-02-30T00:00:00Z"', '"1970-01-01T00:00:00Z"', '"1970-01-01T00:30:00+01:00"',
    '"1971-01-01T00:30:00+01:00"', '"2198-12-31T23:59:59-23:59"', '"2199-12-31T23:00:00-05:00"',
    '"2199-06-01T00:00:00Z"', '"0001-01-01T00:00:00Z"', '"9999-12-31T23:59:59Z"',
    '"2026-11-25T24:00:00Z"', '"2026-11-25T10:04:60Z"', '"2026-11-25t10:04:05z"',
    '"2026-11-25T10:04:05+24:00"', "1764065045",
]
DATES = [
    '"2026-11-01"', '"1970-01-01"', '"1969-12-31"', '"2199-12-31"', '"2200-01-01"',
    '"0001-01-01"', '"9999-12-31"', '"2026-13-01"', '"2026-02-29"', '"2028-02-29"',
    '"2026-11-1"', '"2026-1-01"', '"2026-11-01T00:00:00Z"', '"20261101"',
]
# fmt: on
TOKENS = NUMBERS + STRINGS + TIMES + DATES


def _tokens(value: Any) -> list[str]:
    """The tokens to try in place of a valid value: those of its kind, mostly."""
    if isinstance(value, str) and len(value) == 10 and value[4:5] == "-":
        return DATES
    if isinstance(value, str) and "T" in value and value[4:5] == "-":
        return TIMES
    if isinstance(value, int | float) or (isinstance(value, str) and value[:1].isdigit()):
        return NUMBERS
    return STRINGS


def _render(value: Any) -> str:
    return msgspec.json.encode(value).decode()


@st.composite
def raw_documents(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid event written out by hand: fields shuffled, a value swapped for a raw
    token, a key repeated or added, a trailing comma, spaces around the colons."""
    event_type = draw(st.sampled_from(sorted(events.EVENT_TYPES)))
    document = valid_document(event_type, draw(st.integers(0, 5)))
    if draw(st.booleans()):
        document["datacontenttype"] = draw(st.sampled_from(["application/json", None]))
    shuffle = random.Random(draw(st.integers(0, 2**16)))
    # One value of the contract (or none) written as a raw token instead: a document
    # wrong in one place only is the one the fast path could let through by mistake.
    swapped = draw(st.integers(0, 16))
    seen = 0

    def write(value: Any) -> str:
        nonlocal seen
        if isinstance(value, list):
            return "[" + ",".join(write(item) for item in value) + "]"
        if not isinstance(value, dict):
            seen += 1
            return draw(st.sampled_from(_tokens(value))) if seen == swapped else _render(value)
        pairs = [[_render(key), write(item)] for key, item in value.items()]
        if draw(st.booleans()):
            shuffle.shuffle(pairs)
        if draw(st.integers(0, 9)) == 0 and pairs:  # a key twice
            pairs.append([pairs[0][0], draw(st.sampled_from(TOKENS))])
        if draw(st.integers(0, 19)) == 0:  # a key outside the contract
            pairs.append(['"extra"', draw(st.sampled_from(TOKENS))])
        separator = draw(st.sampled_from([":"] * 30 + [" :", ": "]))
        text = ",".join(key + separator + item for key, item in pairs)
        return "{" + text + draw(st.sampled_from([""] * 30 + [","])) + "}"

    return events.EVENT_TYPES[event_type].subject, write(document).encode()


@PROPERTY
@given(st.lists(raw_documents(), min_size=1, max_size=12))
def test_a_hand_written_event_is_proven_only_if_decode_accepts_it_alike(
    items: list[tuple[str, bytes]],
) -> None:
    _agree(items)


def _single_swaps(event_type: str) -> list[bytes]:
    """The valid document of ``event_type`` with one value replaced by one token, for
    every value and every token."""
    found = []
    for token in TOKENS:
        position = 0
        while True:
            position += 1
            seen = 0

            def write(value: Any, token: str = token, position: int = position) -> str:
                nonlocal seen
                if isinstance(value, list):
                    return "[" + ",".join(write(item) for item in value) + "]"
                if isinstance(value, dict):
                    pairs = (_render(key) + ":" + write(item) for key, item in value.items())
                    return "{" + ",".join(pairs) + "}"
                seen += 1
                return token if seen == position else _render(value)

            document = valid_document(event_type)
            document["datacontenttype"] = "application/json"
            text = write(document)
            if seen < position:
                break
            found.append(text.encode())
    return found


@pytest.mark.parametrize("event_type", sorted(events.EVENT_TYPES))
def test_every_edge_token_in_every_value_is_proven_only_if_decode_accepts_it(
    event_type: str,
) -> None:
    subject = events.EVENT_TYPES[event_type].subject
    payloads = _single_swaps(event_type)
    proven = _agree([(subject, payload) for payload in payloads])
    accepted = [p for p in payloads if not isinstance(events.decode(subject, p), events.Rejection)]
    # Most of what decode accepts is proven: not a path that proves nothing.
    assert len(proven) >= 0.8 * len(accepted) > 0


def test_an_empty_batch_proves_nothing_and_a_bad_byte_leaves_its_batch_to_decode() -> None:
    assert _agree([]) == {}
    good = msgspec.json.encode(valid_document("customer.updated"))
    subject = events.EVENT_TYPES["customer.updated"].subject
    assert not sql_decode.load(_conn(), [subject, subject], [good, b'{"id":"\xff"}'])
    assert set(_agree([(subject, good)])) == {1}


def test_what_only_duckdb_reads_is_left_to_decode() -> None:
    good = msgspec.json.encode(valid_document("payment.received"))
    subject = events.EVENT_TYPES["payment.received"].subject
    variants = [
        good,
        good[:-1] + b",}",  # a trailing comma: DuckDB reads it
        good.replace(b'"id":', b'"id":"other","id":', 1),  # DuckDB keeps the first id
        good.replace(b'"amount":"9.99"', b'"amount":NaN'),
        good.replace(b'"amount":"9.99"', b'"amount":1.00000000000000001e2'),  # 100.0 as a double
        good.replace(b'"amount":"9.99"', b'"amount":0.100000000000000000001'),
    ]
    assert len(set(variants)) == len(variants)
    proven = _agree([(subject, payload) for payload in variants])
    assert set(proven) == {1}


def test_the_bench_reports_each_decode_and_the_gil_probe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    figures = bench_sql_decode.main(
        bench_sql_decode.arguments().parse_args(
            ["--events", "400", "--batch", "150", "--rounds", "1", "--threads", "2"]
        )
    )
    assert figures["proven"] == 1.0
    for label in ("events.decode", "SQL decode", "SQL floor"):
        assert figures[label] > 0, label
    out = capsys.readouterr().out
    assert "a probe thread's loop rate while each runs" in out
    for label in ("events.decode", "SQL decode"):  # a ratio of two rates, measured
        assert 0 < figures[f"probe share, {label}"] < 10, label
    assert out.startswith("400 events, batches of 150, 1 rounds")
    assert figures["SQL decode on 2 threads, wall"] > 0 and "on 2 DuckDB threads" in out
    assert "order.created: from_json and checks" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--events", "0"],
        ["--events", "1e400"],
        ["--batch", "-1"],
        ["--rounds", "abc"],
        ["--rounds", "101"],
        ["--threads", "0"],
        ["--threads", "二"],
    ],
)
def test_a_bad_count_is_a_clear_error_before_any_work(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench_sql_decode.arguments().parse_args(argv)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err
