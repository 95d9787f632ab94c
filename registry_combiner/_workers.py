"""``serve --workers N``: N uvicorn processes, each listening on its own socket of one port.

uvicorn's supervisor hands every worker the same listening socket, and the worker that
wakes first accepts every connection then waiting: with 32 keep-alive clients that
connected together, one worker did 6.07 s of work and the other 0.29 s (measured on the
bench register), so a second core did nothing for them. Here each worker gets its own
socket, all bound to the port with ``SO_REUSEPORT``: the kernel spreads new connections
over the sockets (by a hash of the client's address and port).

The supervisor (:func:`run_workers`) starts the workers, starts again one that dies (on
the same socket, so its share of connections is served again), stops when a worker fails
to start (exit code 3, uvicorn's startup failure: the app or the state is broken and would
fail the same way again), and on SIGINT or SIGTERM stops the workers and returns 0.
Where the platform has no ``SO_REUSEPORT``, :func:`reuse_port_supported` is false and the
CLI uses uvicorn's supervisor.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
from typing import Any

from uvicorn.config import STARTUP_FAILURE

__all__ = ["reuse_port_sockets", "reuse_port_supported", "run_workers"]

_STOP_SECONDS = 30.0
_log = logging.getLogger("registry_combiner.service")


def reuse_port_supported() -> bool:
    return hasattr(socket, "SO_REUSEPORT")


def reuse_port_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` TCP sockets bound to ``host:port`` in one ``SO_REUSEPORT`` group (the
    first picks the port when ``port`` is 0). ``IPPROTO_TCP`` as in
    :func:`~registry_combiner.service.listening_socket`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    out: list[socket.socket] = []
    try:
        for _ in range(max(1, count)):
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out


def _worker(factory: str, options: dict[str, Any], sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(factory, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run_workers(factory: str, options: dict[str, Any], sockets: list[socket.socket]) -> int:
    """Serve ``factory`` (an import string, ``factory=True``) with one worker process per
    socket until SIGINT or SIGTERM (0) or until a worker fails to start (1)."""
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()
    failed = False

    def start(i: int) -> Any:
        process = ctx.Process(
            target=_worker, args=(factory, options, sockets[i]), name=f"worker-{i}"
        )
        process.start()
        return process

    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    processes = [start(i) for i in range(len(sockets))]
    try:
        while not stop.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    _log.error("worker %s failed to start: stopping", process.pid)
                    failed = True
                    stop.set()
                    break
                _log.warning("worker %s died (exit %s): starting another", process.pid,
                             process.exitcode)  # fmt: skip
                processes[i] = start(i)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(_STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0
