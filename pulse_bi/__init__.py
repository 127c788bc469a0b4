"""Pulse BI: live analytics for Pulse ERP on NATS JetStream and DuckDB."""

__version__ = "0.1.0"
