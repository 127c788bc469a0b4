"""The alert rules file (YAML or TOML), validated at start (docs/ALERTS.md, "Rules").

Every problem is reported with where it is (``rules[2].threshold: ...``) and the file is
refused whole: a typo never silently disables a rule.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

Kind = Literal[
    "low_stock",
    "overdue_receivables",
    "revenue_drop",
    "pipeline_lag",
    "rejected_events",
    "data_gaps",
]
#: Rules that fire when the value falls below the threshold; the others fire above it.
BELOW: frozenset[str] = frozenset({"revenue_drop"})
_DURATION = re.compile(r"^([0-9]{1,9}(?:\.[0-9]{1,6})?)(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_RULES = 1000

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class RulesError(ValueError):
    """The rules file cannot be used; the message says where and why."""


def duration(value: Any, where: str) -> float:
    """Seconds from ``30s``, ``5m``, ``1h``, ``250ms`` or a number of seconds."""
    if isinstance(value, bool):
        raise RulesError(f"{where}: a duration like 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise RulesError(f"{where}: a duration like 30s, 5m or 1h, got {value!r}")
    if not 0 <= seconds <= 366 * 86400:
        raise RulesError(f"{where}: must be between 0 and 366 days, got {value!r}")
    return seconds


def number(value: Any, where: str) -> Decimal:
    """An exact number from YAML/TOML (ints, decimal strings; floats by their text)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RulesError(f"{where}: a number, got {value!r}")
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation:
        raise RulesError(f"{where}: a number, got {value!r}") from None
    if not result.is_finite() or abs(result) > Decimal(10) ** 30:
        raise RulesError(f"{where}: a finite number below 10^30, got {value!r}")
    return result


class WebhookReceiver(msgspec.Struct, tag="webhook", forbid_unknown_fields=True):
    """JSON POST, signed with HMAC-SHA256 when ``secret`` is set."""

    url: Text
    secret: str | None = None
    timeout: float | str = 5.0


class SlackReceiver(msgspec.Struct, tag="slack", forbid_unknown_fields=True):
    """A Slack-compatible incoming webhook (``{"text": ...}``)."""

    url: Text
    timeout: float | str = 5.0


class EmailReceiver(msgspec.Struct, tag="email", forbid_unknown_fields=True):
    """Email over SMTP."""

    host: Text
    to: Annotated[list[Text], msgspec.Meta(min_length=1, max_length=100)]
    sender: Text
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float | str = 10.0


Receiver = WebhookReceiver | SlackReceiver | EmailReceiver


class RetrySpec(msgspec.Struct, forbid_unknown_fields=True):
    """Backoff of a failing delivery: ``backoff`` doubled per attempt up to ``max_backoff``."""

    backoff: float | str = 1.0
    max_backoff: float | str = 60.0
    #: Consecutive failures after which a receiver counts as failing in /health.
    unhealthy_after: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3


class Silence(msgspec.Struct, forbid_unknown_fields=True, rename={"from_": "from"}):
    """No notifications for these rules (``*``: all) in [from, to)."""

    rules: Annotated[list[Text], msgspec.Meta(min_length=1)]
    from_: dt.datetime
    to: dt.datetime


class RuleSpec(msgspec.Struct, forbid_unknown_fields=True, rename={"for_": "for"}):
    """One rule as written in the file."""

    name: Text
    kind: Kind
    threshold: int | float | str | None = None
    for_: float | str | None = None
    hysteresis: int | float | str = 0
    receivers: list[Text] | None = None
    description: str = ""
    sku: Text | None = None
    warehouse: Text | None = None
    customer_id: Text | None = None
    min_days: Annotated[int, msgspec.Meta(ge=-100_000, le=100_000)] = 1


class Defaults(msgspec.Struct, forbid_unknown_fields=True, rename={"for_": "for"}):
    for_: float | str = 0
    receivers: list[Text] = msgspec.field(default_factory=list)
    group_wait: float | str = 1.0
    retry: RetrySpec = msgspec.field(default_factory=RetrySpec)


class RulesFile(msgspec.Struct, forbid_unknown_fields=True):
    rules: list[RuleSpec]
    receivers: dict[str, Receiver] = msgspec.field(default_factory=dict)
    defaults: Defaults = msgspec.field(default_factory=Defaults)
    silences: list[Silence] = msgspec.field(default_factory=list)


#: Thresholds when a rule gives none: any low-stock item, any overdue amount, half of
#: last week's revenue, 1,000 events of lag, any rejected event, any missing event.
DEFAULT_THRESHOLDS: dict[str, Decimal] = {
    "low_stock": Decimal(0),
    "overdue_receivables": Decimal(0),
    "revenue_drop": Decimal("0.5"),
    "pipeline_lag": Decimal(1000),
    "rejected_events": Decimal(0),
    "data_gaps": Decimal(0),
}


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """A validated rule."""

    name: str
    kind: str
    threshold: Decimal
    hysteresis: Decimal
    for_seconds: float
    receivers: tuple[str, ...]
    description: str = ""
    sku: str | None = None
    warehouse: str | None = None
    customer_id: str | None = None
    min_days: int = 1

    @property
    def below(self) -> bool:
        """Whether the rule fires when the value falls below the threshold."""
        return self.kind in BELOW


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """A validated rules file."""

    rules: tuple[Rule, ...]
    receivers: dict[str, Receiver]
    silences: tuple[Silence, ...]
    group_wait: float
    backoff: float
    max_backoff: float
    unhealthy_after: int

    def silenced(self, rule: str, at: dt.datetime) -> bool:
        """Whether notifications of ``rule`` are silenced at ``at``."""
        return any(
            (rule in s.rules or "*" in s.rules) and s.from_ <= at < s.to for s in self.silences
        )

    def timeout(self, receiver: str) -> float:
        return duration(self.receivers[receiver].timeout, f"receivers.{receiver}.timeout")


