"""``alerts``: the alert rules and their states (docs/ALERTS.md), Query and live Subscription.

Not a named query of the registry: the alert engine hosted by this gateway answers it
(gateway/alerts.py). Without ``GATEWAY_ALERT_RULES`` the list is empty. The live twin is
refreshed by the hub whenever a rule's state changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator

import strawberry

from gateway.schema.base import Info
from gateway.schema.fields import extra_field


@strawberry.type(description="One alert rule and its state.")
class Alert:
    rule: str = strawberry.field(description="The rule's name (unique in the rules file).")
    kind: str = strawberry.field(
        description="low_stock, overdue_receivables, revenue_drop, pipeline_lag,"
        " rejected_events or data_gaps."
    )
    state: str = strawberry.field(description="inactive, pending or firing.")
    since: dt.datetime | None = strawberry.field(description="When the state began.")
    value: str | None = strawberry.field(
        description="The last value compared with the threshold, exact, as text."
    )
    threshold: str = strawberry.field(description="The threshold, exact, as text.")
    description: str = strawberry.field(description="The rule's description.")
    error: str | None = strawberry.field(description="Why the last evaluation failed.")
    evaluated_at: dt.datetime | None = strawberry.field(description="The last evaluation.")


def alerts_of(info: Info) -> list[Alert]:
    from gateway.alerts import for_upstream

    service = for_upstream(info.context.upstream)
    if service is None:
        return []
    states = service.engine.state.rules
    return [
        Alert(
            rule=rule.name,
            kind=rule.kind,
            state=states[rule.name].status,
            since=states[rule.name].since,
            value=None if states[rule.name].value is None else str(states[rule.name].value),
            threshold=str(rule.threshold),
            description=rule.description,
            error=states[rule.name].error,
            evaluated_at=states[rule.name].evaluated_at,
        )
        for rule in service.rules.rules
    ]


async def alerts(info: Info) -> list[Alert]:
    return alerts_of(info)


async def alerts_live(info: Info) -> AsyncGenerator[list[Alert], None]:
    from gateway.alerts import for_upstream

    service = for_upstream(info.context.upstream)
    while True:
        yield alerts_of(info)
        if service is None:
            return
        await service.engine.changed.wait()


extra_field(
    "alerts",
    strawberry.field(resolver=alerts, name="alerts", description="Alert rules and their states."),
    strawberry.subscription(
        resolver=alerts_live, name="alerts", description="Live `alerts`: on every state change."
    ),
)
