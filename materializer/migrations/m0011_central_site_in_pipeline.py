"""The central site's events are counted in ``pipeline_state``, no longer in ``site_events``.

Every batch updates ``pipeline_state``; a batch of events without a site (every batch
of a deployment of one site) updated ``site_events`` as well, a statement of its own
that cost ~1 ms of a small batch (docs/BENCHMARKS.md). The central site (``''``) has
applied ``events_applied`` less the events of the named sites, and its latest event
time is the new ``pipeline_state.central_last_event_time`` (docs/EVENTS.md,
"Sites"). ``site_events`` keeps the named sites.
"""

SQL = """
ALTER TABLE pipeline_state ADD COLUMN central_last_event_time TIMESTAMPTZ;
UPDATE pipeline_state SET central_last_event_time =
    (SELECT last_event_time FROM site_events WHERE site = '');
DELETE FROM site_events WHERE site = '';
"""
