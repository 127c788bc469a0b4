"""A local NATS JetStream cluster: several ``nats-server -js`` processes joined by routes.

Used by the cluster tests, the scaling benchmark and anyone who wants to try failover on
one machine (docs/SCALING.md). Clustering is NATS's own (RAFT meta group, replicated
streams): this module only starts the processes with the right flags.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pulse_bi.natsserver import NatsProcess, find_nats_server, free_port


@dataclass
class ClusterNode(NatsProcess):
    """One nats-server of a :class:`LocalNatsCluster`."""

    name: str
    store_dir: Path
    port: int
    cluster_port: int
    routes: list[str]
    cluster_name: str
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            find_nats_server(self.binary),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-n",
            self.name,
            "-js",
            "-sd",
            str(self.store_dir),
            "--cluster_name",
            self.cluster_name,
            "--cluster",
            f"nats://127.0.0.1:{self.cluster_port}",
            "--routes",
            ",".join(self.routes),
        ]

    def launch(self) -> None:
        """Start the process (does not wait for it to listen)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.spawn(self.command())


@dataclass
class LocalNatsCluster:
    """``size`` nats-servers with JetStream, every node routed to every other one."""

    store_dir: Path
    size: int = 3
    cluster_name: str = "pulse-bi"
    binary: str | None = None
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """Client URLs of every node (give them all to the clients: docs/SCALING.md)."""
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        """The client URLs, comma-separated (the form NATS_URL takes)."""
        return ",".join(self.urls)

    def start(self, timeout: float = 20.0) -> LocalNatsCluster:
        """Start every node and wait until each one listens."""
        if not self.nodes:
            ports = [(free_port(), free_port()) for _ in range(self.size)]
            for index, (port, cluster_port) in enumerate(ports):
                routes = [f"nats://127.0.0.1:{c}" for i, (_, c) in enumerate(ports) if i != index]
                self.nodes.append(
                    ClusterNode(
                        name=f"n{index + 1}",
                        store_dir=self.store_dir / f"n{index + 1}",
                        port=port,
                        cluster_port=cluster_port,
                        routes=routes,
                        cluster_name=self.cluster_name,
                        binary=self.binary,
                    )
                )
        for node in self.nodes:
            if not node.running:
                node.launch()
        try:
            for node in self.nodes:
                node.wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def node(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalNatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ConfiguredServer(NatsProcess):
    """A nats-server started from a configuration file it is given as text."""

    name: str
    store_dir: Path
    config: str
    port: int
    binary: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> ConfiguredServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        path = self.store_dir / f"{self.name}.conf"
        path.write_text(self.config)
        self.spawn([find_nats_server(self.binary), "-c", str(path)])
        self.wait_listening(timeout)
        return self


def hub_server(
    store_dir: Path, leaf_port: int, domain: str = "hub", advertise: str | None = None
) -> ConfiguredServer:
    """The central server: JetStream in its own domain, accepting sites' leaf links.

    ``advertise``: the leaf address sites are told to reconnect to (a relay or balancer
    in front of the hub; sites otherwise learn and use the hub's own address).
    """
    port = free_port()
    advertised = f', advertise: "{advertise}"' if advertise else ""
    config = f"""
server_name: {domain}
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{store_dir / domain}", domain: {domain} }}
leafnodes {{ listen: 127.0.0.1:{leaf_port}{advertised} }}
"""
    return ConfiguredServer(domain, store_dir / domain, config, port)


def site_server(store_dir: Path, site: str, hub_leaf_url: str) -> ConfiguredServer:
    """A site's own server: JetStream in the site's domain, a leaf link to the hub.

    Event subjects do not cross the link (``deny_exports``/``deny_imports``): the hub
    gets a site's events only by sourcing its stream, once each (docs/SCALING.md).
    """
    port = free_port()
    config = f"""
server_name: {site}
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{store_dir / site}", domain: {site} }}
leafnodes {{
  reconnect: 1
  remotes: [ {{
    url: "{hub_leaf_url}"
    deny_exports: ["pulse.events.>"]
    deny_imports: ["pulse.events.>"]
  }} ]
}}
"""
    return ConfiguredServer(site, store_dir / site, config, port)
