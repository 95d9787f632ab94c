"""The register's HTTP API (FastAPI on uvicorn): views, reports, search and the check log.

``create_app(store_path, tokens_path, register_key)`` builds the app; ``registry-combiner
serve`` runs it. Every route but ``/health`` and the OpenAPI pages (``/docs``,
``/openapi.json``) needs a registered user's bearer token (para 31; :mod:`.tokens`)::

    GET /entities/{id}/basic      the free basic view of para 37 (any user)
    GET /entities/{id}            the full view: four indexes, coverage, reasons, history
                                  (users with ``full`` access)
    GET /entities/{id}/report     a signed report of the check (``full``): the exact signed
                                  JSON bytes, or ``?format=html``; the minisign signature
                                  is in the ``X-Signature`` header (base64 of the .minisig)
    GET /search?q=&by=&limit=     para 32 search (any user; not a check)
    GET /checks/mine              the caller's own checks (para 36)
    GET /entities/{id}/checks     who checked this entity and when (para 36): only a
                                  user whose token is bound to that entity

Each view and report is written to the check log (user, time, view, run shown, report
SHA-256) **before** it is returned: if the log cannot be written, nothing is shown (503).

Errors are JSON ``{"error": code, "detail": message}``: 401 no or a wrong token, 403 not
allowed, 404 an unknown entity or path, 405 a wrong method, 411/413 a request body (none
is accepted; more than :data:`MAX_BODY_BYTES` is refused before it is read), 414/431 a
request target or header block beyond :data:`MAX_TARGET_BYTES` / :data:`MAX_HEADER_BYTES`,
422 an invalid identifier (with the reason: length, digits, check digit) or parameter,
503 the database busy. A malformed request never gets a 5xx.

The database is opened once per worker thread (SQLite connections are per thread); the
token file is re-read when it changes, so ``tokens add`` / ``tokens remove`` take effect
without a restart, and a token file that becomes unreadable locks everyone out (fail
closed).

Report look-ups are the hot path (issue 8: p99 under 20 ms with 32 clients). A plain
``GET /entities/{12 digits}/report`` with a full user's token is answered by a small ASGI
layer (:class:`_FastReports`) on the event loop, without FastAPI's routing, dependency
resolution and thread-pool hop; it gives the same answer as the route (same bytes, headers,
check log). Anything else, and any failure (a bad token, basic access, an invalid or
unknown identifier, ``?format=html``, a busy database), goes to the route, which answers
or refuses it as always. The checks of the look-ups answered in one turn of the event loop
are written in one transaction (:class:`_CheckBatch`), and each report goes out only once
that transaction is committed. Report bodies are cached per process
(:class:`.report.ReportCache`: keyed by the store's generation, never stale). The
write-ahead log is checkpointed by a background thread, so no request waits for a
checkpoint's disk flush. FastAPI's OpenTelemetry is off: spans would carry the
identifiers of checked entities out of the register.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sample_protocol.errors import IdentifierError, ProtocolError
from sample_protocol.keys import SecretKey, load_secret_key
from sample_protocol.serde import encode_value

from .basic_view import basic_view
from .errors import RegistryInputError, RegistryRefused, StoreError
from .query import entity_view, find_entity
from .report import IssuedReport, ReportCache, SignedReport, issue_report, sign_report
from .search import MAX_LIMIT, MAX_QUERY_CHARS, search, search_hit
from .store import DB_FILE, Store, open_store
from .tokens import Tokens, TokenUser, load_tokens

#: Where ``serve --workers N`` passes its options to each worker process (paths only).
ENV_PREFIX = "REGISTRY_COMBINER_SERVE_"

__all__ = [
    "ENV_PREFIX",
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_TARGET_BYTES",
    "app_from_env",
    "create_app",
    "listening_socket",
    "serve_in_thread",
]

#: Largest request body accepted (no route reads one).
MAX_BODY_BYTES = 64 * 1024
#: Longest request target (path and query) and largest header block accepted.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
_log = logging.getLogger("registry_combiner.service")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
]
_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'"
#: Report bodies kept per process (a few kB each).
REPORT_CACHE_ENTRIES = 4096
#: Pages the write-ahead log may hold before a commit checkpoints it itself: a backstop,
#: the server's checkpoint thread copies them every :data:`_CHECKPOINT_SECONDS`.
_SERVER_WAL_PAGES = 20_000
_CHECKPOINT_SECONDS = 0.5
#: How long a report look-up on the event loop waits for the check log's write lock; past
#: that (another process is writing), the route answers it from a worker thread.
_LOOP_WAIT_MS = 20
_LOOP_BACKOFF_SECONDS = 1.0
_REPORT_PATH = re.compile(r"/entities/([0-9]{12})/report")
_JSON_QUERIES = (b"", b"format=json")
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A register user's token (`registry-combiner tokens add USER`).",
)
Identifier = Annotated[
    str, PathParam(max_length=64, description="The entity's BIN or IIN (12 digits).")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


def _db_path(store_path: str | os.PathLike[str]) -> Path:
    path = Path(store_path)
    return path / DB_FILE if path.is_dir() or not path.suffix else path


class _Register:
    """What the routes share: the database path, a store per thread, tokens, the key, the
    report cache and the checkpoint thread."""

    def __init__(self, db: Path, tokens_path: Path, key: SecretKey, history: int) -> None:
        self.db = db
        self.tokens_path = tokens_path
        self.key = key
        self.history = history
        self.reports = ReportCache(REPORT_CACHE_ENTRIES)
        self._local = threading.local()
        self._lock = threading.Lock()
        #: Held while a check is written: the threads queue here, not in SQLite's busy loop.
        self.log_lock = threading.Lock()
        #: Until when (monotonic) the event loop leaves reports to the route: the database
        #: was busy (another process writing).
        self.loop_backoff_until = 0.0
        self._tokens = Tokens({})
        self._stamp: tuple[int, ...] | None = None
        self._stop_checkpoints = threading.Event()
        self._checkpoints: threading.Thread | None = None
        self.tokens()

    def store(self) -> Store:
        found: Store | None = getattr(self._local, "store", None)
        if found is None:
            found = self._local.store = open_store(self.db, wal_autocheckpoint=_SERVER_WAL_PAGES)
        return found

    def loop_store(self) -> Store:
        """The event loop's store: it waits at most :data:`_LOOP_WAIT_MS` for a write."""
        found: Store | None = getattr(self._local, "loop_store", None)
        if found is None:
            found = self._local.loop_store = open_store(
                self.db, busy_ms=_LOOP_WAIT_MS, wal_autocheckpoint=_SERVER_WAL_PAGES
            )
        return found

    def start_checkpoints(self) -> None:
        """Checkpoint the write-ahead log every :data:`_CHECKPOINT_SECONDS` in a thread."""
        if self._checkpoints is None:
            self._stop_checkpoints.clear()
            self._checkpoints = threading.Thread(
                target=self._checkpoint_loop, name="register-checkpoints", daemon=True
            )
            self._checkpoints.start()

    def stop_checkpoints(self) -> None:
        if self._checkpoints is not None:
            self._stop_checkpoints.set()
            self._checkpoints.join(timeout=30)
            self._checkpoints = None

    def _checkpoint_loop(self) -> None:
        try:
            store = open_store(self.db)
        except (sqlite3.Error, ProtocolError) as exc:  # commits checkpoint themselves then
            _log.error("no checkpoint thread: %s", exc)
            return
        with contextlib.closing(store):
            while not self._stop_checkpoints.wait(_CHECKPOINT_SECONDS):
                try:
                    store.checkpoint()
                except (sqlite3.Error, ProtocolError) as exc:  # next time, then
                    _log.warning("checkpoint failed: %s", exc)

    def log(
        self, store: Store, user: TokenUser, entity_id: int, view: str, run_id: int | None
    ) -> None:
        """Record a check (para 36)."""
        with self.log_lock:
            store.log_check(user_name=user.name, entity_id=entity_id, view=view, run_id=run_id)

    def tokens(self) -> Tokens:
        """The current users (the file is re-read when it changed; unreadable: nobody)."""
        try:
            st = os.stat(self.tokens_path)
            stamp: tuple[int, ...] | None = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            with self._lock:
                try:
                    fresh = load_tokens(self.tokens_path)
                except (ProtocolError, OSError) as exc:
                    _log.error("token file unusable, refusing every user: %s", exc)
                    fresh = Tokens({})
                self._tokens, self._stamp = fresh, stamp
        return self._tokens


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(encode_value(obj), ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(
    status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    return _json({"error": code, "detail": detail}, status, headers)


class _Limits:
    """Refuse request bodies before they are read; add security headers to every answer."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_secured)

    def _refusal(self, scope: Scope) -> Response | None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > MAX_TARGET_BYTES:
            return _error(414, "uri_too_long", f"expected at most {MAX_TARGET_BYTES} bytes")
        if sum(len(n) + len(v) + 4 for n, v in headers) > MAX_HEADER_BYTES:
            return _error(431, "headers_too_large", f"expected at most {MAX_HEADER_BYTES} bytes")
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    return _error(400, "bad_content_length", "Content-Length is not a number")
                if int(value) > self.max_body:
                    return _error(
                        413,
                        "body_too_large",
                        f"expected a body of at most {self.max_body} bytes, found {int(value)}",
                    )
            elif name == b"transfer-encoding":
                return _error(411, "length_required", "no route takes a streamed body")
        return None


def _report_answer(issued: IssuedReport, fmt: str) -> tuple[bytes, str, dict[str, str]]:
    """The body, media type and headers of a report in ``fmt`` (``json`` or ``html``)."""
    name = issued.report_id
    data, sig = issued.json, issued.json_signature
    media = "application/json"
    headers = {"X-Report-Id": name, "X-Report-Sha256": issued.sha256}
    if fmt == "html" and issued.html is not None and issued.html_signature is not None:
        data, sig, media = issued.html, issued.html_signature, "text/html; charset=utf-8"
        headers["Content-Security-Policy"] = _HTML_CSP
    headers["X-Signature"] = base64.b64encode(sig.encode("utf-8")).decode("ascii")
    headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return data, media, headers


class _BoundedLock:
    """``lock`` as a context manager that waits at most ``seconds``, then raises
    ``store_busy`` (the event loop must not wait on a thread that waits on SQLite)."""

    def __init__(self, lock: threading.Lock, seconds: float) -> None:
        self.lock = lock
        self.seconds = seconds

    def __enter__(self) -> None:
        if not self.lock.acquire(timeout=self.seconds):
            raise StoreError("the check log is busy", code="store_busy")

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class _CheckBatch:
    """The checks of the event loop's reports, written together: each look-up adds its
    check and waits; the first schedules one write for the loop's next turn, which logs
    every check added by then in one transaction (one commit for many look-ups under
    load). Each waiter gets its check's id, or the error that stopped the write (then
    none of them was logged)."""

    def __init__(self, register: _Register) -> None:
        self.register = register
        self._pending: list[tuple[SignedReport, asyncio.Future[int]]] = []

    def add(self, signed: SignedReport) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._write)
        self._pending.append((signed, done))
        return done

    def _write(self) -> None:
        batch, self._pending = self._pending, []
        reg = self.register
        try:
            store = reg.loop_store()
            with _BoundedLock(reg.log_lock, _LOOP_WAIT_MS / 1000), store.transaction():
                ids = [store.log_check(**signed.check()) for signed, _ in batch]
        except Exception as exc:  # handed to every waiter
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for (_, done), check_id in zip(batch, ids, strict=True):
            if not done.done():  # a client gone meanwhile: its check stays logged
                done.set_result(check_id)


class _FastReports:
    """Answer ``GET /entities/{12 digits}/report`` (JSON) on the event loop (module notes).

    Only a request the route would answer with 200 is answered here, the same way; for
    every other request, and whenever signing or logging fails, the request goes on to
    the app unchanged (nothing is logged twice: a report goes out only after its check
    is logged, and a failed write logs none of its batch).
    """

    def __init__(self, app: ASGIApp, register: _Register) -> None:
        self.app = app
        self.register = register
        self.checks = _CheckBatch(register)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        issued = None
        if scope["type"] == "http" and scope["method"] == "GET":
            signed = self._sign(scope)
            if signed is not None:
                issued = await self._log(signed)
        if issued is None:
            await self.app(scope, receive, send)
            return
        data, media, headers = _report_answer(issued, "json")
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw += [(b"content-length", b"%d" % len(data)), (b"content-type", media.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": data})

    def _sign(self, scope: Scope) -> SignedReport | None:
        """The signed report, or None: the route answers (see the class notes)."""
        found = _REPORT_PATH.fullmatch(scope["path"])
        query = scope.get("query_string")
        if found is None or scope.get("root_path") or query not in _JSON_QUERIES:
            return None
        reg = self.register
        if time.monotonic() < reg.loop_backoff_until:
            return None
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        scheme, credentials = get_authorization_scheme_param(authorization)
        if scheme.lower() != "bearer" or not credentials:
            return None
        user = reg.tokens().authenticate(credentials)
        if user is None or not user.full:
            return None
        try:
            return sign_report(
                reg.loop_store(), found.group(1), user=user.name, key=reg.key, html_too=False,
                history=reg.history, cache=reg.reports,
            )  # fmt: skip
        except ProtocolError:  # the route says why (404, 422, 503 ...)
            return None
        except Exception as exc:  # a bug here: the route answers (and logs it if it fails too)
            _log.warning("report on the event loop failed: %s: %s", type(exc).__name__, exc)
            return None

    async def _log(self, signed: SignedReport) -> IssuedReport | None:
        """The report once its check is logged, or None: the route answers."""
        try:
            return signed.logged(await self.checks.add(signed))
        except ProtocolError as exc:
            if exc.code == "store_busy":
                self.register.loop_backoff_until = time.monotonic() + _LOOP_BACKOFF_SECONDS
            return None
        except Exception as exc:  # as in _sign
            _log.warning("check log on the event loop failed: %s: %s", type(exc).__name__, exc)
            return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IdentifierError)
    async def invalid_identifier(_: Request, exc: IdentifierError) -> Response:
        return _error(422, exc.code, str(exc))

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, exc: ProtocolError) -> Response:
        if exc.code == "unknown_entity":
            return _error(404, exc.code, str(exc))
        if isinstance(exc, StoreError):
            _log.error("store error: %s", exc)
            return _error(503, exc.code, "the register's database is busy, try again")
        if isinstance(exc, RegistryRefused) or exc.exit_code == 3:
            return _error(403, exc.code, str(exc))
        return _error(422, exc.code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())][:4], "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:10]
        ]
        return _error(422, "invalid_request", problems)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> Response:  # a bug: say little
        _log.error("internal error: %s: %s", type(exc).__name__, exc)
        return _error(500, "internal", "internal error (logged)")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, f"http_{exc.status_code}", exc.detail, exc.headers)


async def _register(request: Request) -> _Register:
    # async: a plain function dependency would cost a trip through the thread pool
    reg: _Register = request.app.state.register
    return reg


async def _user(
    reg: Annotated[_Register, Depends(_register)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TokenUser:
    user = reg.tokens().authenticate(None if creds is None else creds.credentials)
    if user is None:
        raise HTTPException(
            401,
            detail="a valid bearer token is required (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


User = Annotated[TokenUser, Depends(_user)]
Reg = Annotated[_Register, Depends(_register)]


def _full(user: TokenUser) -> None:
    if not user.full:
        raise HTTPException(403, detail=f"user {user.name!r} has basic access only (para 37)")


def _checks(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "check_id": c.check_id,
            "user": c.user_name,
            "bin": c.bin,
            "checked_at": c.checked_at,
            "view": c.view,
            "run_id": c.run_id,
            "report_sha256": c.report_sha256,
        }
        for c in records
    ]


def _add_routes(app: FastAPI) -> None:
    @app.get("/health", tags=["service"])
    async def health() -> dict[str, str]:
        """Liveness: the server answers."""
        return {"status": "ok"}

    @app.get("/entities/{identifier}/basic", tags=["views"])
    def basic(identifier: Identifier, user: User, reg: Reg) -> Response:
        """The free basic view of para 37 (logged as view ``basic``)."""
        store = reg.store()
        view = basic_view(store, identifier)
        entity = find_entity(store, identifier)
        reg.log(store, user, entity.id, "basic", view["run_id"])
        return _json(view)

    @app.get("/entities/{identifier}", tags=["views"])
    def full(identifier: Identifier, user: User, reg: Reg, history: Limit = 5) -> Response:
        """The full view: the four indexes with coverage, reasons and history (``full``)."""
        _full(user)
        store = reg.store()
        view = entity_view(store, identifier, history=min(history, 20))
        entity = find_entity(store, identifier)
        run_id = None if view["run"] is None else view["run"]["run_id"]
        reg.log(store, user, entity.id, "full", run_id)
        return _json(view)

    @app.get("/entities/{identifier}/report", tags=["reports"])
    def report(
        identifier: Identifier,
        user: User,
        reg: Reg,
        fmt: Annotated[Literal["json", "html"], Query(alias="format")] = "json",
    ) -> Response:
        """A report of this check signed by the register (paras 28, 36), logged as ``report``.

        The body is exactly the signed bytes; ``X-Signature`` holds the base64 of the
        minisign signature: save both and run ``minisign -Vm FILE -p register.minisign.pub``
        or ``registry-combiner verify-report FILE``."""
        _full(user)
        issued = issue_report(
            reg.store(), identifier, user=user.name, key=reg.key, html_too=fmt == "html",
            history=reg.history, log_lock=reg.log_lock, cache=reg.reports,
        )  # fmt: skip
        data, media, headers = _report_answer(issued, fmt)
        return Response(data, media_type=media, headers=headers)

    @app.get("/search", tags=["search"])
    def find(
        user: User,
        reg: Reg,
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)],
        by: Literal["auto", "id", "name", "person"] = "auto",
        legal_form: Annotated[str | None, Query(max_length=64)] = None,
        limit: Limit = 20,
    ) -> Response:
        """Para 32 search by BIN/IIN, by name and legal form, or by a person's names."""
        found = search(reg.store(), q, by=by, legal_form=legal_form, limit=limit)
        return _json({"query": q, "by": by, "results": [search_hit(e) for e in found]})

    @app.get("/checks/mine", tags=["check log"])
    def my_checks(user: User, reg: Reg, limit: Limit = 50) -> Response:
        """The caller's own checks, newest first (para 36)."""
        return _json(
            {
                "user": user.name,
                "checks": _checks(reg.store().checks_by_user(user.name, limit=limit)),
            }
        )

    @app.get("/entities/{identifier}/checks", tags=["check log"])
    def entity_checks(identifier: Identifier, user: User, reg: Reg, limit: Limit = 50) -> Response:
        """Who checked this entity and when (para 36): only for a user bound to it."""
        store = reg.store()
        entity = find_entity(store, identifier)
        if user.entity != entity.bin:
            raise HTTPException(
                403, detail="only a user whose token is bound to this entity may see its checks"
            )
        records = store.checks_of_entity(entity.id, limit=limit)
        return _json({"bin": entity.bin, "checks": _checks(records)})


def create_app(
    store_path: str | os.PathLike[str],
    tokens_path: str | os.PathLike[str],
    register_key: SecretKey | str | os.PathLike[str],
    *,
    history: int = 5,
    max_body: int = MAX_BODY_BYTES,
    threads: int | None = None,
    fast_reports: bool = True,
) -> FastAPI:
    """The API over the register at ``store_path`` (a state directory or ``.sqlite`` file).

    The database must exist (``registry-combiner ingest`` creates it); it is migrated when
    opened. ``tokens_path`` is the token file, ``register_key`` the register's secret key
    (or its file) that signs reports. ``fast_reports=False`` leaves every report look-up
    to the FastAPI route (module notes; the answers are the same).
    """
    db = _db_path(store_path)
    if not db.is_file():
        raise RegistryInputError(
            f"register database {db}: not found (ingest batches first)", code="store_missing"
        )
    with contextlib.closing(open_store(db)):
        pass  # migrate once, here, not in the first request
    key = register_key if isinstance(register_key, SecretKey) else load_secret_key(register_key)

    register = _Register(db, Path(tokens_path), key, history)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if threads:
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        register.start_checkpoints()
        try:
            yield
        finally:
            register.stop_checkpoints()

    app = FastAPI(
        lifespan=lifespan,
        title="Business partners register",
        summary="Scoring indexes, signed reports and the check log (paras 28-37).",
        version="1",
        # No OpenTelemetry: request spans would carry the identifiers of checked entities
        # to whatever collector the environment names (the check log is the record).
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.register = register
    _install_error_handlers(app)
    _add_routes(app)
    if fast_reports:
        app.add_middleware(_FastReports, register=register)
    app.add_middleware(_Limits, max_body=max_body)  # outermost: it sees every request
    return app


def app_from_env() -> FastAPI:
    """The app of one ``serve --workers N`` worker process: :func:`create_app` with the
    paths and settings that ``serve`` put in ``REGISTRY_COMBINER_SERVE_*`` variables."""
    env = {k.removeprefix(ENV_PREFIX): v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    threads = int(env["THREADS"]) if env.get("THREADS") else None
    history = int(env.get("HISTORY", "5"))
    return create_app(env["STATE"], env["TOKENS"], env["KEY"], history=history, threads=threads)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn's ``sockets=`` (inheritable, for worker processes).

    Its protocol is ``IPPROTO_TCP``, not 0: asyncio sets ``TCP_NODELAY`` only on accepted
    sockets that say so, and without it every keep-alive answer waits ~40 ms for the
    client's delayed ACK (uvicorn's own ``bind_socket`` has this problem: Kludex/uvicorn
    issue 3149, so ``serve --workers N`` binds with this function).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **config: Any
) -> Iterator[str]:
    """Run ``app`` on uvicorn in a background thread; yield its base URL, stop on exit.

    ``port=0`` picks a free port. Extra ``config`` goes to :class:`uvicorn.Config`.
    """
    sock = listening_socket(host, port)
    options: dict[str, Any] = {"log_level": "warning", "access_log": False, **config}
    server = uvicorn.Server(uvicorn.Config(app, server_header=False, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the uvicorn server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
