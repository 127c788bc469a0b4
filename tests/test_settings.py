"""The one settings mechanism: parser attacks, one error wording, docs and compose agree."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.settings import Settings as GatewaySettings
from materializer.settings import Settings as MaterializerSettings
from pulse_bi.settings import (
    MAX_VALUE_CHARS,
    Setting,
    SettingsError,
    read_settings,
    settings_of,
    size_in_bytes,
)
from pulse_bi.settings.docs import TABLES, render_docs

ROOT = Path(__file__).resolve().parents[1]
PROCESSES: dict[str, type[Any]] = {"gateway": GatewaySettings, "materializer": MaterializerSettings}
ALL = [
    (process, name, declared)
    for process, cls in PROCESSES.items()
    for name, declared in settings_of(cls).items()
]
#: One error wording: VARIABLE='value': expected …
WORDING = re.compile(r"^[A-Z][A-Z0-9_]*=(['\"]).*\1: expected \S.*$", re.DOTALL)


def gateway(**environ: str) -> GatewaySettings:
    return GatewaySettings.from_env(environ)


def materializer(**environ: str) -> MaterializerSettings:
    return MaterializerSettings.from_env(environ)


def refused(read: Any, **environ: str) -> str:
    with pytest.raises(SettingsError) as caught:
        read(**environ)
    message = str(caught.value)
    assert WORDING.match(message), message
    (variable,) = environ
    assert message.startswith(variable + "=")
    return message


# -- the docs and the compose files agree with the declarations --------------------------


def test_the_settings_tables_in_the_docs_are_generated_from_the_declarations() -> None:
    for path, generated in render_docs(ROOT).items():
        assert path.read_text(encoding="utf-8") == generated, (
            f"{path.relative_to(ROOT)}: its settings table differs from the declarations; "
            "run `python -m pulse_bi.settings --write`"
        )


def test_each_table_lists_every_setting_once_and_nothing_else() -> None:
    for doc, heading, cls_path in TABLES:
        text = (ROOT / doc).read_text(encoding="utf-8")
        table = text[text.index(heading) :].split("\n\n| variable |", 1)[-1]
        table = "| variable |" + table.split("\n\n", 1)[0]
        documented = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]+) \|", table, re.M)
        cls = PROCESSES[cls_path.split(".", 1)[0]]
        declared = {d.env: d.documented_default for d in settings_of(cls).values()}
        assert [name for name, _ in documented] == list(declared), doc
        for name, default in documented:
            shown = default.strip().strip("`")
            assert shown == declared[name], f"{doc}: {name} default {shown} != {declared[name]}"


def test_settings_have_one_variable_each_and_shared_ones_agree() -> None:
    for cls in PROCESSES.values():
        names = [d.env for d in settings_of(cls).values()]
        assert len(names) == len(set(names)) == len(dataclasses.fields(cls))
    gateway_nats = settings_of(GatewaySettings)["nats_url"]
    materializer_nats = settings_of(MaterializerSettings)["nats_url"]
    assert (gateway_nats.env, gateway_nats.default) == (
        materializer_nats.env,
        materializer_nats.default,
    )


def _compose_environments() -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for path in sorted((ROOT / "compose").glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for service, spec in (document.get("services") or {}).items():
            environment = spec.get("environment") or {}
            found.setdefault(service, {}).update({k: str(v) for k, v in environment.items()})
    return found


def test_compose_passes_only_real_settings_with_defaults_that_parse() -> None:
    environments = _compose_environments()
    for process, cls in PROCESSES.items():
        assert process in environments, f"no {process} service in compose/"
        by_env = {d.env: d for d in settings_of(cls).values()}
        for variable, value in environments[process].items():
            assert variable in by_env, f"compose passes {variable} to {process}: no such setting"
            # ${VAR:-default}: the default Compose falls back to must be a valid value.
            default = re.fullmatch(r"\$\{[A-Z0-9_]+:-(.*)\}", value)
            by_env[variable].read(default[1] if default else value)


def _cli_variables() -> set[str]:
    """Environment variables the `pulse-bi` commands' options read."""
    import click

    from pulse_bi.cli import main

    found: set[str] = set()
    commands: list[click.Command] = [main]
    while commands:
        command = commands.pop()
        if isinstance(command, click.Group):
            context = click.Context(command)  # commands are imported when asked for
            named = (command.get_command(context, n) for n in command.list_commands(context))
            commands.extend(c for c in named if c is not None)
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
    return found


