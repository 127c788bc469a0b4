"""The kinds of setting: how a variable's text becomes a value, and which values fit.

Each kind raises `Invalid` with what a value must look like; `Setting.read` (in
pulse_bi/settings/__init__.py) turns that into the one `SettingsError` wording.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

T = TypeVar("T")

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?", re.ASCII | re.I)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4})


class Invalid(Exception):
    """Raised by a kind: the value does not fit; the message says what would."""


class Kind(Generic[T]):
    """How one setting's text becomes a value, and which values it allows."""

    #: What a value must look like, for errors and the docs.
    expected: str = "a value"
    #: Whether surrounding white space is part of the value.
    strip: ClassVar[bool] = True

    def parse(self, text: str) -> T:
        """The value of a non-empty ``text``; raise `Invalid` when it does not fit."""
        raise NotImplementedError

    def check(self, value: T) -> None:
        """Raise `Invalid` when a value (also one set in code) is out of bounds."""

    def show(self, value: T) -> str:
        """A value as the docs print it."""
        return str(value)


def _bounds(low: float | None, high: float | None, above: bool) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    if low is not None:
        return f"greater than {low:g}" if above else f"{low:g} or more"
    return f"{high:g} or less" if high is not None else ""


N = TypeVar("N", int, float)


class _Number(Kind[N]):
    """A number within bounds; ``above`` makes the low bound exclusive."""

    noun: ClassVar[str]
    pattern: ClassVar[re.Pattern[str]]
    types: ClassVar[tuple[type, ...]]
    #: Longest text read: beyond it no count, size or duration makes sense.
    max_chars: ClassVar[int]

    def __init__(
        self, low: float | None = 0, high: float | None = None, *, above: bool = False
    ) -> None:
        self.low, self.high, self.above = low, high, above
        self.expected = f"{self.noun} {_bounds(low, high, above)}".strip()

    def convert(self, text: str) -> N:
        """The number of a text that matches ``pattern``."""
        raise NotImplementedError

    def parse(self, text: str) -> N:
        """Plain ASCII digits: no ``1_000``, no full-width digits, no nan or inf."""
        if len(text) > self.max_chars:
            raise Invalid(f"{self.expected}, of at most {self.max_chars} characters")
        if not self.pattern.fullmatch(text):
            raise Invalid(self.expected)
        value = self.convert(text)
        self.check(value)
        return value

    def check(self, value: N) -> None:
        """Of the right type (a bool is no number), finite, within the bounds."""
        if isinstance(value, bool) or not isinstance(value, self.types):
            raise Invalid(self.expected)
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(self.expected)
        if self.low is not None and (value <= self.low if self.above else value < self.low):
            raise Invalid(self.expected)
        if self.high is not None and value > self.high:
            raise Invalid(self.expected)


class Int(_Number[int]):
    """A whole number within bounds."""

    noun = "a whole number"
    pattern = _INT
    types = (int,)
    max_chars = 18

    def convert(self, text: str) -> int:
        """``int`` of ASCII digits."""
        return int(text)


class Multiple(Int):
    """A whole number within bounds that ``step`` divides (DuckDB's row group sizes)."""

    def __init__(self, step: int, low: int, high: int) -> None:
        super().__init__(low, high)
        self.step = step
        self.expected = f"a multiple of {step} from {low} to {high}"

    def check(self, value: int) -> None:
        """Within the bounds, and a multiple of ``step``."""
        super().check(value)
        if value % self.step:
            raise Invalid(self.expected)


class Float(_Number[float]):
    """A finite decimal number within bounds, e.g. ``0.5``, ``12``, ``1e3``."""

    noun = "a number"
    pattern = _FLOAT
    types = (int, float)
    max_chars = 64

    def convert(self, text: str) -> float:
        """``float`` of a plain decimal (``1e999`` overflows to inf and is refused)."""
        return float(text)

    def show(self, value: float) -> str:
        """``2.0`` stays ``2.0``: the docs show that the setting takes fractions."""
        return repr(value)


class _Lookup(Kind[T]):
    """One word of a table, in any case (ASCII only: no look-alike letters)."""

    table: dict[str, T]

    def parse(self, text: str) -> T:
        """The table's value for the word."""
        key = text.lower() if text.isascii() else None
        if key is None or key not in self.table:
            raise Invalid(self.expected)
        return self.table[key]


class Bool(_Lookup[bool]):
    """true/false, also 1/0, yes/no, on/off, in any case."""

    expected = "true or false"
    table = {"1": True, "true": True, "yes": True, "on": True}
    table.update({"0": False, "false": False, "no": False, "off": False})

    def check(self, value: bool) -> None:
        """A bool, not a truthy string."""
        if not isinstance(value, bool):
            raise Invalid(self.expected)

    def show(self, value: bool) -> str:
        """``true`` / ``false``."""
        return "true" if value else "false"


