"""Archive horizon: raw events up to this sequence live in the Parquet archive only.

Written in the same transaction as the deletion of those raw rows
(materializer/archive.py, docs/OPERATIONS.md "Archive and retention").
"""

SQL = """
CREATE TABLE archive_state (
    id INTEGER PRIMARY KEY,
    horizon BIGINT NOT NULL,
    archived_at TIMESTAMPTZ
);
INSERT INTO archive_state VALUES (1, 0, NULL);
"""