def test_every_variable_in_a_settings_table_is_read_by_something() -> None:
    # Tables headed `| variable |` (docs and README): each row names a process setting, a
    # CLI option's variable, or a variable the compose files read themselves.
    compose = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "compose").glob("*.yml"))
    known = {d.env for _, _, d in ALL} | _cli_variables()
    known |= set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for table in re.findall(r"^\| variable \|.*\n(?:\|.*\n)+", text, re.M):
            for name in re.findall(r"^\| `([A-Z0-9_]+)` \|", table, re.M):
                assert name in known, f"{path.name} documents {name}, which nothing reads"


def test_every_process_variable_named_in_the_docs_exists() -> None:
    compose = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "compose").glob("*.yml"))
    compose_only = set(re.findall(r"\$\{([A-Z0-9_]+)", compose)) - {d.env for _, _, d in ALL}
    known = {d.env for _, _, d in ALL} | compose_only
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text(encoding="utf-8")
        for name in set(re.findall(r"`((?:GATEWAY|MATERIALIZER)_[A-Z0-9_]+)", text)):
            assert name in known, f"{path.name} documents {name}, which nothing reads"


# -- values set in code are checked like values read ---------------------------------------


@pytest.mark.parametrize(
    ("cls", "changes", "variable"),
    [
        (GatewaySettings, {"port": 0}, "GATEWAY_PORT"),
        (GatewaySettings, {"query_timeout": float("nan")}, "GATEWAY_QUERY_TIMEOUT"),
        (GatewaySettings, {"cors_origins": ("a", "a")}, "GATEWAY_CORS_ORIGINS"),
        (GatewaySettings, {"cors_origins": "http://a.example"}, "GATEWAY_CORS_ORIGINS"),
        (GatewaySettings, {"port": "8004"}, "GATEWAY_PORT"),
        (GatewaySettings, {"port": True}, "GATEWAY_PORT"),
        (GatewaySettings, {"introspection": "no"}, "GATEWAY_INTROSPECTION"),
        (GatewaySettings, {"request_timeout": float("inf")}, "GATEWAY_REQUEST_TIMEOUT"),
        (MaterializerSettings, {"query_workers": 65}, "QUERY_WORKERS"),
        (MaterializerSettings, {"log_level": "LOUD"}, "LOG_LEVEL"),
        (MaterializerSettings, {"heartbeat_interval": 0.0}, "HEARTBEAT_INTERVAL"),
    ],
)
def test_values_set_in_code_are_checked_too(
    cls: type[Any], changes: dict[str, Any], variable: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}="):
        cls(**changes)


def test_gateway_replace_is_checked() -> None:
    with pytest.raises(SettingsError, match=r"^GATEWAY_MAX_DEPTH="):
        GatewaySettings().replace(max_depth=0)


# -- the parser under attack ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        " ",  # spaces only
        "\t8004",  # a control character
        "8004\n",
        "80\x0004",
        "8_004",  # Python reads it, people do not mean it
        "\uff18\uff10\uff10\uff14",  # full-width digits
        "٨٠٠٤",  # Arabic-Indic digits
        "8004.0",
        "0x1f",
        "-1",
        "0",
        "65536",
        "9" * 5000,  # longer than any value read
        "9" * 40,  # huge but short: not converted into a giant int
        "true",
        "nan",
        "inf",
        "[8004]",
    ],
)
def test_bad_ports_are_refused_with_the_variable_and_value(value: str) -> None:
    message = refused(gateway, GATEWAY_PORT=value)
    if len(value) <= 80:
        assert f"GATEWAY_PORT={value!r}" in message


