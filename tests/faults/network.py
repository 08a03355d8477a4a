"""Hosts for a test, made of Linux network namespaces: each has its own interface, address and
hostname, all joined by a bridge on a private /24. This process takes the subnet's first
address on the bridge, as a client on the same network would."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

from tests.processes import Host


def ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *args] if netns is None else ["ip", "netns", "exec", netns, "ip", *args]
    subprocess.run(argv, check=True, capture_output=True)


def why_not() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        return "the ip (iproute2) and unshare (util-linux) commands are not installed"
    return None


class Network:
    def __init__(self) -> None:
        self.tag = f"{random.randrange(16**4):04x}"
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
        self.bridge = f"ldr{self.tag}"
        self.hosts: dict[str, Host] = {}
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> Host:
        """A new host on the network, with the next address."""
        netns = f"ldr-{self.tag}-{name}"
        address = f"{self.subnet}.{len(self.hosts) + 2}"
        outside = f"v{self.tag}{len(self.hosts)}"
        ip("netns", "add", netns)
        ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("link", "set", outside, "master", self.bridge)
        ip("link", "set", outside, "up")
        ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        ip("link", "set", "eth0", "up", netns=netns)
        ip("link", "set", "lo", "up", netns=netns)
        self.hosts[name] = host = Host(address, netns, name)
        return host

    def cut(self, name: str) -> None:
        """Pull the host's cable: its processes live on, but reach nobody."""
        ip("link", "set", "eth0", "down", netns=self.hosts[name].netns)

    def remove(self) -> None:
        for host in self.hosts.values():
            subprocess.run(["ip", "netns", "del", str(host.netns)], check=False)
        subprocess.run(["ip", "link", "del", self.bridge], check=False)
