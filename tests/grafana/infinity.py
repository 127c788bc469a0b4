"""What Grafana and the Infinity datasource do with a dashboard panel, in Python.

Grafana does not run in the tests, so this module plays its part for the panels of
grafana/dashboards: the panel's time range (dashboard range, relative time and time
shift overrides), Infinity's time macros substituted as text into the GraphQL document,
the HTTP request Infinity's backend sends (URL, headers, body bytes), and how its
backend parser turns the JSON answer into a frame (``root_selector``, then one value
per column ``selector``, typed by the column ``type``).

It follows the Infinity plugin's backend (Go): ``GetQueryBody`` builds
``{"query": Q, "variables": null}`` with Go's ``json.Marshal``, the request carries
``Content-Type: application/json`` and ``Accept: application/json;q=0.9,text/plain``,
relative query URLs are prefixed with the datasource URL, and a status >= 400 is an
error. Types are checked as strictly as the dashboards need them: a ``number`` column
must hold JSON numbers (a number sent as a string does not chart or sort as one), a
``timestamp`` column RFC 3339 strings with an offset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "grafana" / "dashboards"
PROVISIONING_DIR = ROOT / "grafana" / "provisioning"

PLUGIN_ID = "yesoreyeram-infinity-datasource"
COLUMN_TYPES = ("string", "number", "timestamp", "timestamp_epoch", "timestamp_epoch_s", "boolean")

#: Headers Infinity's backend sets on a GraphQL POST (pkg/infinity/headers.go).
REQUEST_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json;q=0.9,text/plain",
    "User-Agent": "Go-http-client/1.1",
}


class FrameError(AssertionError):
    """The answer cannot become the frame the panel declares."""


@dataclass(frozen=True)
class TimeRange:
    """An absolute time range, as Grafana hands it to a datasource query."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class PanelTarget:
    """One query of one panel of one dashboard."""

    dashboard: dict[str, Any]
    panel: dict[str, Any]
    target: dict[str, Any]

    @property
    def name(self) -> str:
        """A readable id for test output: ``uid/panel title/refId``."""
        return f"{self.dashboard['uid']}/{self.panel['title']}/{self.target['refId']}"

    @property
    def document(self) -> str:
        """The GraphQL document, macros not yet substituted."""
        return str(self.target["url_options"]["body_graphql_query"])


@dataclass
class Frame:
    """The table a panel gets: column names in order and one dict per row."""

    names: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        """All values of one column."""
        return [row[name] for row in self.rows]


# ----------------------------------------------------------------------- dashboards
def load_dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard JSON of grafana/dashboards, by uid."""
    dashboards = {}
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        dashboard = json.loads(path.read_text())
        dashboards[dashboard["uid"]] = dashboard
    return dashboards


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def iter_targets(dashboards: Mapping[str, dict[str, Any]]) -> Iterator[PanelTarget]:
    """Every query of every panel of the given dashboards."""
    for dashboard in dashboards.values():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                yield PanelTarget(dict(dashboard), panel, target)


def variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Current value of each dashboard variable (what a kiosk screen shows)."""
    values = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {})
        values[variable["name"]] = str(current.get("value", ""))
    return values


def interpolate_variables(text: str, values: Mapping[str, str]) -> str:
    """Grafana's ``$name`` / ``${name}`` substitution of dashboard variables."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, text)


# ------------------------------------------------------------------------ time range
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not match:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _start_of_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def parse_date_math(text: str, now: datetime) -> datetime:
    """Grafana's date math for the forms the dashboards use: now, now-24h, now/d."""
    text = text.strip()
    if text == "now":
        return now
    if text == "now/d":
        return _start_of_day(now)
    match = re.fullmatch(r"now-(\d+[smhdw])(/d)?", text)
    if match:
        moment = now - _duration(match.group(1))
        return _start_of_day(moment) if match.group(2) else moment
    raise ValueError(f"date math not understood by this test: {text!r}")


def dashboard_range(dashboard: Mapping[str, Any], now: datetime) -> TimeRange:
    """The dashboard's default time range (what a kiosk screen opens with)."""
    time = dashboard["time"]
    return TimeRange(parse_date_math(time["from"], now), parse_date_math(time["to"], now))


def panel_range(dashboard: Mapping[str, Any], panel: Mapping[str, Any], now: datetime) -> TimeRange:
    """The panel's time range after its relative-time and time-shift overrides.

    As Grafana's ``applyPanelTimeOverrides``: a relative time replaces the range
    (``now/d`` means today so far, ``6h`` means the last 6 hours), then a time shift
    moves both ends back by the (variable-interpolated) duration.
    """
    time_range = dashboard_range(dashboard, now)
    values = variable_values(dashboard)
    if panel.get("timeFrom"):
        relative = interpolate_variables(str(panel["timeFrom"]), values)
        if "now" not in relative:
            relative = "now-" + relative
        time_range = TimeRange(parse_date_math(relative, now), now)
    if panel.get("timeShift"):
        shift = _duration(interpolate_variables(str(panel["timeShift"]), values))
        time_range = TimeRange(time_range.start - shift, time_range.end - shift)
    return time_range


