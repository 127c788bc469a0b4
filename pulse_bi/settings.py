"""Settings of every process, declared once: environment variable, kind, default, doc.

Each process keeps one frozen dataclass (`gateway.settings.Settings`,
`materializer.settings.Settings`) whose fields are declared with `setting()`. From
that one declaration come the parser (`read_settings`), the checks of values set in
code (`check_settings`), and the settings tables of docs/GATEWAY.md and
docs/OPERATIONS.md (`python -m pulse_bi.settings --write` rewrites them; a test keeps
them equal). Every bad value is one `SettingsError` with one wording:
``VARIABLE='value': expected …`` (docs/OPERATIONS.md, "Settings: how both
processes read them").

Rules every kind shares: an empty value means the default, unless the setting says
what empty means; surrounding spaces are ignored (not around text such as a
secret), so a value of spaces only is refused like any value that does not fit;
numbers are plain ASCII decimals (no ``1_000``, no full-width digits, no nan or inf);
control characters are refused everywhere.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

T = TypeVar("T")

#: Longest value read at all: longer ones are refused before any parsing.
MAX_VALUE_CHARS = 4096

_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?", re.ASCII | re.I)
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4})


class SettingsError(ValueError):
    """A setting has a value the process cannot start with: which, what, and what fits."""

    def __init__(self, variable: str, value: object, expected: str) -> None:
        shown = value if isinstance(value, str) else str(value)
        if len(shown) > 80:
            shown = shown[:80] + f"… ({len(shown)} characters)"
        super().__init__(f"{variable}={shown!r}: expected {expected}")
        self.variable = variable
        self.value = value
        self.expected = expected


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
    """A size like ``512MB`` or ``1.5GiB`` (KB = 1000, KiB = 1024, as DuckDB reads them)."""

    def __init__(self, note: str) -> None:
        #: What empty (or 0) means, e.g. "empty: DuckDB's default".
        self.expected = f"a size like 512MB or 1GB ({note})"

    def parse(self, text: str) -> str:
        """The size as written (not blank: empty means what the setting says)."""
        if not text:
            raise Invalid(self.expected)
        self.check(text)
        return text

    def check(self, value: str) -> None:
        """Empty, or a number with an optional unit."""
        if value and not _SIZE.fullmatch(value.strip()):
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


_NO_VALUE: Any = object()


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: its variable, kind, default and one-line doc."""

    env: str
    kind: Kind[T]
    default: T
    doc: str
    #: The value of an empty or blank variable (default: the default).
    empty: T = _NO_VALUE
    #: How the docs show the default, when not the value itself.
    shown_default: str | None = None
    #: A default worked out from other settings already read (by field name).
    derive: Callable[[Mapping[str, Any]], T] | None = None
    #: Never show the value in errors (a secret with a stray newline must not be logged).
    secret: bool = False

    def read(self, raw: str) -> T:
        """The value of the variable's text; raise SettingsError naming it."""
        if raw == "":
            return self.default if self.empty is _NO_VALUE else self.empty
        if len(raw) > MAX_VALUE_CHARS:
            raise SettingsError(self.env, self.shown(raw), f"at most {MAX_VALUE_CHARS} characters")
        if _CONTROL.search(raw):
            raise SettingsError(
                self.env, self.shown(raw), "no control characters (tab, newline, NUL…)"
            )
        text = raw.strip(" ") if self.kind.strip else raw
        try:
            return self.kind.parse(text)
        except Invalid as exc:
            raise SettingsError(self.env, self.shown(raw), str(exc)) from None

    def shown(self, raw: str) -> str:
        """The value as errors may show it."""
        return f"(hidden, {len(raw)} characters)" if self.secret else raw

    def check(self, value: T) -> None:
        """Raise SettingsError when a value set in code does not fit."""
        if value is None or value == self.empty:
            return
        try:
            self.kind.check(value)
        except Invalid as exc:
            raise SettingsError(self.env, value, str(exc)) from None

    @property
    def documented_default(self) -> str:
        """The default as the docs show it."""
        if self.shown_default is not None:
            return self.shown_default
        return self.kind.show(self.default)


def setting(
    env: str,
    kind: Kind[T],
    default: T,
    doc: str,
    *,
    empty: T = _NO_VALUE,
    shown_default: str | None = None,
    derive: Callable[[Mapping[str, Any]], T] | None = None,
    secret: bool = False,
) -> T:
    """A dataclass field that is one setting (typed as its value for the checker)."""
    declared = Setting(env, kind, default, doc, empty, shown_default, derive, secret)
    return cast(T, dataclasses.field(default=default, metadata={"setting": declared}))


def settings_of(cls: type) -> dict[str, Setting[Any]]:
    """The settings of a settings dataclass, by field name, in declaration order."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls)}


S = TypeVar("S")


def read_settings(cls: type[S], environ: Mapping[str, str]) -> S:
    """An instance of ``cls`` from the environment; unset variables keep their defaults."""
    values: dict[str, Any] = {}
    declared_settings = settings_of(cls)
    defaults = {name: declared.default for name, declared in declared_settings.items()}
    for name, declared in declared_settings.items():
        raw = environ.get(declared.env)
        if declared.derive is not None and not raw:
            values[name] = declared.derive({**defaults, **values})
        elif raw is not None:
            values[name] = declared.read(raw)  # empty: the default, or what empty means
    return cls(**values)


def check_settings(instance: object) -> None:
    """Check every field of a settings instance against its kind (values set in code)."""
    for name, declared in settings_of(type(instance)).items():
        declared.check(getattr(instance, name))


def markdown_table(cls: type) -> str:
    """The settings table of the docs: variable, default, meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for declared in settings_of(cls).values():
        default = declared.documented_default
        shown = f"`{default}`" if default != "(none)" else default
        lines.append(f"| `{declared.env}` | {shown} | {declared.doc} |")
    return "\n".join(lines) + "\n"


#: Where each settings table lives: (doc, the line just above the table, dataclass path).
TABLES = (
    ("docs/GATEWAY.md", "## Settings", "gateway.settings:Settings"),
    ("docs/OPERATIONS.md", "## Materializer settings", "materializer.settings:Settings"),
)


def _load(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return cast(type, getattr(importlib.import_module(module), name))


def table_in(text: str, heading: str) -> tuple[int, int]:
    """Start and end offsets of the first table after ``heading`` in a document."""
    start = text.index("\n| variable |", text.index(heading + "\n")) + 1
    end = text.find("\n\n", start)
    return start, len(text) if end < 0 else end + 1


def render_docs(root: Path) -> dict[Path, str]:
    """Each doc's text with its settings table generated from the declarations."""
    out: dict[Path, str] = {}
    for doc, heading, cls_path in TABLES:
        path = root / doc
        text = out.get(path) or path.read_text(encoding="utf-8")
        start, end = table_in(text, heading)
        out[path] = text[:start] + markdown_table(_load(cls_path)) + text[end:]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pulse_bi.settings [--write]``: print or rewrite the docs' tables."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    root = Path(__file__).resolve().parents[1]
    for path, text in render_docs(root).items():
        if "--write" in args:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
    if "--write" not in args:
        for _, _, cls_path in TABLES:
            print(cls_path)
            print(markdown_table(_load(cls_path)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
