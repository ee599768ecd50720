"""Where the engine's own sockets listen (docs/security.md)."""
from __future__ import annotations

from typing import Any

GLOO_IFNAME_VAR = "GLOO_SOCKET_IFNAME"


def keep_engine_sockets_local(env: Any, *, ray: bool = False) -> None:
    """Put the engine's process-group sockets on the loopback interface (docs/security.md).

    vLLM's workers open a torch gloo group even alone, and gloo listens (a dozen TCP ports, no
    authentication) on the address the machine's hostname resolves to, which on many machines is its
    network address. GLOO_SOCKET_IFNAME names the interface instead: set here to the loopback one in
    `env` (os.environ, or a child's environment), unless the caller set it, or the engine runs on Ray
    (its workers may be on other machines), or the machine has no interface called "lo"."""
    import socket

    if ray or env.get(GLOO_IFNAME_VAR):
        return
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env[GLOO_IFNAME_VAR] = "lo"
