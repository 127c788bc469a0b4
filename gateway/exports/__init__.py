"""Exports of every named query as CSV, XLSX and Parquet (docs/EXPORTS.md).

``table`` derives the columns from the registry's row structs, ``params`` parses URL
parameters by the params structs, ``stream`` pages through the materializer and
``writers`` writes each page; ``http`` serves ``/export`` and ``pulse_bi.export`` the CLI.
"""
