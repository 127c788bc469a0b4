"""Is a TCP port free, and if not, who holds it (for messages that say what to change)."""

from __future__ import annotations

import socket

import psutil


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def holder(port: int) -> str | None:
    """``pid N (command line)`` of the process listening on ``port``, when it can be seen."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return None
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline()) or "?"
            except psutil.Error:
                command = "?"
            if len(command) > 120:
                command = command[:117] + "..."
            return f"pid {conn.pid} ({command})"
    return None