def test_a_huge_value_is_shown_cut_short() -> None:
    message = refused(gateway, GATEWAY_JWT_AUDIENCE="a" * (MAX_VALUE_CHARS + 1))
    assert f"({MAX_VALUE_CHARS + 1} characters)" in message
    assert len(message) < 300


@pytest.mark.parametrize("value", ["top\nsecret", "s" * (MAX_VALUE_CHARS + 1)])
def test_a_bad_secret_is_never_shown(value: str) -> None:
    message = refused(gateway, GATEWAY_JWT_SECRET=value)
    assert "secret" not in message.removeprefix("GATEWAY_JWT_SECRET")
    assert "sss" not in message
    assert f"(hidden, {len(value)} characters)" in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_QUERY_TIMEOUT", "nan"),
        ("GATEWAY_QUERY_TIMEOUT", "NaN"),
        ("GATEWAY_QUERY_TIMEOUT", "inf"),
        ("GATEWAY_QUERY_TIMEOUT", "-inf"),
        ("GATEWAY_QUERY_TIMEOUT", "Infinity"),
        ("GATEWAY_QUERY_TIMEOUT", "1e999"),  # overflows to inf
        ("GATEWAY_QUERY_TIMEOUT", "-0.5"),
        ("GATEWAY_QUERY_TIMEOUT", "0.001"),
        ("GATEWAY_QUERY_TIMEOUT", "1,5"),
        ("GATEWAY_QUERY_TIMEOUT", "1_0.5"),
        ("GATEWAY_QUERY_TIMEOUT", "\uff12.\uff10"),  # full-width 2.0
        ("GATEWAY_INTROSPECTION", "maybe"),
        ("GATEWAY_INTROSPECTION", "TRUE!"),
        ("GATEWAY_INTROSPECTION", "\uff54\uff52\uff55\uff45"),  # full-width true
        ("GATEWAY_INTROSPECTION", " "),
        ("GATEWAY_CORS_ORIGINS", "http://a.example,http://a.example"),
        ("GATEWAY_CORS_ORIGINS", "http://a.example, http://b.example ,http://a.example"),
        ("GATEWAY_LOG_LEVEL", "İNFO"),  # lowercases to 'i̇nfo'
        ("GATEWAY_HOST", "local host"),
        ("GATEWAY_HOST", " "),
        ("NATS_URL", "nats://a:4222, localhost:4222"),
        ("NATS_URL", " "),
        ("NATS_URL", ","),
        ("LOG_LEVEL", "verbose"),
        ("DUCKDB_MEMORY_LIMIT", "1 PB"),
        ("DUCKDB_MEMORY_LIMIT", " "),
        ("DISK_FREE_MIN", "1e9"),
        ("DATA_PATH", " "),
        ("QUERY_WORKERS", "65"),
        ("MATERIALIZER_HTTP_PORT", "-1"),
        ("STREAM_DUPLICATE_WINDOW", "0"),
        ("BATCH_MAX_EVENTS", "99999999999999999999999999999999999"),
    ],
)
def test_each_kind_refuses_what_does_not_fit(variable: str, value: str) -> None:
    read = materializer if variable in _MATERIALIZER_ONLY else gateway
    if variable == "NATS_URL":
        refused(materializer, NATS_URL=value)
    assert f"{variable}={value!r}" in refused(read, **{variable: value})