def parse(text: str, suffix: str) -> Rules:
    """Validate a rules file's text (``suffix`` ``.toml`` or ``.yaml``/``.yml``)."""
    try:
        if suffix == ".toml":
            raw = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            raw = yaml.safe_load(text)
        else:
            raise RulesError(f"rules file must end in .yaml, .yml or .toml, not {suffix!r}")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RulesError(f"not valid {suffix[1:].upper()}: {exc}") from None
    if not isinstance(raw, dict):
        raise RulesError("the file must be a mapping with a `rules` list")
    try:
        spec = msgspec.convert(raw, RulesFile, strict=False)
    except msgspec.ValidationError as exc:
        raise RulesError(str(exc).replace("$.", "").replace("`$`", "the file")) from None
    except UnicodeError:  # YAML's "\ud800" escapes give lone surrogates
        raise RulesError("the file holds text that is not valid Unicode") from None
    return _check(spec)


def load(path: Path) -> Rules:
    """Read and validate a rules file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"cannot read {path}: {exc}") from None
    try:
        return parse(text, path.suffix.lower())
    except RulesError as exc:
        raise RulesError(f"{path}: {exc}") from None


def _check(spec: RulesFile) -> Rules:
    if not spec.rules:
        raise RulesError("rules: at least one rule")
    if len(spec.rules) > MAX_RULES:
        raise RulesError(f"rules: at most {MAX_RULES}")
    for name in spec.receivers:
        if not _NAME.match(name):
            raise RulesError(f"receivers.{name[:40]!r}: names are letters, digits, _ . -")
    for name, receiver in spec.receivers.items():
        where = f"receivers.{name}"
        duration(receiver.timeout, f"{where}.timeout")
        if isinstance(receiver, WebhookReceiver | SlackReceiver) and not re.match(
            r"^https?://[^\s/]+", receiver.url
        ):
            raise RulesError(f"{where}.url: an http:// or https:// URL, got {receiver.url!r}")
    defaults = spec.defaults
    default_for = duration(defaults.for_, "defaults.for")
    names: set[str] = set()
    rules = []
    for i, item in enumerate(spec.rules):
        where = f"rules[{i}] ({item.name})"
        if not _NAME.match(item.name):
            raise RulesError(f"{where}.name: letters, digits, _ . - (up to 64)")
        if item.name in names:
            raise RulesError(f"{where}.name: {item.name!r} is used by two rules")
        names.add(item.name)
        receivers = tuple(item.receivers if item.receivers is not None else defaults.receivers)
        for wanted in receivers:
            if wanted not in spec.receivers:
                known = ", ".join(spec.receivers) or "none"
                raise RulesError(f"{where}.receivers: no receiver {wanted!r} (known: {known})")
        if item.kind != "low_stock" and (item.sku or item.warehouse):
            raise RulesError(f"{where}: sku and warehouse apply to low_stock rules only")
        if item.kind != "overdue_receivables" and (item.customer_id or item.min_days != 1):
            raise RulesError(
                f"{where}: customer_id and min_days apply to overdue_receivables rules only"
            )
        threshold = (
            DEFAULT_THRESHOLDS[item.kind]
            if item.threshold is None
            else number(item.threshold, f"{where}.threshold")
        )
        hysteresis = number(item.hysteresis, f"{where}.hysteresis")
        if hysteresis < 0:
            raise RulesError(f"{where}.hysteresis: must not be negative")
        if item.kind == "revenue_drop" and not 0 < threshold <= 10:
            raise RulesError(f"{where}.threshold: a fraction of last week's revenue (0 to 10)")
        rules.append(
            Rule(
                name=item.name,
                kind=item.kind,
                threshold=threshold,
                hysteresis=hysteresis,
                for_seconds=default_for
                if item.for_ is None
                else duration(item.for_, f"{where}.for"),
                receivers=receivers,
                description=item.description,
                sku=item.sku,
                warehouse=item.warehouse,
                customer_id=item.customer_id,
                min_days=item.min_days,
            )
        )
    for i, silence in enumerate(spec.silences):
        if silence.from_.tzinfo is None or silence.to.tzinfo is None:
            raise RulesError(f"silences[{i}]: from and to need a timezone offset")
        if silence.from_ >= silence.to:
            raise RulesError(f"silences[{i}]: from must be before to")
        unknown = [r for r in silence.rules if r != "*" and r not in names]
        if unknown:
            raise RulesError(f"silences[{i}].rules: no rule {unknown[0]!r}")
    backoff = duration(defaults.retry.backoff, "defaults.retry.backoff")
    max_backoff = duration(defaults.retry.max_backoff, "defaults.retry.max_backoff")
    if backoff <= 0 or max_backoff < backoff:
        raise RulesError("defaults.retry: backoff > 0 and max_backoff >= backoff")
    return Rules(
        rules=tuple(rules),
        receivers=dict(spec.receivers),
        silences=tuple(spec.silences),
        group_wait=duration(defaults.group_wait, "defaults.group_wait"),
        backoff=backoff,
        max_backoff=max_backoff,
        unhealthy_after=defaults.retry.unhealthy_after,
    )
