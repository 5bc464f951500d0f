"""Serve an ASGI app on loopback from a background thread (for emulators and receivers)."""

from __future__ import annotations

import socket
import threading
import time
from abc import ABC
from abc import abstractmethod
from typing import Any
from typing import Self

import uvicorn
from starlette.requests import Request

from backhaul.closing import ClosesOnExit


class StartStop(ClosesOnExit, ABC):
    """Something started and stopped around a ``with`` block: ``with x:`` starts ``x``,
    gives what :meth:`start` returned, and stops it on the way out."""

    @abstractmethod
    def start(self) -> Self:
        """Start; return once ready."""

    @abstractmethod
    def stop(self) -> None:
        """Stop; safe to call twice."""

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        return self.start()


class LoopbackServer(StartStop):
    """An ASGI app served by uvicorn on ``127.0.0.1`` and a free port.

    Example:
        >>> with LoopbackServer(app) as server:  # doctest: +SKIP
        ...     httpx.get(server.url + "/health")
    """

    def __init__(self, app: Any, *, name: str = "backhaul-server", port: int = 0) -> None:
        self.app = app
        self.name = name
        self.stopping = threading.Event()
        self._wanted_port = port
        self._port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` not since."""
        return self._thread is not None

    def start(self, timeout: float = 10.0) -> Self:
        """Serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the server is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._wanted_port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="none",
            http="h11",
            access_log=False,
            # The app sees the real peer: forwarded headers are the app's own business.
            proxy_headers=False,
            log_config=None,  # leave the host application's logging alone
            log_level=None,
        )
        server = uvicorn.Server(config)
        self._server = server
        self.stopping.clear()
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"{self.name}-{self._port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self.stopping.set()
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout)
        self._server = None
        self._thread = None

    def abort(self, request: Request) -> None:
        """Close the TCP connection that carried ``request`` without answering."""
        server = self._server
        client = request.scope.get("client")
        if server is None or client is None:
            return
        for conn in list(server.server_state.connections):
            if getattr(conn, "client", None) == tuple(client):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()
                return
