"""How the long-running processes connect to NATS (docs/SCALING.md, "Client settings").

One place for the options the materializer's two connections and the gateway's share,
so a cluster behaves the same from every process.
"""

from __future__ import annotations

from typing import Any

#: Seconds between two pings from the client, and how many may go unanswered before it
#: drops the connection and moves to another server. A node that dies closes its
#: sockets and clients move on at once; one cut off by a partition that leaves the
#: sockets open is noticed only by the pings: after 15 s times (2 + 1) = 45 s at the most,
#: instead of the 6 minutes of nats-py's defaults (120 s, 2 outstanding).
PING_INTERVAL = 15.0
MAX_OUTSTANDING_PINGS = 2


def client_options(url: str, name: str, ping_interval: float = PING_INTERVAL) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` of a process that must never give up."""
    return {
        "servers": [s.strip() for s in url.split(",") if s.strip()],
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,  # an outage longer than any limit must not end it
        "reconnect_time_wait": 0.5,
        "connect_timeout": 2,
        "ping_interval": ping_interval,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
    }
