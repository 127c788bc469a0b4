"""Materializer: applies the PULSE_EVENTS stream to DuckDB and answers named queries."""
