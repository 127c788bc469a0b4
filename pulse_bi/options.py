"""Click option types whose errors name the environment variable a bad value came from."""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from pulse_bi.settings import Int, Invalid, Kind, SettingsError


class EnvNumber(click.ParamType):
    """A number option parsed like a setting (pulse_bi/settings/), with the same errors."""

    def __init__(self, kind: Kind[Any]) -> None:
        self.kind = kind
        self.name = kind.expected

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, or a usage error naming the variable or flag to change."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = repr(value)  # a default: checked like a typed-in value
        else:
            text = str(value)
        try:
            return self.kind.parse(text.strip())
        except Invalid:
            self.fail(
                str(SettingsError(_source(param, ctx), value, self.kind.expected)), param, ctx
            )


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
PORT = EnvNumber(Int(1, 65535))

#: ``context_settings`` of a command whose help shows every option's default.
SHOW_DEFAULTS = {"show_default": True}
