"""Click option types whose errors name the environment variable a bad value came from."""

from __future__ import annotations

import math
from typing import Any

import click
from click.core import ParameterSource


class EnvNumber(click.ParamType):
    """An int or float option whose errors name the environment variable it came from."""

    def __init__(
        self, kind: type[int] | type[float], low: float, high: float | None, name: str
    ) -> None:
        self.kind, self.low, self.high, self.name = kind, low, high, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, or a usage error naming the variable or flag to change."""
        number: float | None
        if isinstance(value, self.kind):
            number = value
        else:
            text = str(value).strip()
            try:
                # ASCII only: int() reads full-width digits (U+FF18 U+FF10 ...) as 8004.
                number = self.kind(text) if text.isascii() else None
            except ValueError:
                number = None
        if number is not None and not math.isfinite(number):
            number = None  # nan and inf are no rate, port or count
        if number is None or number < self.low or (self.high is not None and number > self.high):
            limits = f"{self.low:g}-{self.high:g}" if self.high is not None else f">= {self.low:g}"
            self.fail(
                f"{_source(param, ctx)}={value!r}: expected a {self.name} {limits}", param, ctx
            )
        return number


def _source(param: click.Parameter | None, ctx: click.Context | None) -> str:
    """The environment variable a value came from, else the option's flag."""
    if param is None:
        return "value"
    envvar = getattr(param, "envvar", None)
    source = ctx.get_parameter_source(param.name) if ctx and param.name else None
    if source is ParameterSource.ENVIRONMENT and isinstance(envvar, str):
        return envvar
    return param.opts[0] if param.opts else str(param.name)


#: A TCP port, 1-65535.
PORT = EnvNumber(int, 1, 65535, "port")