class Text(Kind[str]):
    """Text taken as it is (white space included)."""

    expected = "text without control characters"
    strip = False

    def parse(self, text: str) -> str:
        """The text itself."""
        return text


class Host(Text):
    """An interface name or address: no white space."""

    expected = "a host name or address without spaces"
    strip = True

    def parse(self, text: str) -> str:
        """The text, when it has no space inside."""
        if not text or any(c.isspace() for c in text):
            raise Invalid(self.expected)
        return text


class Secret(Kind[str | None]):
    """Optional text (a secret, a URL, a claim); empty means none."""

    expected = "text without control characters"
    strip = False

    def parse(self, text: str) -> str | None:
        """The text itself."""
        return text

    def show(self, value: str | None) -> str:
        """``(none)`` when unset."""
        return "(none)" if value is None else value


class NatsUrls(Kind[str]):
    """NATS server URLs, comma-separated, each with a scheme."""

    expected = "nats://host:port, or several separated by commas"

    def parse(self, text: str) -> str:
        """The list as given, each part checked."""
        self.check(text)
        return text

    def check(self, value: str) -> None:
        """Every part has a scheme and a host, and no spaces."""
        parts = [part.strip() for part in value.split(",")]
        for part in parts:
            scheme, sep, rest = part.partition("://")
            if not sep or not scheme or not rest or any(c.isspace() for c in part):
                raise Invalid(self.expected)


class Choice(_Lookup[str]):
    """One word of a fixed set, in any case; stored in the set's case."""

    def __init__(self, *words: str) -> None:
        self.table = {word.lower(): word for word in words}
        self.expected = "one of " + ", ".join(words)

    def check(self, value: str) -> None:
        """In the set (any case)."""
        if not isinstance(value, str) or value.lower() not in self.table:
            raise Invalid(self.expected)


class Words(Kind[tuple[str, ...]]):
    """A comma-separated list; blanks around items are dropped, repeats refused."""

    expected = "a comma-separated list without repeats"

    def parse(self, text: str) -> tuple[str, ...]:
        """The items, in order."""
        items = tuple(part.strip() for part in text.split(",") if part.strip())
        self.check(items)
        return items

    def check(self, value: tuple[str, ...]) -> None:
        """A tuple of strings (not one string), no item twice."""
        if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
            raise Invalid(self.expected)
        if len(set(value)) != len(value):
            raise Invalid(self.expected)

    def show(self, value: tuple[str, ...]) -> str:
        """``(none)`` when empty."""
        return ", ".join(value) or "(none)"


class Size(Kind[str]):
    """A size like ``512MB`` or ``1.5GiB`` (KB = 1000, KiB = 1024, as DuckDB reads them).

    At most ``MAX_BYTES``. A size handed to DuckDB (``bare=False``) needs a unit and must
    be above zero: DuckDB refuses a bare number or a size past 2**64 bytes only when it
    opens the file, where the setting's own message is clearer, and takes 0 literally.
    A size read by this code (``bare=True``) may be a bare number of bytes, or 0.
    """

    MAX_BYTES = 2**60  # 1 EiB

    def __init__(self, note: str, *, bare: bool = False) -> None:
        #: What empty (or 0) means, e.g. "empty: DuckDB's default".
        self.expected = f"a size like 512MB or 1GB, up to 1EiB ({note})"
        self.bare = bare

    def parse(self, text: str) -> str:
        """The size as written (not blank: empty means what the setting says)."""
        if not text:
            raise Invalid(self.expected)
        self.check(text)
        return text

    def check(self, value: str) -> None:
        """Empty, or a number with a unit (or bare, where allowed) within the bounds."""
        if not value:
            return
        match = _SIZE.fullmatch(value.strip())
        if match is None or (match[2] is None and not self.bare):
            raise Invalid(self.expected)
        size = size_in_bytes(value)
        if size > self.MAX_BYTES or (size == 0 and not self.bare):
            raise Invalid(self.expected)


class PathKind(Kind[Path]):
    """A file system path."""

    expected = "a path"

    def parse(self, text: str) -> Path:
        """The path as given (not blank)."""
        if not text:
            raise Invalid(self.expected)
        return Path(text)


def size_in_bytes(text: str) -> int:
    """``512MB``, ``1.5GiB``… in bytes (empty or ``0``: 0)."""
    match = _SIZE.fullmatch(text.strip())
    if not text.strip():
        return 0
    if match is None:
        raise ValueError(f"{text!r} is not a size")
    return int(float(match[1]) * _UNITS[(match[2] or "b").lower()])
