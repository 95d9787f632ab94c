"""What every boundary record shares: identifiers, hashes, file I/O and field checks.

* **Random IDs** replace BIN/IIN in samples. Each is ``rid_`` followed by 24 lower-case
  base32 characters: 120 bits from :mod:`secrets`, never derived from the identifier, and
  with a non-numeric prefix so that it can never be mistaken for a 12-digit BIN/IIN (a
  value holding 12 digits in a row is never issued, so identifier scanners stay quiet).
* **Record IDs** (requests, lists, samples, releases, batches) read
  ``<prefix>-<UTC date>-<16 base32 characters>``, e.g. ``req-20261123-k2j4h5g6f7d8s9a2``.
* :func:`write_record` writes exactly :meth:`~sample_protocol.serde.Record.canonical_bytes`
  (no trailing newline), so that the file's bytes are what is hashed and signed.

Example::

    >>> rid = new_random_id()
    >>> is_random_id(rid), is_random_id("990140000135")
    (True, False)
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import math
import os
import re
import secrets
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, Union

from . import _atomic
from .errors import SerdeError, ValidationError
from .serde import Record

__all__ = [
    "RANDOM_ID_BITS",
    "RANDOM_ID_PREFIX",
    "is_random_id",
    "new_random_id",
    "new_random_ids",
    "new_record_id",
    "read_record",
    "safe_join",
    "sha256_bytes",
    "sha256_file",
    "write_record",
]

R = TypeVar("R", bound=Record)

#: Non-numeric prefix of every random ID.
RANDOM_ID_PREFIX = "rid_"
_RANDOM_ID_BYTES = 15  # 120 bits; 15 bytes are exactly 24 base32 characters, no padding
#: Random bits in a random ID.
RANDOM_ID_BITS = _RANDOM_ID_BYTES * 8
_RANDOM_ID_CHARS = _RANDOM_ID_BYTES * 8 // 5
_RANDOM_ID_RE = re.compile(rf"{RANDOM_ID_PREFIX}[a-z2-7]{{{_RANDOM_ID_CHARS}}}")
_DIGIT_RUN_RE = re.compile(r"[0-9]{12}")
_RECORD_PREFIX_RE = re.compile(r"[a-z][a-z0-9]{0,15}")
_RECORD_SUFFIX_BYTES = 10  # 80 bits, 16 base32 characters

#: Error codes used by record validation.
CODE_INVALID = "invalid_record"
CODE_UNSAFE_PATH = "unsafe_path"
CODE_RANDOM_ID = "invalid_random_id"


# -- random and record identifiers -------------------------------------------------


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").lower()


def is_random_id(value: object) -> bool:
    """True when ``value`` is a well-formed random ID (never true for a BIN/IIN)."""
    return (
        isinstance(value, str)
        and _RANDOM_ID_RE.fullmatch(value) is not None
        and _DIGIT_RUN_RE.search(value) is None
    )


def new_random_id() -> str:
    """One fresh random ID from the operating system's CSPRNG."""
    return new_random_ids(1)[0]


