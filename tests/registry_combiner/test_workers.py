"""``registry_combiner._workers``: ``serve --workers N`` with a socket per worker."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from registry_combiner._workers import reuse_port_sockets, run_workers
from registry_combiner.cli import app
from registry_combiner.tokens import add_user
from tests.registry_combiner.conftest import Register
from tests.registry_combiner.serve_fixtures import copy_register

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="Linux feature")


def test_the_sockets_share_a_port_and_the_kernel_spreads_connections_over_them():
    socks = reuse_port_sockets("127.0.0.1", 0, 2)
    clients = []
    try:
        port = socks[0].getsockname()[1]
        assert port and socks[1].getsockname()[1] == port
        for s in socks:
            s.listen(64)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        accepted = [0, 0]
        deadline = time.monotonic() + 5
        while sum(accepted) < 40 and time.monotonic() < deadline:
            ready, _, _ = select.select(socks, [], [], 0.5)
            for s in ready:
                s.accept()[0].close()
                accepted[socks.index(s)] += 1
        assert sum(accepted) == 40 and min(accepted) > 0, accepted  # 2**-39 to fail by chance
    finally:
        for c in clients + socks:
            c.close()


def test_a_port_in_use_is_a_clear_error(combined: Register, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(OSError):
            reuse_port_sockets("127.0.0.1", port, 2)
        copy_register(combined, tmp_path / "state")
        add_user(tmp_path / "tokens.json", "alice")
        result = CliRunner().invoke(app, [
            "serve", "--state", str(tmp_path / "state"), "--key", str(combined.world.register_key),
            "--tokens", str(tmp_path / "tokens.json"), "--port", str(port), "--workers", "2",
        ])  # fmt: skip
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_a_worker_that_cannot_start_stops_the_supervisor():
    socks = reuse_port_sockets("127.0.0.1", 0, 2)
    try:
        started = time.monotonic()
        code = run_workers("registry_combiner.no_such_module:app", {"log_level": "critical"}, socks)
        assert code == 1 and time.monotonic() - started < 60
        assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)
    finally:
        for s in socks:
            s.close()


def _workers(pid: int) -> set[int]:
    out = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.add(int(child))
    return out


def test_a_dead_worker_is_started_again_and_every_connection_is_served(
    combined: Register, tmp_path: Path
):
    copy_register(combined, tmp_path / "state")
    token, _ = add_user(tmp_path / "tokens.json", "alice")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        server = subprocess.Popen(
            [sys.executable, "-c", "from registry_combiner.cli import main; main()", "serve",
             "--state", str(tmp_path / "state"), "--key", str(combined.world.register_key),
             "--tokens", str(tmp_path / "tokens.json"), "--port", str(port), "--workers", "2",
             "--no-access-log"],
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy_everywhere() -> bool:
        # new connections land on either socket: every one must be answered
        try:
            return all(httpx.get(f"{url}/health", timeout=2).status_code == 200 for _ in range(16))
        except httpx.TransportError:
            return False

    def wait(condition, what: str) -> None:
        deadline = time.monotonic() + 60
        while not condition():
            assert server.poll() is None and time.monotonic() < deadline, (what, log.read_text())
            time.sleep(0.2)

    try:
        wait(lambda: len(_workers(server.pid)) == 2 and healthy_everywhere(), "start")
        first = _workers(server.pid)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait(lambda: len(_workers(server.pid) - first) == 1, "restart")
        wait(healthy_everywhere, "serving again")
        assert victim not in _workers(server.pid)
        r = httpx.get(f"{url}/checks/mine", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0, log.read_text()
    assert "died" in log.read_text()
