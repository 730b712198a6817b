"""A counting TCP relay on loopback: put it in front of a server and read how many bytes went each way.

    with CountingRelay(upstream_port) as relay:
        ...  # clients connect to relay.port instead of the server's
        relay.counts()  # {"to_server": n, "to_client": m, "connections": k}

What is counted is the TCP payload each way (HTTP request and response lines, headers and bodies,
as sent), not IP/TCP headers or retransmissions. The relay runs an asyncio loop in a daemon thread
of the calling process; ``reset()`` zeroes the counters between measured runs.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType

CHUNK = 256 * 1024


class CountingRelay:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._lock = threading.Lock()
        self._to_server = self._to_client = self._connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="counting-relay", daemon=True)

    def __enter__(self) -> CountingRelay:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "to_server": self._to_server,
                "to_client": self._to_client,
                "connections": self._connections,
            }

    def reset(self) -> None:
        with self._lock:
            self._to_server = self._to_client = self._connections = 0

    def _add(self, *, to_server: int = 0, to_client: int = 0, connections: int = 0) -> None:
        with self._lock:
            self._to_server += to_server
            self._to_client += to_client
            self._connections += connections

    async def _start(self) -> asyncio.base_events.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._add(connections=1)
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            self._pipe(client_r, server_w, "to_server"),
            self._pipe(server_r, client_w, "to_client"),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                self._add(**{direction: len(data)})
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()  # one side is done: so is the connection (the other pipe sees EOF)