_MATERIALIZER_ONLY = {d.env for d in settings_of(MaterializerSettings).values()} - {
    d.env for d in settings_of(GatewaySettings).values()
}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("GATEWAY_MAX_COST", "0", "expected a whole number 1 or more"),
        ("GATEWAY_MAX_COST", "lots", "expected a whole number"),
        ("GATEWAY_MAX_INTROSPECTION_DEPTH", "0", "expected a whole number 1 or more"),
        ("GATEWAY_MAX_RESPONSE_BYTES", "100", "expected a whole number 1024 or more"),
        ("GATEWAY_REQUEST_TIMEOUT", "0", "expected a number 0.01"),
        ("GATEWAY_REQUEST_TIMEOUT", "nan", "expected a number"),
        ("GATEWAY_PUBLIC_STATS", "sometimes", "expected true"),
        ("GATEWAY_PORT", "http", "expected a whole number from 1 to 65535"),
        ("GATEWAY_PORT", "70000", "expected a whole number from 1"),
        ("GATEWAY_MAX_DEPTH", "0", "expected a whole number 1 or more"),
        ("GATEWAY_INTROSPECTION", "maybe", "expected true or"),
        ("GATEWAY_QUERY_TIMEOUT", "nan", "expected a number"),
        ("GATEWAY_LOG_LEVEL", "loud", "expected one of"),
        ("GATEWAY_LIVE_COALESCE_MS", "1e300", "expected a number from 0 to 60000"),
        ("GATEWAY_LIVE_COALESCE_MS", "-5", "expected a number from 0 to 60000"),
        ("GATEWAY_LIVE_REST_RATIO", "-1", "expected a number from 0 to 100"),
        ("GATEWAY_LIVE_REST_RATIO", "1e300", "expected a number from 0 to 100"),
        ("GATEWAY_LIVE_REST_RATIO", "nan", "expected a number"),
        ("GATEWAY_LIVE_REST_RATIO", "inf", "expected a number"),
        ("GATEWAY_LIVE_REST_RATIO", "twice", "expected a number"),
        ("BATCH_MAX_EVENTS", "lots", "expected a whole number"),
        ("BATCH_MAX_EVENTS", "0", "expected a whole number 1 or more"),
        ("MATERIALIZER_HTTP_PORT", "70000", "expected a whole number from 0 to 65535"),
        ("NATS_URL", "localhost:4222", "expected nats://host:port"),
        ("DUCKDB_MEMORY_LIMIT", "lots", "expected a size"),
        # DuckDB refuses these when it opens the file: refused here with the setting's name.
        ("DUCKDB_MEMORY_LIMIT", "0", "expected a size"),
        ("DUCKDB_MEMORY_LIMIT", "512", "expected a size"),
        ("DUCKDB_CHECKPOINT_THRESHOLD", "0MB", "expected a size"),
        ("DUCKDB_CHECKPOINT_THRESHOLD", "99999999999999999999TB", "expected a size"),
        ("DISK_FREE_MIN", "2EiB", "expected a size"),
        # DuckDB refuses a size that its vector size (2,048) does not divide.
        ("DUCKDB_ROW_GROUP_SIZE", "16000", "expected a multiple of 2048 from 2048 to 1048576"),
        ("DUCKDB_ROW_GROUP_SIZE", "0", "expected a multiple of 2048"),
        ("DUCKDB_ROW_GROUP_SIZE", "2097152", "expected a multiple of 2048"),
        ("DUCKDB_ROW_GROUP_SIZE", "16_384", "expected a multiple of 2048"),
        ("DUCKDB_ROW_GROUP_SIZE", "\uff11\uff16\uff13\uff18\uff14", "expected a multiple"),
        # glibc's mallopt takes a C int: a larger value would wrap, silently.
        ("MALLOC_ARENA_MAX", "2147483649", "expected a whole number from 0 to 1024"),
        ("MALLOC_ARENA_MAX", "-2", "expected a whole number"),
        ("HEARTBEAT_INTERVAL", "-1", "expected a number greater than 0"),
        ("LOG_LEVEL", "chatty", "expected one of DEBUG, INFO, WARNING"),
        ("DISK_FREE_MIN", "plenty", "expected a size"),
        ("DISK_FREE_MIN", "-1GB", "expected a size"),
        ("FAULT_RETRY_MAX", "0", "expected a number greater than 0"),
        ("FAULT_RETRY_MAX", "soon", "expected a number"),
        ("FAULT_RETRY_MAX", "nan", "expected a number greater than 0"),
        ("HEARTBEAT_INTERVAL", "inf", "expected a number"),
        ("CHECKPOINT_INTERVAL", "-5", "expected a number 0 or more"),
    ],
)
def test_bad_values_are_refused_with_what_to_fix(variable: str, value: str, expected: str) -> None:
    read = materializer if variable in _MATERIALIZER_ONLY else gateway
    assert f"{variable}={value!r}: {expected}" in refused(read, **{variable: value})


