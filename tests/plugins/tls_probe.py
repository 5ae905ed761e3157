"""Reports whether ssl was loaded before this plugin was imported, whether asyncio has
TLS, and what a TLS handshake through asyncio does against a peer that answers
garbage (over a socketpair: no network needed)."""

import asyncio
import socket
import sys

SSL_LOADED_AT_IMPORT = "ssl" in sys.modules


class TlsProbePlugin:
    name = "tls_probe"

    async def process(self, input_data):
        import ssl  # importable in every worker

        info = {
            "ssl_loaded_at_import": SSL_LOADED_AT_IMPORT,
            "asyncio_has_ssl": sys.modules["asyncio.sslproto"].ssl is not None,
            "openssl": ssl.OPENSSL_VERSION,
        }
        ours, theirs = socket.socketpair()
        theirs.sendall(b"this is not TLS\r\n" * 8)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    asyncio.Protocol,
                    sock=ours,
                    ssl=ssl.create_default_context(),
                    server_hostname="peer",
                ),
                10,
            )
            info["handshake"] = "completed"
        except ssl.SSLError as exc:
            info["handshake"] = f"SSLError: {exc.reason}"
        except RuntimeError as exc:
            info["handshake"] = f"RuntimeError: {exc}"
        finally:
            ours.close()
            theirs.close()
        return info
