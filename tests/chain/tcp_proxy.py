"""A loopback TCP proxy that can *black-hole* traffic: while ``hold`` is set, bytes sent through
it are swallowed (never forwarded) and the connection is closed when the hold ends. A request
caught in it hangs exactly like one to a backend that stopped answering mid-call."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class BlackholeProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.hold = threading.Event()
        self.swallowed = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self.address = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=30)
                upstream.settimeout(None)  # an idle keep-alive connection must not be cut by the proxy
            except OSError:
                client.close()
                continue
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, client, upstream), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if self.hold.is_set():
                    self.swallowed += len(data)
                    while self.hold.is_set() and not self._closed:
                        time.sleep(0.01)
                    break  # drop what was held: it must never reach the backend late
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._closed = True
        self.hold.clear()
        self._listener.close()
