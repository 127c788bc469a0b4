"""Settings of every process, declared once: environment variable, kind, default, doc.

Each process keeps one frozen dataclass (`gateway.settings.Settings`,
`materializer.settings.Settings`) whose fields are declared with `setting()`; a field's
variable is its name in capitals after the class's ``env_prefix`` (``query_timeout`` of
the gateway: ``GATEWAY_QUERY_TIMEOUT``) unless the declaration names another. From
that one declaration come the parser (`read_settings`), the checks of values set in
code (`check_settings`), and the settings tables of docs/GATEWAY.md and
docs/OPERATIONS.md (`docs.py`; `python -m pulse_bi.settings --write` rewrites them, a
test keeps them equal). The kinds (`kinds.py`) say how text becomes a value. Every
bad value is one `SettingsError` with one wording: ``VARIABLE='value': expected …``
(docs/OPERATIONS.md, "Settings: how both processes read them").

Rules every kind shares: an empty value means the default, unless the setting says
what empty means; surrounding spaces are ignored (not around text such as a
secret), so a value of spaces only is refused like any value that does not fit;
numbers are plain ASCII decimals (no ``1_000``, no full-width digits, no nan or inf);
control characters are refused everywhere.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pulse_bi.settings.kinds import (
    Bool,
    Choice,
    Float,
    Host,
    Int,
    Invalid,
    Kind,
    Multiple,
    NatsUrls,
    PathKind,
    Secret,
    Size,
    Text,
    Words,
    size_in_bytes,
)

__all__ = [
    "MAX_VALUE_CHARS",
    "Bool",
    "Choice",
    "Float",
    "Host",
    "Int",
    "Invalid",
    "Kind",
    "Multiple",
    "NatsUrls",
    "PathKind",
    "Secret",
    "Setting",
    "SettingsError",
    "Size",
    "Text",
    "Words",
    "check_settings",
    "read_settings",
    "setting",
    "settings_of",
    "size_in_bytes",
]

T = TypeVar("T")

#: Longest value read at all: longer ones are refused before any parsing.
MAX_VALUE_CHARS = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NO_VALUE: Any = object()  # "not given", where None is a value


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


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One setting: its kind, default, one-line doc and variable."""

    kind: Kind[T]
    default: T
    doc: str
    #: The environment variable ("" in a declaration: derived from the field's name).
    env: str = ""
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
    kind: Kind[T],
    default: T,
    doc: str,
    *,
    env: str = "",
    empty: T = _NO_VALUE,
    shown_default: str | None = None,
    derive: Callable[[Mapping[str, Any]], T] | None = None,
    secret: bool = False,
) -> T:
    """A dataclass field that is one setting (typed as its value for the checker)."""
    declared = Setting(kind, default, doc, env, empty, shown_default, derive, secret)
    return cast(T, dataclasses.field(default=default, metadata={"setting": declared}))


def settings_of(cls: type) -> dict[str, Setting[Any]]:
    """The settings of a settings dataclass, by field name, in declaration order."""
    return dict(_settings_of(cls))


@functools.cache
def _settings_of(cls: type) -> dict[str, Setting[Any]]:
    prefix = getattr(cls, "env_prefix", "")
    found: dict[str, Setting[Any]] = {}
    for f in dataclasses.fields(cls):
        declared = f.metadata["setting"]
        found[f.name] = dataclasses.replace(declared, env=declared.env or prefix + f.name.upper())
    return found


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
