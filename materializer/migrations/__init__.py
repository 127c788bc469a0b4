"""Numbered schema migrations: modules ``mNNNN_name.py``, each with a ``SQL`` string.

Applied in order by ``materializer.db``; a migration never changes once released.
"""