def new_random_ids(n: int) -> tuple[str, ...]:
    """``n`` distinct fresh random IDs, in no particular order.

    >>> ids = new_random_ids(3)
    >>> len(set(ids)), all(is_random_id(i) for i in ids)
    (3, True)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValidationError(f"new_random_ids: expected a count >= 0, found {n!r}")
    seen: set[str] = set()
    out: list[str] = []
    width = _RANDOM_ID_CHARS
    while len(out) < n:
        need = n - len(out)
        text = _b32(secrets.token_bytes(_RANDOM_ID_BYTES * need))
        for i in range(0, len(text), width):
            rid = RANDOM_ID_PREFIX + text[i : i + width]
            if rid in seen or _DIGIT_RUN_RE.search(rid):
                continue  # a collision (never seen in practice) or a BIN-like run: redraw
            seen.add(rid)
            out.append(rid)
    return tuple(out)


def new_record_id(prefix: str, *, now: dt.datetime | None = None) -> str:
    """A fresh record ID: ``prefix``, the UTC date, 80 random bits.

    >>> new_record_id("req", now=dt.datetime(2026, 3, 2, tzinfo=dt.UTC))[:13]
    'req-20260302-'
    """
    if not isinstance(prefix, str) or not _RECORD_PREFIX_RE.fullmatch(prefix):
        raise ValidationError(
            f"new_record_id: prefix: expected 1-16 lower-case letters or digits starting "
            f"with a letter (like 'req'), found {prefix!r}"
        )
    when = now if now is not None else dt.datetime.now(dt.UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationError(f"new_record_id: now: expected a timezone-aware time, found {when}")
    day = when.astimezone(dt.UTC).strftime("%Y%m%d")
    return f"{prefix}-{day}-{_b32(secrets.token_bytes(_RECORD_SUFFIX_BYTES))}"


# -- hashes -------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex SHA-256 of a file, read in chunks (``OSError`` names the file)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


# -- files --------------------------------------------------------------------------


def write_record(record: Record, path: str | os.PathLike[str]) -> Path:
    """Validate ``record`` and write its canonical bytes to ``path`` atomically."""
    record.validate()
    return _atomic.write_bytes(path, record.canonical_bytes())


def read_record(cls: type[R], path: str | os.PathLike[str]) -> R:
    """Read, decode and validate a ``cls`` record; every error names the file.

    Raises :class:`SerdeError` (``record_unreadable`` when the file cannot be read,
    ``bad_record`` when it is not a valid ``cls``), or the record's own
    :class:`ValidationError` (with its code) prefixed by the path.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SerdeError(
            f"{path}: cannot read a {cls.kind()} record ({exc.strerror or exc})",
            code="record_unreadable",
        ) from None
    where = f"{path}: {cls.kind()}"
    try:
        return cls.from_json(data, where=where)
    except SerdeError:
        raise
    except ValidationError as exc:  # from validate(): add the file, keep class and code
        raise type(exc)(f"{path}: {exc}", code=exc.code) from None


def check_relpath(where: str, value: object) -> str:
    """Check that ``value`` is a safe relative POSIX path inside a bundle; return it.

    Every part is letters, digits, ``_``, ``-`` or ``.``, does not start with ``.`` or
    ``-``; no ``..``, no absolute path, no back-slash, no empty part.
    """
    if not isinstance(value, str) or not value:
        raise ValidationError(
            f"{where}: expected a relative path, found {_short(value)}", code=CODE_UNSAFE_PATH
        )
    parts = value.split("/")
    if value.startswith("/") or any(not _PATH_PART_RE.fullmatch(p) for p in parts):
        raise ValidationError(
            f"{where}: expected a relative path of plain names (letters, digits, '_', '-', "
            f"'.'; no '..', no leading '/' or '.'), found {value!r}",
            code=CODE_UNSAFE_PATH,
        )
    return value


_PATH_PART_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


def safe_join(root: str | os.PathLike[str], relpath: str) -> Path:
    """``root / relpath`` after checking ``relpath`` and that, symlinks resolved, the
    result stays inside ``root``; raises :class:`ValidationError` (``unsafe_path``)."""
    check_relpath(f"{root}: path", relpath)
    base = Path(root).resolve()
    target = (base / PurePosixPath(relpath)).resolve()
    if not target.is_relative_to(base):
        raise ValidationError(
            f"{root}: path {relpath!r} resolves to {target}, outside the directory",
            code=CODE_UNSAFE_PATH,
        )
    return base / PurePosixPath(relpath)


# -- field checks shared by the record modules ---------------------------------------

_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SOURCE_RE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_INDEX_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(where: str, expected: str, found: object, *, code: str = CODE_INVALID) -> typing.NoReturn:
    """Raise ``ValidationError("<where>: expected <expected>, found <found>")``."""
    raise ValidationError(f"{where}: expected {expected}, found {_short(found)}", code=code)


def check_token(where: str, value: str) -> None:
    """A record ID: 1-128 letters, digits, ``.``, ``_``, ``-``; no ``..`` (file-name safe)."""
    if not _TOKEN_RE.fullmatch(value) or ".." in value:
        fail(where, "an ID of letters, digits, '.', '_', '-' (like 'req-20261123-...')", value)


