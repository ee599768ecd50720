"""Which sockets a set of processes listens on, and on which address (Linux /proc, no `ss` needed).

For each pid, the socket inodes among /proc/PID/fd; then /proc/net/{tcp,tcp6,udp,udp6} (this network
namespace) say which of those inodes is a TCP socket in LISTEN (state 0A) or a bound UDP socket, and its
local address. Only the given processes' sockets count, so other listeners on the machine do not.
Used by tests/test_listeners.py (issue 29, docs/security.md).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp, tcp6, udp, udp6
    address: str
    port: int
    pid: int

    @property
    def loopback(self) -> bool:
        """Reachable only from this machine (127.0.0.0/8, ::1, or an IPv4-mapped loopback)."""
        ip = ipaddress.ip_address(self.address)
        mapped = getattr(ip, "ipv4_mapped", None)
        return ip.is_loopback or bool(mapped and mapped.is_loopback)


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process `pid` holds open (empty when it is gone)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[len("socket:["):-1]))
    return out


def _address(hex_addr: str) -> str:
    """/proc/net's hex address: IPv4 as one little-endian word, IPv6 as four of them."""
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def listeners(pids: Iterable[int]) -> list[Listener]:
    """The TCP sockets in LISTEN and the bound UDP sockets that these processes hold open."""
    owner = {inode: pid for pid in pids for inode in socket_inodes(pid)}
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/net/{proto}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if inode not in owner or (proto.startswith("tcp") and state != "0A"):
                continue
            addr, port = local.split(":")
            out.append(Listener(proto, _address(addr), int(port, 16), owner[inode]))
    return out


def local_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback (from /proc/net/fib_trie)."""
    found: list[str] = []
    try:
        with open("/proc/net/fib_trie") as f:
            lines = f.read().splitlines()
    except OSError:
        return found
    for prev, line in zip(lines, lines[1:]):
        if "/32 host LOCAL" in line and "|--" in prev:
            addr = prev.split("|--")[1].strip()
            if not ipaddress.ip_address(addr).is_loopback and addr not in found:
                found.append(addr)
    return found
