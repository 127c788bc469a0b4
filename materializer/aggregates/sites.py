"""Sites: how many events the materializer applied from each site, and the latest time.

No events of its own (``registry.SITES_SEEN``): it counts what the other aggregates
applied in the batch, so it runs after them (they may still reject an event: an order
id created again). Table (DDL in ``migrations/m0007_sites.py``): ``site_events``, one
row per named site. The site of an event is its message's ``Pulse-Site`` ('' without
one, the central site; docs/EVENTS.md, "Sites").

The central site has no row (``migrations/m0011_central_site_in_pipeline.py``): its
events are those applied less the named sites', and its latest event time goes into
``pipeline_state`` with the row every batch appends anyway (``pipeline.record``), so a
batch without sites — every batch of a one-site deployment — writes nothing here.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from materializer.aggregates.batch import Batch
from materializer.aggregates.columns import from_micros, instants, ints, strings
from materializer.aggregates.history import History
from materializer.aggregates.pipeline import PIPELINE_STATE
from materializer.queries import Cursor, QueryContext, Select, implements
from pulse_bi.contract import registry

SPEC = registry.SITES_SEEN
_MICROS = attrgetter("micros")
_ADD_TO_SITE = (
    "UPDATE site_events SET events = events + ?,"
    " last_event_time = greatest(last_event_time, ?::TIMESTAMPTZ) WHERE site = ?"
)
_NEW_SITE = "INSERT INTO site_events (events, last_event_time, site) VALUES (?, ?, ?)"


def probe(batch: Batch) -> list[str]:
    """Sites need no lookups of earlier keys."""
    return []


def apply(batch: Batch) -> None:
    """Add the batch's applied events to their sites' counts."""
    if not batch.named_sites and len(batch.rejects) == batch.early_rejects:
        # The usual batch: every event is the central site's and every one accepted is
        # applied, so its latest time is the batch's (found while decoding).
        if batch.latest_micros is not None:
            batch.central_last_event_time = from_micros(batch.latest_micros)
        return
    rejected = {reject[0] for reject in batch.rejects}  # stream sequences
    counts: dict[str, int] = {}
    latest: dict[str, int] = {}  # microseconds since the epoch (``Accepted.micros``)
    for group in batch.events.values():
        if rejected:  # an aggregate may have refused some (they are not applied)
            group = [event for event in group if event.sequence not in rejected]
        if not group:
            continue
        names = [event.message.site or "" for event in group]
        first = names[0]
        if names.count(first) == len(names):  # the usual case: one site per batch
            pairs: Iterable[tuple[str, int]] = [(first, max(map(_MICROS, group)))]
            counts[first] = counts.get(first, 0) + len(names)
        else:
            pairs = zip(names, map(_MICROS, group), strict=True)
            for site in names:
                counts[site] = counts.get(site, 0) + 1
        for site, time in pairs:
            if site not in latest or time > latest[site]:
                latest[site] = time
    if "" in counts:  # the central site: counted by pipeline.record
        del counts[""]
        batch.central_last_event_time = from_micros(latest.pop(""))
    if not counts:
        return
    if len(counts) == 1:
        # The usual batch: one site, most often known already. A plain UPDATE with
        # parameters costs a third of the upsert below (no frame scan, no MERGE); its
        # count of rows says whether the site needs inserting.
        ((site, events),) = counts.items()
        params = [events, from_micros(latest[site]), site]
        (updated,) = batch.earlier.execute(_ADD_TO_SITE, params).fetchall()[0]
        if not updated:
            batch.earlier.execute(_NEW_SITE, params)
        return
    batch.insert(
        "site_events",
        {
            "site": strings(counts),
            "events": ints(counts.values()),
            "last_event_time": instants(latest[site] for site in counts),
        },
        conflict="ON CONFLICT DO UPDATE SET events = site_events.events + excluded.events,"
        " last_event_time = greatest(site_events.last_event_time, excluded.last_event_time)",
    )


def rebuild(history: History) -> None:
    """``site_events`` and the central site's latest event time from every applied event:
    the raw rows of every raw table."""
    applied = " UNION ALL ".join(
        f"SELECT site, time FROM {history.of(table)}" for table in registry.RAW_TABLES
    )
    history.cur.execute(
        f"INSERT INTO site_events SELECT site, count(*), max(time) FROM ({applied})"
        " WHERE site <> '' GROUP BY site"
    )
    history.cur.execute(
        f"UPDATE {PIPELINE_STATE.base} SET central_last_event_time ="
        f" (SELECT max(time) FROM ({applied}) WHERE site = '') WHERE id = 1"
    )


#: The named sites' rows, and the central site's when it has applied events: those
#: applied less the named sites' (``pipeline.record`` and ``apply`` count each once).
_SITES = (
    "WITH named AS (SELECT coalesce(sum(events), 0) AS events FROM site_events)"
    " SELECT site, events, last_event_time FROM site_events"
    " UNION ALL SELECT '', (p.events_applied - named.events)::BIGINT,"
    " p.central_last_event_time FROM pipeline_state p, named"
    " WHERE p.id = 1 AND p.events_applied > named.events"
    " ORDER BY site"
)


@implements(registry.SITES)
def sites(cur: Cursor, params: registry.SitesParams, _: QueryContext) -> Select:
    """Every site with applied events, by name."""
    return Select(_SITES, [])