# ------------------------------------------------------------------------ macros
#: moment.js tokens Grafana's date formats use, as strftime directives.
_MOMENT_TOKENS = {
    "YYYY": "%Y",
    "MM": "%m",
    "DD": "%d",
    "HH": "%H",
    "hh": "%I",
    "mm": "%M",
    "ss": "%S",
}
_MOMENT = re.compile("|".join(_MOMENT_TOKENS))


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _format(moment: datetime, spec: str | None) -> str:
    moment = moment.astimezone(UTC)
    if spec is None:
        return str(int(moment.timestamp() * 1000))
    if spec in ("date", "date:iso"):
        return _iso(moment)
    if spec == "date:seconds":
        return str(int(moment.timestamp()))
    if spec.startswith("date:"):
        layout = _MOMENT.sub(lambda token: _MOMENT_TOKENS[token.group(0)], spec[len("date:") :])
        return moment.strftime(layout)
    raise ValueError(f"time macro format not understood: {spec!r}")


_MACRO = re.compile(r"\$\{__(from|to|timeFrom|timeTo)(?::([^}]*))?\}")


def substitute_macros(text: str, time_range: TimeRange) -> str:
    """Substitute Infinity's time macros as text, as its backend does.

    ``${__from}`` / ``${__timeFrom}`` become epoch milliseconds, ``${__from:date:iso}``
    an ISO instant with milliseconds and ``Z``, ``${__from:date:seconds}`` epoch
    seconds and ``${__from:date:YYYY-MM-DD}`` a formatted UTC date (same for ``to``).
    """

    def replace(match: re.Match[str]) -> str:
        moment = time_range.start if match.group(1) in ("from", "timeFrom") else time_range.end
        return _format(moment, match.group(2))

    return _MACRO.sub(replace, text)


def unsubstituted(text: str) -> list[str]:
    """Macros or variables left in a text after substitution (should be none)."""
    return re.findall(r"\$\{[^}]*\}|\$__\w+", text)


# ----------------------------------------------------------------------- request
@dataclass(frozen=True)
class InfinityRequest:
    """The HTTP request Infinity's backend sends for one GraphQL target."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    query: str


def go_json(value: Any) -> bytes:
    """JSON as Go's ``json.Marshal`` writes a map: sorted keys, no spaces, HTML-escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def query_url(datasource_url: str, target_url: str) -> str:
    """Infinity's ``GetQueryURL``: a URL not starting with the datasource URL is prefixed."""
    if target_url.startswith(datasource_url):
        return target_url
    return datasource_url + target_url


def build_request(
    panel_target: PanelTarget, datasource_url: str, time_range: TimeRange
) -> InfinityRequest:
    """The request for one panel target over one time range."""
    options = panel_target.target["url_options"]
    query = substitute_macros(panel_target.document, time_range)
    body = go_json({"query": query, "variables": None})
    return InfinityRequest(
        method=str(options["method"]).upper(),
        url=query_url(datasource_url, str(panel_target.target["url"])),
        headers=dict(REQUEST_HEADERS),
        body=body,
        query=query,
    )


# -------------------------------------------------------------------------- frames
_MISSING = object()


def select(value: Any, path: str) -> Any:
    """A gjson path of dotted keys and array indexes (``data.arAging.byCustomer``)."""
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)


def typed_value(value: Any, column: Mapping[str, str], where: str) -> Any:
    """A JSON value as the column's type, or FrameError when it is not one."""
    kind = column["type"]
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FrameError(f"{where}: {value!r} is not a JSON number")
        return value
    if kind == "string":
        if not isinstance(value, str):
            raise FrameError(f"{where}: {value!r} is not a JSON string")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise FrameError(f"{where}: {value!r} is not a JSON boolean")
        return value
    if kind == "timestamp":
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise FrameError(f"{where}: {value!r} is not an RFC 3339 time with an offset")
        return datetime.fromisoformat(value.replace("z", "Z"))
    if kind in ("timestamp_epoch", "timestamp_epoch_s"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FrameError(f"{where}: {value!r} is not an epoch number")
        scale = 1000 if kind == "timestamp_epoch" else 1
        return datetime.fromtimestamp(value / scale, UTC)
    raise FrameError(f"{where}: unknown column type {kind!r}")


def to_frame(answer: Any, target: Mapping[str, Any]) -> Frame:
    """Apply the target's root selector and typed columns to a decoded JSON answer."""
    root = select(answer, str(target["root_selector"]))
    if root is _MISSING:
        raise FrameError(f"root_selector {target['root_selector']!r} is not in the answer")
    columns = target["columns"]
    frame = Frame(names=[column["text"] or column["selector"] for column in columns])
    # An object is one row, an array one row per item, anything else no rows (as
    # Infinity's framer does with gjson).
    items = root if isinstance(root, list) else [root] if isinstance(root, dict) else []
    for index, item in enumerate(items):
        row = {}
        for column, name in zip(columns, frame.names, strict=True):
            raw = select(item, column["selector"])
            where = f"row {index} column {name!r} ({column['selector']})"
            row[name] = typed_value(None if raw is _MISSING else raw, column, where)
        frame.rows.append(row)
    return frame


def now_utc() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
