"""asyncio without ssl in every worker, and with it in those that may use the network.

asyncio imports ``ssl`` when it is imported (for its TLS transports), and ``ssl`` maps
OpenSSL: about 4 MB of resident pages in the zygote and in every worker forked from it,
although a worker without the network has no use for TLS. asyncio is written to work
without ``ssl`` (each of its modules imports it under ``try``); ``import_asyncio()``
imports it so, before the zygote (or a fresh worker) forks anything, and leaves ``ssl``
importable as usual for a plugin that imports it itself.

A worker whose sandbox allows the network gets asyncio's TLS back before its plugin is
imported (``give_asyncio_ssl``): ``ssl`` imported, and asyncio's modules given it.
"""

from __future__ import annotations

import importlib
import sys


def import_asyncio() -> None:
    """Import asyncio without ssl, unless either is imported already."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # makes `import ssl` fail
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def give_asyncio_ssl() -> bool:
    """Give asyncio its TLS support, if ``import_asyncio`` left it out; whether it did."""
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is None or getattr(sslproto, "ssl", None) is not None:
        return False
    import ssl

    for name, module in list(sys.modules.items()):
        if (
            name.startswith("asyncio.")
            and module is not None
            and "ssl" in vars(module)
            and vars(module)["ssl"] is None
        ):
            module.ssl = ssl  # type: ignore[attr-defined]
    # sslproto defines names from ssl as it is executed (SSLAgainErrors): run it again,
    # in the same module object, which the event loop looks its classes up in per call
    importlib.reload(sslproto)
    return True
