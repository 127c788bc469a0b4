"""`Served`: the newest result served per query never gets replaced by an older one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.replicas import Served
from gateway.upstream import Result


def test_an_older_result_is_replaced_by_the_one_served() -> None:
    served = Served(10)
    key = ("sales_summary", b"{}", True)
    assert served.floor(key) == 0 and served.last(key) is None
    assert served.serve(key, Result(1, 5)).version == 5
    assert served.serve(key, Result(2, 3)) == Result(1, 5)
    assert served.served_again == 1
    assert served.serve(key, Result(3, 5)) == Result(3, 5)  # same version: the new one
    assert served.floor(key) == 5


def test_bounded() -> None:
    served = Served(3)
    for index in range(10):
        served.serve(("q", str(index).encode(), True), Result(None, index))
    assert len(served) == 3
    assert served.last(("q", b"0", True)) is None
    assert served.floor(("q", b"9", True)) == 9


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2**63)), max_size=60))
def test_versions_served_per_query_never_decrease(replies: list[tuple[int, int]]) -> None:
    served = Served(10)
    last: dict[int, int] = {}
    for query, version in replies:
        result = served.serve(("q", bytes([query]), True), Result(None, version))
        assert result.version == max(version, last.get(query, 0))
        last[query] = result.version
