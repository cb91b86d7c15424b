"""A TCP proxy in front of a store that can go silent and come back: what a hung Redis looks like to a client.

Forwarding, it relays bytes both ways; silent, it keeps every connection open (and accepts new ones) but passes
nothing in either direction, so a client's reads wait until its own timeout. Used by the serving load benchmark
and by the tests of serve's recovery.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class SwitchableProxy:
    """Listen on a free loopback port and relay to ``(host, port)`` while :attr:`silent` is False."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.silent = False
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=256)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="proxy accept")]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                thread = threading.Thread(target=self._relay, args=(source, sink), daemon=True, name="proxy relay")
                thread.start()

    def _relay(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.1)
        while not self._stop.is_set():
            try:
                data = source.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            if not self.silent:  # silent: the bytes are swallowed, the peer waits
                try:
                    sink.sendall(data)
                except OSError:
                    break
        for end in (source, sink):
            with suppress(OSError):
                end.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for s in self._sockets:
            with suppress(OSError):
                s.close()


@contextmanager
def switchable_proxy(host: str, port: int) -> Iterator[SwitchableProxy]:
    proxy = SwitchableProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
