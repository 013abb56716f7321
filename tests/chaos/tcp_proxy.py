"""A TCP proxy in a thread of its own that can be cut: every open connection reset, new ones refused, for a while."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class CuttableProxy:
    """Forwards 127.0.0.1:`port` to `upstream`; `cut(seconds)` drops every connection through it and refuses new
    ones (accepted, then reset at once: what a client sees of a database behind a broken network) until the
    outage ends. Thread-based, so it keeps working whatever event loop the client code runs."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._down_until = 0.0
        self._stopped = False
        self.refused = 0  # connections refused during outages
        self.cuts = 0
        self._thread = threading.Thread(target=self._accept, name="cuttable-proxy", daemon=True)
        self._thread.start()

    def url(self, database_url: str) -> str:
        """`database_url` (postgresql://user@host:port/db) pointed at the proxy."""
        head, _, tail = database_url.partition("://")
        creds, _, rest = tail.rpartition("@")
        path = rest.split("/", 1)[1]
        return f"{head}://{creds + '@' if creds else ''}127.0.0.1:{self.port}/{path}"

    @property
    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def cut(self, seconds: float) -> None:
        """From now on for `seconds`: open connections reset, new ones refused."""
        with self._lock:
            self._down_until = time.monotonic() + seconds
            self.cuts += 1
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)

    def close(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self._server.close()
        self.cut(0)

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with self._lock:
                if (src, dst) in self._pairs:
                    self._pairs.remove((src, dst))
                if (dst, src) in self._pairs:
                    self._pairs.remove((dst, src))


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer sees a connection reset, not a clean end."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RD)  # wakes the pipe thread blocked in recv on it
    with contextlib.suppress(OSError):
        s.close()
