"""Lost and replaced stream data: sequence gaps, and the stream the file was built from.

``stream_gaps``: one row per range of sequences that was gone from the stream when the
materializer read past it (purged, deleted, cut by a limit), written in the same
transaction as the batch after it. ``stream_identity``: the stream's creation time and
first sequence when this file first consumed it; a stream deleted and created again has
another creation time (docs/OPERATIONS.md, "Lost and replaced stream data").
Independent of every other migration: it only creates its own tables.
"""

SQL = """
CREATE TABLE stream_gaps (
    from_sequence BIGINT NOT NULL,
    to_sequence BIGINT NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE stream_identity (
    id INTEGER PRIMARY KEY,
    stream VARCHAR NOT NULL,
    created VARCHAR NOT NULL,
    first_sequence BIGINT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
"""