def check_name(where: str, value: str) -> None:
    """A party, column or field name: non-empty, no surrounding spaces, no control chars."""
    if (
        not value
        or value != value.strip()
        or len(value) > 200
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        fail(where, "a non-empty name without surrounding spaces or control characters", value)


def check_source(where: str, value: str) -> None:
    """A source code such as ``TAX``."""
    if not _SOURCE_RE.fullmatch(value):
        fail(where, "an upper-case source code like 'TAX'", value)


def check_index(where: str, value: str) -> None:
    """A scoring index id such as ``payment_discipline``."""
    if not _INDEX_RE.fullmatch(value):
        fail(where, "a lower-case index id like 'payment_discipline'", value)


def check_sha256(where: str, value: str) -> None:
    """64 lower-case hex digits."""
    if not _SHA256_RE.fullmatch(value):
        fail(where, "a SHA-256 of 64 lower-case hex digits", value)


def check_unique(where: str, values: Iterable[object], *, personal: bool = False) -> None:
    """No value listed twice; a ``personal`` value (an IIN/BIN) is named by position only."""
    seen: dict[object, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            shown = (
                f"items {seen[value]} and {i} are the same"
                if personal
                else f"{_short(value)} listed twice"
            )
            fail(where, "no duplicates", shown)
        seen[value] = i


def check_min(where: str, value: int | float, low: int | float) -> None:
    if value < low:
        fail(where, f"a value >= {low}", value)


def check_aware(where: str, value: dt.datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        fail(where, "a timezone-aware date-time", value.isoformat())


# -- runtime type check of a record's fields -----------------------------------------


_HINTS: dict[type, tuple[tuple[str, Any], ...]] = {}


def _hints(cls: type) -> tuple[tuple[str, Any], ...]:
    cached = _HINTS.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        cached = _HINTS[cls] = tuple((name, hints[name]) for name in names)
    return cached


def check_types(record: Record, where: str) -> None:
    """Check every field of ``record`` against its annotation (the serde types).

    Catches what a frozen dataclass does not: a list where a tuple belongs, a naive
    date-time, a date-time where a date belongs, ``True`` where an int belongs, NaN.
    """
    for name, tp in _hints(type(record)):
        _check_value(tp, getattr(record, name), f"{where}.{name}")


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_value(tp: Any, value: Any, where: str) -> None:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        errors: list[ValidationError] = []
        for candidate in inner:
            try:
                _check_value(candidate, value, where)
                return
            except ValidationError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        fail(where, f"a value of type {_describe(tp)}", value)
    if origin is tuple:
        if not isinstance(value, tuple):
            fail(where, "a tuple", f"{type(value).__name__} {_short(value)}")
        item = args[0] if args else Any
        if item is str and all(type(v) is str for v in value):
            return  # fast path for long identifier lists
        for i, v in enumerate(value):
            _check_value(item, v, f"{where}[{i}]")
        return
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            fail(where, "a mapping", f"{type(value).__name__} {_short(value)}")
        for k, v in value.items():
            if not isinstance(k, str):
                fail(where, "string keys", k)
            if len(args) == 2:
                _check_value(args[1], v, f"{where}.{k}")
        return
    if tp is Any:
        return
    if tp is dt.datetime:
        if not isinstance(value, dt.datetime):
            fail(where, "a date-time", value)
        check_aware(where, value)
        return
    if tp is dt.date:
        if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
            fail(where, "a date (not a date-time)", value)
        return
    if tp is bool:
        if not isinstance(value, bool):
            fail(where, "true or false", value)
        return
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(where, "an integer", value)
        return
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(where, "a number", value)
        if not math.isfinite(value):
            fail(where, "a finite number", value)
        return
    if tp is str:
        if not isinstance(value, str):
            fail(where, "a string", value)
        return
    if isinstance(tp, type) and issubclass(tp, Record | enum.Enum):
        if not isinstance(value, tp):
            fail(where, f"a {tp.__name__}", value)
        return
    raise TypeError(f"{where}: cannot check type {_describe(tp)}")  # a bug in a record class
