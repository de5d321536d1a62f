"""A byte forwarder between a TCP port and a Unix socket: the bridge that lets an agent
inside a network namespace reach the database and broker on the root namespace's
loopback (a Unix socket path is shared across network namespaces, a loopback is not).

``python -m tests.scale.forward tcp2unix PORT PATH`` listens on 127.0.0.1:PORT (in the
namespace it runs in) and connects to PATH; ``unix2tcp PATH PORT`` the other way round.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _serve(mode: str, a: str, b: str) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if mode == "tcp2unix":
                up_r, up_w = await asyncio.open_unix_connection(b)
            else:
                up_r, up_w = await asyncio.open_connection("127.0.0.1", int(b))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))

    if mode == "tcp2unix":
        server = await asyncio.start_server(handle, "127.0.0.1", int(a), backlog=256)
    else:
        server = await asyncio.start_unix_server(handle, a, backlog=256)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(*sys.argv[1:4]))