def test_surrounding_spaces_and_case_are_forgiven_where_meaningless() -> None:
    read = gateway(
        GATEWAY_PORT=" 9000 ",
        GATEWAY_INTROSPECTION=" OFF ",
        GATEWAY_LOG_LEVEL="DEBUG",
        GATEWAY_QUERY_TIMEOUT="+1e-1",
        GATEWAY_CORS_ORIGINS=" http://a.example ,, http://b.example ",
    )
    assert (read.port, read.introspection, read.log_level) == (9000, False, "debug")
    assert read.query_timeout == 0.1
    assert read.cors_origins == ("http://a.example", "http://b.example")
    assert materializer(LOG_LEVEL="warning").log_level == "WARNING"


def test_free_text_keeps_its_spaces_and_unicode() -> None:
    read = gateway(GATEWAY_JWT_SECRET=" sécret ünïcode 🔑 ", GATEWAY_JWT_AUDIENCE="pulse-bi")
    assert read.jwt_secret == " sécret ünïcode 🔑 "
    assert read.jwt_audience == "pulse-bi"


def test_an_empty_value_means_the_default_or_what_the_table_says() -> None:
    assert gateway(GATEWAY_PORT="", GATEWAY_JWT_SECRET="", GATEWAY_CORS_ORIGINS="") == (
        GatewaySettings()
    )
    read = materializer(DATA_PATH="/srv/pulse", DUCKDB_PATH="", DUCKDB_MEMORY_LIMIT="")
    assert read.duckdb_path == Path("/srv/pulse/pulse_bi.duckdb")
    assert read.duckdb_memory_limit == ""  # DuckDB's own default
    assert materializer(DISK_FREE_MIN="").disk_free_min_bytes == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("1KB", 1000), ("1KiB", 1024), ("2.5 GB", 2_500_000_000), ("7", 7)],
)
def test_sizes_read_as_bytes(raw: str, expected: int) -> None:
    assert size_in_bytes(raw) == expected
    assert materializer(DISK_FREE_MIN=raw).disk_free_min_bytes == expected


def test_a_setting_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    message = refused(materializer, DUCKDB_PATH=str(tmp_path))
    assert "a file, not a directory" in message


# -- any text in: a value or a SettingsError, never another exception ----------------------

_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789.-+eE_ ,:/", max_size=24),
    st.sampled_from(["nan", "inf", "-0", "1e308", "1e309", "true", "off", "128MB", " "]),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALL), _TEXT)
def test_any_text_gives_a_value_or_a_settings_error(
    case: tuple[str, str, Setting[Any]], text: str
) -> None:
    _process, _name, declared = case
    try:
        value = declared.read(text)
    except SettingsError as exc:
        assert WORDING.match(str(exc)), str(exc)
        assert str(exc).startswith(declared.env + "=")
        return
    declared.check(value)  # a value read is a value the settings accept


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(list(PROCESSES.values())),
    st.dictionaries(st.sampled_from([d.env for _, _, d in ALL]), _TEXT, max_size=6),
)
def test_any_environment_gives_settings_or_a_settings_error(
    cls: type[Any], environ: dict[str, str]
) -> None:
    try:
        read = read_settings(cls, environ)
    except SettingsError as exc:
        assert WORDING.match(str(exc)), str(exc)
        return
    assert isinstance(read, cls)
