"""Bulk delivery: a subscription's messages as raw bytes, without nats-py's per-message work.

nats-py turns every message into a ``Msg`` (subject and reply decoded, headers parsed
into a dict), runs the ordered-consumer checks on it, queues it and lets a task await
the callback with it: about 10 µs a message on the machines of docs/BENCHMARKS.md, more
than decoding and validating the event. The materializer reads each stream message
once and needs only its payload, subject, stream sequence, time and a header or two.

``tap`` swaps the connection's protocol parser (nats-py's ``Parser``, which its read loop
calls with every chunk read from the socket) for ``TapParser``, a subclass that splits
the chunk itself and hands the ``MSG``/``HMSG`` frames of *tapped* subscriptions straight
to a function, in order, on the event loop: subject, reply, raw header block and payload
as bytes. Every other frame goes to nats-py exactly as before (other subscriptions,
``PING``/``PONG``, ``INFO``, ``-ERR``), so connecting, authentication, reconnection and
re-subscribing stay nats-py's. What the tapped subscription receives (JetStream flow
control, idle heartbeats) is the tap function's business: ``materializer.consumer``.

JetStream deliveries are most of what a consumer's subscription receives, so they have
a shorter path: a subscription registered with a ``Receiver`` too gets every frame whose
reply is a JetStream ack subject of the usual form (``$JS.ACK.<stream>.<consumer>.
<delivered>.<stream seq>.<consumer seq>.<timestamp>.<pending>``) with the positions
already read off by the regular expression that splits the frame: one match per message
and no second pass over the ack subject. Anything else (control messages, an ack subject
of another form) reaches its ``Tap`` as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

#: ``tap(subject, reply, header block or None, payload)``; must not raise.
Tap = Callable[[bytes, bytes, bytes | None, bytes], None]
#: ``receive(subject, stream sequence, consumer sequence, timestamp, header block or None,
#: payload)`` for a JetStream delivery: the stream sequence as an int, the consumer sequence
#: and the timestamp (nanoseconds since the epoch) as the ASCII digits of the ack subject,
#: parsed only when needed; must not raise.
Receiver = Callable[[bytes, int, bytes, bytes, bytes | None, bytes], None]

#: Subscriptions no longer tapped whose late messages are still told apart (``strays``).
GONE_KEPT = 64
_CRLF = b"\r\n"
_H = ord("H")
# ``MSG <subject> <sid> [reply] <size>`` and ``HMSG <subject> <sid> [reply] <header
# size> <size>``, as nats-py's own patterns read them.
_MSG = re.compile(rb"MSG[ \t]+(\S+)[ \t]+(\d+)[ \t]+(?:(\S+)[ \t]+)?(\d+)\r\n")
_HMSG = re.compile(rb"HMSG[ \t]+(\S+)[ \t]+(\d+)[ \t]+(?:(\S+)[ \t]+)?(\d+)[ \t]+(\d+)\r\n")
# The same, as nats-server writes them (one space between fields), with a JetStream ack
# subject of nine tokens as the reply (stream and consumer names hold no dots): subject,
# sid, stream sequence, consumer sequence, timestamp, header size (empty for MSG), size.
# Any other frame takes the patterns above.
_ACK = rb"\$JS\.ACK\.[^.\s]+\.[^.\s]+\.\d+\.(\d+)\.(\d+)\.(\d+)\.\d+"
_JS_MSG = re.compile(rb"MSG (\S+) (\d+) " + _ACK + rb" ()(\d+)\r\n")
_JS_HMSG = re.compile(rb"HMSG (\S+) (\d+) " + _ACK + rb" (\d+) (\d+)\r\n")


class TapParser(Parser):
    """nats-py's protocol parser with a direct path for the frames of tapped subscriptions."""

    def __init__(self, nc: Client) -> None:
        super().__init__(nc)
        #: Tap function by subscription id (``Subscription._id``).
        self.taps: dict[int, Tap] = {}
        #: Receiver of JetStream deliveries by subscription id as on the wire (``b"7"``).
        self.receivers: dict[bytes, Receiver] = {}
        #: The last ``GONE_KEPT`` subscriptions no longer tapped (ids as on the wire), and
        #: how many messages arrived for them: what the server had already sent before
        #: their UNSUB reached it. They are dropped here, as nats-py would drop them.
        self.gone: dict[bytes, None] = {}
        self.strays = 0
        self._resets = 0

    def add(self, sid: int, frames: Tap, deliveries: Receiver | None = None) -> None:
        """Tap subscription ``sid``: its JetStream deliveries go to ``deliveries`` (when
        given) and every other frame to ``frames``."""
        self.taps[sid] = frames
        self.gone.pop(str(sid).encode(), None)
        if deliveries is not None:
            self.receivers[str(sid).encode()] = deliveries

    def remove(self, sid: int) -> None:
        """Hand subscription ``sid``'s frames back to nats-py."""
        self.taps.pop(sid, None)
        self.receivers.pop(str(sid).encode(), None)

    def drop(self, sid: int) -> None:
        """Stop tapping subscription ``sid``, being unsubscribed: its messages still on
        their way are counted in ``strays`` and dropped (nats-py would drop them too)."""
        self.remove(sid)
        self.gone[str(sid).encode()] = None
        if len(self.gone) > GONE_KEPT:
            del self.gone[next(iter(self.gone))]

    def reset(self) -> None:
        super().reset()
        self._resets = getattr(self, "_resets", 0) + 1

    async def parse(self, data: bytes = b"") -> None:
        if self.state != AWAITING_CONTROL_LINE:
            # Only right after ``tap`` replaced a parser that was inside a message.
            await super().parse(data)
            return
        self.buf.extend(data)
        chunk = bytes(self.buf)  # one copy: frames are then sliced out of bytes
        size = len(chunk)
        pos = 0
        taps, receivers = self.taps, self.receivers
        try:
            while pos < size:
                headed = chunk[pos] == _H  # JetStream messages carry headers: most are HMSG
                if receivers:
                    fast = (_JS_HMSG if headed else _JS_MSG).match(chunk, pos)
                    if fast is not None:
                        subject, sid, sequence, delivered, timestamp, header, total = fast.groups()
                        receive = receivers.get(sid)
                        if receive is not None or sid in self.gone:
                            start = fast.end()
                            stop = start + int(total)
                            if size < stop + 2:
                                return  # the payload is still on its way
                            pos = stop + 2
                            if receive is None:
                                self.strays += 1
                                continue
                            header_size = int(header) if header else 0
                            middle = start + header_size
                            receive(
                                subject,
                                int(sequence),
                                delivered,
                                timestamp,
                                chunk[start:middle] if header_size else None,
                                chunk[middle:stop],
                            )
                            continue
                if headed:
                    frame = _HMSG.match(chunk, pos)
                    if frame is not None:
                        subject, sid, reply, header, total = frame.groups()
                        header_size = int(header)
                else:
                    frame = _MSG.match(chunk, pos)
                    if frame is not None:
                        subject, sid, reply, total = frame.groups()
                        header_size = 0
                if frame is None:
                    end = chunk.find(_CRLF, pos)
                    if end < 0:
                        return  # the rest of the line is on its way
                    if chunk.startswith((b"MSG", b"HMSG"), pos):
                        raise ProtocolError("nats: malformed MSG")
                    # Any other operation is one line: nats-py handles it.
                    line, pos = chunk[pos : end + 2], end + 2
                    if not await self._other(line):
                        return  # the connection was reset meanwhile
                    continue
                start = frame.end()
                stop = start + int(total)
                if size < stop + 2:
                    return  # the payload is still on its way
                headers = chunk[start : start + header_size] if header_size else None
                payload = chunk[start + header_size : stop]
                pos = stop + 2
                number = int(sid)
                deliver = taps.get(number)
                if deliver is not None:
                    deliver(subject, reply or b"", headers, payload)
                elif sid in self.gone:
                    self.strays += 1
                else:
                    await self.nc._process_msg(number, subject, reply or b"", payload, headers)
        finally:
            del self.buf[:pos]

    async def _other(self, line: bytes) -> bool:
        """Let nats-py's parser handle one operation line; False when it reset the parser."""
        buf, resets = self.buf, self._resets
        self.buf = bytearray()
        await super().parse(line)
        if self._resets != resets:
            return False
        self.buf = buf
        return True


def tap(nc: Client) -> TapParser:
    """Install a ``TapParser`` on a connection (once; later calls return the same one)."""
    parser = nc._ps
    if isinstance(parser, TapParser):
        return parser
    tapping = TapParser(nc)
    tapping.buf, tapping.state = parser.buf, parser.state
    tapping.needed, tapping.header_needed = parser.needed, parser.header_needed
    tapping.msg_arg = parser.msg_arg
    nc._ps = tapping
    return tapping


def header_values(block: bytes) -> dict[str, str]:
    """The headers of a raw ``NATS/1.0`` header block (after its status line)."""
    values: dict[str, str] = {}
    for line in block.split(_CRLF)[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            values[name.strip().decode(errors="replace")] = value.strip().decode(errors="replace")
    return values


def status_of(block: bytes) -> bytes:
    """The status line of a header block after ``NATS/1.0``, e.g. ``b"100 Idle Heartbeat"``."""
    return block[8 : block.find(_CRLF)].strip()
