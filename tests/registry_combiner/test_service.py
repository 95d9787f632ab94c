"""``registry_combiner.service``: the HTTP API, on a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from registry_combiner.cli import app
from registry_combiner.errors import RegistryInputError
from registry_combiner.query import entity_view
from registry_combiner.report import EntityReport
from registry_combiner.service import (
    _FastReports,
    create_app,
    listening_socket,
    serve_in_thread,
)
from registry_combiner.store_sqlite import SqliteStore
from registry_combiner.tokens import add_user, remove_user
from sample_protocol.signing import verify_bytes
from tests.agency_runtime.round_fixtures import REGISTER
from tests.registry_combiner.conftest import Register
from tests.registry_combiner.serve_fixtures import copy_register, unknown_identifier


@dataclass
class Service:
    url: str
    db: Path
    tokens: Path
    token: dict[str, str]  # user -> token
    bound: str  # the entity the user "ent" speaks for
    client: httpx.Client

    def get(self, path: str, user: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {} if user is None else {"Authorization": f"Bearer {self.token[user]}"}
        return self.client.get(path, headers=headers, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def service(combined: Register, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("service")
    db = copy_register(combined, root / "state")
    tokens = root / "tokens.json"
    bound = combined.store.entity_bins()["bin"][20].as_py()
    token = {
        "alice": add_user(tokens, "alice")[0],
        "bob": add_user(tokens, "bob", access="basic")[0],
        "ent": add_user(tokens, "ent", access="basic", entity=bound)[0],
    }
    app = create_app(root / "state", tokens, combined.world.register_key)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Service(url, db, tokens, token, bound, client)


def _bin(combined: Register, i: int) -> str:
    return combined.store.entity_bins()["bin"][i].as_py()


def test_tokens_are_required(service: Service, combined: Register):
    bin_ = _bin(combined, 1)
    for path in (f"/entities/{bin_}", f"/entities/{bin_}/basic", f"/entities/{bin_}/report",
                 "/search?q=Temir", "/checks/mine", f"/entities/{bin_}/checks"):  # fmt: skip
        for headers in ({}, {"Authorization": "Bearer kzr_wrong"}, {"Authorization": "Basic x"},
                        {"Authorization": f"Bearer {service.token['alice']}x"}):  # fmt: skip
            r = service.client.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["error"] == "http_401"
    assert service.client.get("/health").json() == {"status": "ok"}


def test_full_view_and_basic_access(service: Service, combined: Register):
    bin_ = _bin(combined, 2)
    r = service.get(f"/entities/{bin_}", "alice")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    view = r.json()
    expected = entity_view(combined.store, bin_)
    assert [ix["value"] for ix in view["indexes"]] == [ix["value"] for ix in expected["indexes"]]
    assert view["run"]["release_id"] == combined.world.release_id
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"]
    for path in (f"/entities/{bin_}", f"/entities/{bin_}/report"):
        denied = service.get(path, "bob")
        assert denied.status_code == 403 and "basic access" in denied.json()["detail"]


def test_basic_view(service: Service, combined: Register):
    permits = pq.read_table(combined.world.feeds["PERMITS"])
    bin_ = permits["bin"][0].as_py()
    r = service.get(f"/entities/{bin_}/basic", "bob")
    assert r.status_code == 200, r.text
    basic = r.json()
    assert basic["registration"]["bin"] == bin_
    assert basic["permits"]["permits_active"] == permits["permits_active"][0].as_py()
    assert isinstance(basic["lists"], list) and basic["taxes"] is None
    assert "tax secret" in basic["missing"]["taxes"]
    c = basic["conscientiousness"]
    full = entity_view(combined.store, bin_)["indexes"][0]
    assert full["index"] == "conscientiousness" and c["value"] == full["value"]
    assert c["release_id"] == combined.world.release_id and "probability" in c


def test_invalid_and_unknown_identifiers(service: Service, combined: Register):
    good = _bin(combined, 3)
    bad = good[:11] + str((int(good[11]) + 1) % 10)
    for path in (f"/entities/{bad}", f"/entities/{bad}/basic", f"/entities/{bad}/report"):
        r = service.get(path, "alice")
        assert r.status_code == 422 and r.json()["error"] == "identifier_checksum", r.text
        assert "expected check digit" in r.json()["detail"] and bad not in r.json()["detail"]
    r = service.get("/entities/12345/basic", "alice")
    assert r.status_code == 422 and r.json()["error"] == "identifier_length"
    r = service.get("/search?q=12345678901x&by=id", "alice")
    assert r.status_code == 422 and r.json()["error"] == "identifier_not_digits"
    unknown = unknown_identifier(combined)
    r = service.get(f"/entities/{unknown}/basic", "alice")
    assert r.status_code == 404 and r.json()["error"] == "unknown_entity"
    assert service.get("/entities", "alice").status_code == 404
    assert service.get(f"/entities/{good}/nothing", "alice").status_code == 404
    r = service.get(f"/entities/{good}?history=0", "alice")
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"


def test_a_signed_report_over_http(service: Service, combined: Register):
    bin_ = _bin(combined, 4)
    pub = combined.world.world.public(REGISTER)
    r = service.get(f"/entities/{bin_}/report", "alice")
    assert r.status_code == 200, r.text
    sig = base64.b64decode(r.headers["x-signature"]).decode()
    assert verify_bytes(r.content, sig, pub).signer == REGISTER
    report = r.json()
    assert report["user"] == "alice" and report["entity"]["bin"] == bin_
    assert r.headers["x-report-id"] == report["report_id"]
    page = service.get(f"/entities/{bin_}/report?format=html", "alice")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html_sig = base64.b64decode(page.headers["x-signature"]).decode()
    assert verify_bytes(page.content, html_sig, pub).signer == REGISTER
    assert page.headers["x-report-sha256"].encode() in page.content
    tampered = r.content.replace(b'"alice"', b'"mallo"')
    with pytest.raises(Exception) as err:
        verify_bytes(tampered, sig, pub)
    assert getattr(err.value, "code", "") == "signature_mismatch"
    assert service.get(f"/entities/{bin_}/report?format=pdf", "alice").status_code == 422


def test_the_fast_report_path_answers_as_the_route_does(service: Service, combined: Register):
    """``GET /entities/{id}/report`` is answered on the event loop; a request it does not
    take (another query) goes to the route: same headers, same kind of bytes, both logged."""
    bin_ = _bin(combined, 6)
    pub = combined.world.world.public(REGISTER)
    fast = service.get(f"/entities/{bin_}/report", "alice")
    routed = service.get(f"/entities/{bin_}/report?format=json&via=route", "alice")
    for r in (fast, routed):
        assert r.status_code == 200, r.text
        sig = base64.b64decode(r.headers["x-signature"]).decode()
        assert verify_bytes(r.content, sig, pub).signer == REGISTER
        assert EntityReport.from_json(r.content).canonical_bytes() == r.content
        assert r.headers["content-length"] == str(len(r.content))
    assert sorted(fast.headers.keys()) == sorted(routed.headers.keys())
    for name in ("content-type", "cache-control", "x-content-type-options", "referrer-policy"):
        assert fast.headers[name] == routed.headers[name], name
    a, b = json.loads(fast.content), json.loads(routed.content)
    for field in ("report_id", "issued_at"):
        a.pop(field), b.pop(field)
    assert a == b
    mine = service.get("/checks/mine?limit=2", "alice").json()["checks"]
    assert [c["report_sha256"] for c in mine] == [
        routed.headers["x-report-sha256"],
        fast.headers["x-report-sha256"],
    ]
    with SqliteStore(service.db, readonly=True) as store:
        logged = [c.report_sha256 for c in store.checks_by_user("alice", limit=1000)]
        assert logged.count(fast.headers["x-report-sha256"]) == 1  # logged once


def test_which_requests_the_fast_report_path_takes(combined: Register, tmp_path: Path):
    copy_register(combined, tmp_path / "state")
    tokens = tmp_path / "tokens.json"
    full, _ = add_user(tokens, "alice")
    basic, _ = add_user(tokens, "bob", access="basic")
    app = create_app(tmp_path / "state", tokens, combined.world.register_key)
    fast = _FastReports(app, app.state.register)
    good = _bin(combined, 8)

    def scope(path: str, token: str | None = full, query: bytes = b"", method: str = "GET"):
        headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
        return {"type": "http", "method": method, "path": path, "root_path": "",
                "query_string": query, "headers": headers}  # fmt: skip

    signed = fast._sign(scope(f"/entities/{good}/report"))
    assert signed is not None and signed.user == "alice"
    issued = asyncio.run(fast._log(signed))
    assert issued is not None and issued.report.user == "alice" and issued.check_id > 0
    again = fast._sign(scope(f"/entities/{good}/report", query=b"format=json"))
    assert again is not None and asyncio.run(fast._log(again)) is not None
    bad_digit = good[:11] + str((int(good[11]) + 1) % 10)
    for request in (
        scope(f"/entities/{good}/report", query=b"format=html"),
        scope(f"/entities/{good}/report", query=b"format=json&x=1"),
        scope(f"/entities/{good}/report", token=basic),
        scope(f"/entities/{good}/report", token=full + "x"),
        scope(f"/entities/{good}/report", token=None),
        scope(f"/entities/{bad_digit}/report"),
        scope(f"/entities/{unknown_identifier(combined)}/report"),
        scope(f"/entities/{good}/report/"),
        scope(f"/entities/{good}"),
        scope(f"/entities/ {good}/report"),
    ):
        assert fast._sign(request) is None, request
    with SqliteStore(tmp_path / "state" / "register.sqlite", readonly=True) as store:
        assert len(store.checks_by_user("alice")) == 2 and store.checks_by_user("bob") == []


def test_concurrent_reports_are_each_logged_once(service: Service, combined: Register):
    """Look-ups answered together on the event loop share one write of their checks:
    every answer is signed, and its check is in the log exactly once, with its own id."""
    pub = combined.world.world.public(REGISTER)
    bins = [_bin(combined, i) for i in range(30, 46)]
    headers = {"Authorization": f"Bearer {service.token['alice']}"}

    def look_up(bin_: str) -> httpx.Response:
        with httpx.Client(base_url=service.url, timeout=30) as client:
            return client.get(f"/entities/{bin_}/report", headers=headers)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(look_up, bins * 3))
    digests = []
    for r in answers:
        assert r.status_code == 200, r.text
        assert verify_bytes(r.content, base64.b64decode(r.headers["x-signature"]).decode(), pub)
        digests.append(r.headers["x-report-sha256"])
    assert len(set(digests)) == len(answers)  # each look-up its own report
    with SqliteStore(service.db, readonly=True) as store:
        logged = store.checks_by_user("alice", limit=100_000)
    mine = [c for c in logged if c.report_sha256 in set(digests)]
    assert sorted(c.report_sha256 for c in mine) == sorted(digests)
    assert len({c.check_id for c in mine}) == len(answers)


def test_a_busy_check_log_sends_reports_to_the_route(combined: Register, tmp_path: Path):
    """When another process holds the database's write lock, the event loop's write of
    the checks gives up (none of them is logged) and the route answers each look-up from
    a worker thread, waiting for the lock: every report still goes out logged once."""
    db = copy_register(combined, tmp_path / "state")
    tokens = tmp_path / "tokens.json"
    token, _ = add_user(tokens, "alice")
    app = create_app(tmp_path / "state", tokens, combined.world.register_key)
    bin_ = _bin(combined, 9)
    holder = sqlite3.connect(db, isolation_level=None)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get(f"/entities/{bin_}/report", headers=headers).status_code == 200
        holder.execute("BEGIN IMMEDIATE")  # another writer, for a while
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.get, f"/entities/{bin_}/report", headers=headers)
            time.sleep(0.5)
            assert not pending.done()  # the route waits for the lock
            holder.execute("COMMIT")
            answer = pending.result(timeout=60)
    holder.close()
    assert answer.status_code == 200, answer.text
    with SqliteStore(db, readonly=True) as store:
        logged = [c.report_sha256 for c in store.checks_by_user("alice")]
    assert logged.count(answer.headers["x-report-sha256"]) == 1
    assert len(logged) == 2


def test_the_check_log(service: Service, combined: Register):
    target = service.bound
    before = dt.datetime.now(dt.UTC)
    assert service.get(f"/entities/{target}/basic", "bob").status_code == 200
    assert service.get(f"/entities/{target}", "alice").status_code == 200
    report = service.get(f"/entities/{target}/report", "alice")
    mine = service.get("/checks/mine?limit=100", "alice").json()
    assert mine["user"] == "alice"
    latest = mine["checks"][0]
    assert latest["bin"] == target and latest["view"] == "report"
    assert latest["report_sha256"] == report.headers["x-report-sha256"]
    assert dt.datetime.fromisoformat(latest["checked_at"]) >= before.replace(microsecond=0)
    assert {c["view"] for c in mine["checks"] if c["bin"] == target} >= {"full", "report"}
    # the entity sees who checked it and when; nobody else may
    seen = service.get(f"/entities/{target}/checks", "ent")
    assert seen.status_code == 200, seen.text
    who = {(c["user"], c["view"]) for c in seen.json()["checks"]}
    assert {("alice", "full"), ("alice", "report"), ("bob", "basic")} <= who
    assert all(c["checked_at"] for c in seen.json()["checks"])
    assert service.get(f"/entities/{target}/checks", "alice").status_code == 403
    other = _bin(combined, 21)
    assert service.get(f"/entities/{other}/checks", "ent").status_code == 403
    # and the database holds the same
    with SqliteStore(service.db, readonly=True) as store:
        entity = store.entity(target)
        assert entity is not None
        assert {c.user_name for c in store.checks_of_entity(entity.id)} >= {"alice", "bob"}


def test_search_over_http(service: Service, combined: Register):
    row = pq.read_table(combined.world.feeds["LEGAL_ENTITY"]).slice(0, 1).to_pylist()[0]
    r = service.get("/search", "bob", params={"q": row["head_surname"], "by": "person",
                                               "limit": 100})  # fmt: skip
    assert r.status_code == 200 and row["bin"] in [h["bin"] for h in r.json()["results"]]
    r = service.get("/search", "bob", params={"q": row["bin"]})
    assert [h["bin"] for h in r.json()["results"]] == [row["bin"]]
    for params in ({"q": ""}, {"q": "x" * 201}, {"q": "a", "by": "x"}, {"q": "a", "limit": 0},
                   {"q": "..."}, {}):  # fmt: skip
        assert service.get("/search", "bob", params=params).status_code == 422, params


def test_tokens_take_effect_without_a_restart(service: Service, combined: Register):
    token, _ = add_user(service.tokens, "carol", access="basic")
    r = service.client.get("/checks/mine", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json() == {"user": "carol", "checks": []}
    remove_user(service.tokens, "carol")
    r = service.client.get("/checks/mine", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_docs_and_bodies(service: Service):
    assert service.client.get("/docs").status_code == 200
    spec = service.client.get("/openapi.json").json()
    assert {"/entities/{identifier}", "/search", "/checks/mine"} <= set(spec["paths"])
    assert "token" in spec["components"]["securitySchemes"]
    big = b"x" * (1 << 20)
    r = service.client.post("/search", content=big, headers={"Authorization": "Bearer x"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    r = service.client.request("GET", "/health", content=iter([b"a", b"b"]))
    assert r.status_code == 411
    assert service.client.put("/checks/mine").status_code == 405


def test_a_missing_database_or_an_open_token_file(combined: Register, tmp_path: Path):
    tokens = tmp_path / "tokens.json"
    token, _ = add_user(tokens, "alice")
    with pytest.raises(RegistryInputError) as err:
        create_app(tmp_path / "none", tokens, combined.world.register_key)
    assert err.value.code == "store_missing"
    copy_register(combined, tmp_path / "state")
    os.chmod(tokens, 0o644)  # readable by others: the file is refused, nobody gets in
    app = create_app(tmp_path / "state", tokens, combined.world.register_key)
    with serve_in_thread(app) as url:
        r = httpx.get(f"{url}/checks/mine", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        os.chmod(tokens, 0o600)
        r = httpx.get(f"{url}/checks/mine", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200


# -- reliability: 1,000 malformed or hostile requests ---------------------------------------

_SQLISH = [
    "' OR '1'='1", "1; DROP TABLE entities; --", '" OR 1=1 --', "%00", "../../etc/passwd",
    "1 UNION SELECT * FROM check_log", "*", "NEAR(x y)", "{bin}", "${jndi:x}", "\u202e12",
]  # fmt: skip
_ROUTES = ["/entities/{}", "/entities/{}/basic", "/entities/{}/report", "/entities/{}/checks"]


def _seg(text: str) -> str:
    return urllib.parse.quote(text, safe="")


@st.composite
def _hostile(draw: st.DrawFn, token_ok: str, good: str) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of a request that must get a 4xx."""
    bad_id = draw(
        st.one_of(
            st.text("0123456789", max_size=30).filter(lambda s: len(s) != 12),
            st.just(good[:11] + str((int(good[11]) + 1) % 10)),
            st.sampled_from(_SQLISH),
            st.text(min_size=1, max_size=40),
        )
    )
    token = draw(st.sampled_from(["none", "wrong", "good"]))
    kind = draw(st.sampled_from(["id", "search", "path", "body", "method", "limit"]))
    method, body = "GET", b""
    if kind == "id":
        path = draw(st.sampled_from(_ROUTES)).format(_seg(bad_id) or "%20")
    elif kind == "search":
        params = draw(
            st.sampled_from([
                {"q": "x" * 201}, {"q": ""}, {"by": "sql"}, {"q": "a", "by": bad_id[:20] + "!"},
                {"q": "a", "limit": "-1"}, {"q": "a", "limit": "1e9"}, {"q": "Temir", "limit": "x"},
            ])
        )  # fmt: skip
        path = "/search?" + urllib.parse.urlencode(params)
    elif kind == "path":
        segs = draw(st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=6))
        path = "/x" + "".join("/" + _seg(s) for s in segs)
        path = draw(st.sampled_from([path, "/%2e%2e/%2e%2e/etc/passwd", "/" + "a" * 5000]))
    elif kind == "limit":
        path = (
            f"/checks/mine?limit={_seg(bad_id)}" if not bad_id.isdigit() else "/checks/mine?limit=0"
        )
    elif kind == "body":
        method = draw(st.sampled_from(["POST", "PUT", "GET", "PATCH"]))
        path = draw(st.sampled_from(["/search", f"/entities/{good}", "/checks/mine"]))
        body = b"{" * draw(st.integers(64 * 1024 + 1, 2 << 20))
        token = "wrong" if method == "GET" else token
    else:
        method = draw(st.sampled_from(["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
        path = draw(st.sampled_from(["/search", f"/entities/{good}", "/checks/mine", "/health"]))
    headers = {}
    if token == "wrong":
        wrong = draw(
            st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=300)
        )
        headers["Authorization"] = f"Bearer {wrong}"
    elif token == "good":
        headers["Authorization"] = f"Bearer {token_ok}"
    return method, path, headers, body


def _raw(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        try:
            return sock.recv(200)
        except (ConnectionResetError, TimeoutError):
            return b""


def test_hostile_requests_get_4xx_and_the_server_stays_up(service: Service, combined: Register):
    good = _bin(combined, 5)
    statuses: list[int] = []

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_hostile(service.token["alice"], good))
    def send(request: tuple[str, str, dict[str, str], bytes]) -> None:
        method, path, headers, body = request
        r = service.client.request(method, path, headers=headers, content=body or None)
        statuses.append(r.status_code)
        assert 400 <= r.status_code < 500, (method, path[:200], r.status_code, r.text[:300])

    send()
    huge_header = b"GET /health HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"
    bad_header = b"GET /health HTTP/1.1\r\nHost: x\r\nBad header\r\n\r\n"
    for garbage in (
        b"\x00\xff garbage\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        bad_header,
        huge_header,
    ):
        answer = _raw(service.url, garbage)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
    assert len(statuses) >= 1000 and {401, 404, 405, 413, 422} <= set(statuses)
    assert service.client.get("/health").status_code == 200
    r = service.get(f"/entities/{good}/basic", "alice")
    assert r.status_code == 200 and r.json()["registration"]["bin"] == good
    assert json.loads(service.get(f"/entities/{good}", "alice").content)["entity"]["bin"] == good


def test_serve_on_the_command_line_with_worker_processes(combined: Register, tmp_path: Path):
    """``registry-combiner serve --workers 2``: the real CLI, its own socket, two processes."""
    copy_register(combined, tmp_path / "state")
    tokens = tmp_path / "tokens.json"
    token, _ = add_user(tokens, "alice", access="basic")
    probe = listening_socket("127.0.0.1", 0)
    assert probe.proto == socket.IPPROTO_TCP  # so asyncio sets TCP_NODELAY on connections
    port = probe.getsockname()[1]
    probe.close()
    command = [
        sys.executable, "-c", "from registry_combiner.cli import main; main()", "serve",
        "--state", str(tmp_path / "state"), "--key", str(combined.world.register_key),
        "--tokens", str(tokens), "--port", str(port), "--workers", "2", "--no-access-log",
    ]  # fmt: skip
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        server = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        bin_ = _bin(combined, 30)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(4):  # keep-alive: every answer on one connection
                r = c.get(f"/entities/{bin_}/basic")
                assert r.status_code == 200 and r.json()["registration"]["bin"] == bin_
            assert c.get("/checks/mine").json()["checks"][0]["view"] == "basic"
            assert c.get("/entities/123456789012/basic").status_code == 422
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0, log.read_text()
    assert "--workers" in CliRunner().invoke(app, ["serve", "--help"]).stdout
