"""Seeded Pulse ERP traffic for demos, tests and benchmarks, with its expected aggregates.

``generate(seed, count)`` builds a scenario (messages in publish order),
``Scenario.expected`` works out what the aggregates must show, and ``publish`` sends
messages to JetStream.
"""

from pulse_bi.simulator.events import SimMessage
from pulse_bi.simulator.generator import Scenario, generate, iter_messages
from pulse_bi.simulator.publisher import PublishError, PublishStats, publish

__all__ = [
    "PublishError",
    "PublishStats",
    "Scenario",
    "SimMessage",
    "generate",
    "iter_messages",
    "publish",
]
