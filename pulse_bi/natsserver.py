"""Start a local ``nats-server`` with JetStream (used by ``pulse-bi dev`` and the tests)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class NatsServerNotFound(RuntimeError):
    """No nats-server binary could be found."""


def find_nats_server(explicit: str | None = None) -> str:
    """Path of the nats-server binary: ``explicit``, else NATS_SERVER_BIN, else PATH."""
    candidate = explicit or os.environ.get("NATS_SERVER_BIN") or "nats-server"
    found = shutil.which(candidate)
    if found is None:
        raise NatsServerNotFound(
            f"nats-server not found ({candidate!r}). Install it (Debian/Ubuntu: "
            "'apt-get install nats-server', macOS: 'brew install nats-server') or set "
            "NATS_SERVER_BIN to its path."
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NatsProcess:
    """A nats-server child process listening for clients on 127.0.0.1:``port``.

    The start-up and shutdown every local server shares: subclasses (dataclasses) hold
    ``port`` and ``process`` and say how the process is started.
    """

    port: int
    process: subprocess.Popen[bytes] | None

    @property
    def label(self) -> str:
        """How messages name this server: with its ``name`` where it has one (cluster
        nodes, hub and sites)."""
        return f"nats-server {getattr(self, 'name', '')}".rstrip()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self, command: list[str], own_session: bool = False) -> None:
        """Start ``command`` (its output discarded); does not wait for it to listen."""
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=own_session,
        )

    def wait_listening(self, timeout: float = 10.0) -> None:
        """Wait until the port accepts connections; stop the process if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.label} did not listen on port {self.port} in {timeout}s")

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash (no lame-duck, no clean shutdown)."""
        if self.process is not None and self.running:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
        if self.process is None or not self.running:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalNatsServer(NatsProcess):
    """A nats-server child process with JetStream and its own store directory."""

    store_dir: Path
    port: int = 0
    binary: str | None = None
    #: Start in a session of its own, so a terminal's Ctrl-C reaches only the parent,
    #: which stops the server last (``pulse-bi dev``).
    own_session: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> LocalNatsServer:
        """Start the server and wait until it accepts connections."""
        if not self.port:
            self.port = free_port()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        binary = find_nats_server(self.binary)
        self.spawn(
            [binary, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            own_session=self.own_session,
        )
        self.wait_listening(timeout)
        return self

    def restart(self) -> None:
        """Stop and start again on the same port and store (keeps the stream)."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalNatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
