"""The preliminary-index batch: what a body sends the register (flow 5 of DESIGN section 3).

A batch is a **directory**, written atomically (a temporary sibling directory renamed into
place; an existing path is never overwritten), holding exactly three files:

* ``batch.parquet``, one row per (entity, index) the body's release scores, with exactly
  the columns of :data:`BATCH_SCHEMA`; or, sealed to the register's X25519 key,
  ``batch.parquet.kzse`` (:func:`~sample_protocol.envelope.seal_file`, payload kind
  :data:`BATCH_PAYLOAD_KIND`, sent by the body's key);
* ``manifest.json``: a :class:`~sample_protocol.records.BatchManifest` (canonical JSON)
  naming the body, source, release, as-of date, row count, the data file and its SHA-256;
* ``manifest.json.minisig``: the body's minisign signature of the manifest, so
  ``minisign -Vm manifest.json -p body.minisign.pub`` checks it outside this toolkit.

:class:`BatchWriter` (a body) streams record batches into the Parquet file and checks every
one against the contract, so nothing but the batch schema can leave a perimeter.
:func:`open_batch` (the register) checks everything before returning a row: layout, the
signer (a non-revoked body of the trust root that owns the source), hashes, the envelope,
the exact schema, the row count and every value. Any failure raises :class:`BatchError`
(exit 3) and loads nothing. Freshness (a batch seen before, an unknown or expired release)
is the register's business.

Example::

    with BatchWriter("out/batch-tax", body_key=key, source="TAX", release_id=rid,
                     as_of=dt.date(2026, 1, 1)) as writer:
        writer.write(record_batch)               # columns and types of BATCH_SCHEMA
    opened = open_batch("out/batch-tax", trust=trust)
    opened.table.num_rows == opened.manifest.row_count
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ._atomic import fsync_path
from .catalogue import index_ids
from .envelope import open_envelope, seal_file
from .errors import EnvelopeError, ProtocolError, SignatureError, TrustError, ValidationError
from .identifier_columns import key_mask
from .keys import PublicKey, SecretKey
from .records_base import (
    check_source,
    check_token,
    new_record_id,
    sha256_bytes,
    sha256_file,
)
from .records_release import BATCH_COLUMNS, MANIFEST_NAME, BatchManifest
from .scores import CATEGORIES
from .signing import SIGNATURE_SUFFIX, default_trusted_comment, sign_file, verify_bytes
from .trust import Role, TrustRoot

__all__ = [
    "BATCH_DATA_FILE",
    "BATCH_PAYLOAD_KIND",
    "BATCH_SCHEMA",
    "BATCH_SEALED_FILE",
    "BATCH_SIGNATURE_NAME",
    "DEFAULT_MAX_BATCH_BYTES",
    "BatchError",
    "BatchWriter",
    "OpenedBatch",
    "open_batch",
]

#: The Arrow schema of a batch's Parquet file: exactly these columns, types, no nulls.
BATCH_SCHEMA = pa.schema(
    [
        pa.field("bin", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("index", pa.string(), nullable=False),
        pa.field("value", pa.int8(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("release_id", pa.string(), nullable=False),
        pa.field("as_of", pa.date32(), nullable=False),
    ]
)
#: The plain data file of a batch.
BATCH_DATA_FILE = "batch.parquet"
#: The data file of a batch sealed to the register.
BATCH_SEALED_FILE = BATCH_DATA_FILE + ".kzse"
#: Envelope payload kind of a sealed batch.
BATCH_PAYLOAD_KIND = "preliminary-batch"
#: The manifest's detached signature.
BATCH_SIGNATURE_NAME = MANIFEST_NAME + SIGNATURE_SUFFIX
#: Largest data file :func:`open_batch` reads by default (4 GiB).
DEFAULT_MAX_BATCH_BYTES = 4 << 30

_MAX_MANIFEST_BYTES = 1 << 20
_MAX_SIG_BYTES = 16 * 1024
_CLOCK_SKEW = dt.timedelta(minutes=5)
_DECIMALS = 4
_DICTIONARY_COLUMNS = ["source", "index", "category", "release_id", "as_of"]
_BODY_ROLES = frozenset({Role.BODY, Role.TAX_BODY})

assert tuple(BATCH_SCHEMA.names) == BATCH_COLUMNS  # one contract, two spellings


class BatchError(ProtocolError, ValueError):
    """A batch broke its contract (writing) or was refused (opening); nothing is loaded.

    Codes: ``batch_exists``, ``batch_layout``, ``batch_signature``, ``batch_signer``,
    ``batch_manifest``, ``batch_hash``, ``batch_envelope``, ``batch_schema``,
    ``batch_row_count``, ``batch_values``, ``batch_duplicate``.
    """

    code = "batch_refused"
    exit_code = 3


def _refuse(code: str, message: str) -> BatchError:
    return BatchError(message, code=code)


# --------------------------------------------------------------------------- values


def _column_numpy(column: pa.Array | pa.ChunkedArray) -> npt.NDArray[Any]:
    return np.asarray(column.to_numpy(zero_copy_only=False))


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_schema(schema: pa.Schema, where: str) -> None:
    found = [f"{f.name}: {f.type}" for f in schema]
    expected = [f"{f.name}: {f.type}" for f in BATCH_SCHEMA]
    if found != expected:
        raise _refuse(
            "batch_schema",
            f"{where}: expected exactly the columns {expected}, found {found}",
        )


def _check_values(
    table: pa.Table | pa.RecordBatch,
    *,
    source: str,
    release_id: str,
    as_of: dt.date,
    where: str,
    offset: int = 0,
    check_bins: bool = True,
) -> None:
    """Every row of ``table`` (already of the batch schema's names and types) is valid.

    ``check_bins=False`` skips the identifier check (for bins already checked).
    """

    def bad(column: str, mask: npt.NDArray[np.bool_], expected: str) -> BatchError:
        return _refuse(
            "batch_values",
            f"{where}: column {column!r}: expected {expected}, found something else in "
            f"{int(mask.sum())} row(s) (first: row {offset + _first(mask) + 1})",
        )

    for name in BATCH_COLUMNS:
        column = table.column(name)
        if column.null_count:
            raise bad(name, _column_numpy(column.is_null()), "a value in every row (no nulls)")
    constants: dict[str, object] = {"source": source, "release_id": release_id, "as_of": as_of}
    for name, value in constants.items():
        column = table.column(name)
        scalar = pa.scalar(value, type=column.type)
        same = _column_numpy(pc.equal(column, scalar))
        if not same.all():
            raise bad(name, ~same, f"{value!s} (the manifest's {name}) in every row")
    if check_bins:
        bins = table.column("bin")
        ok = key_mask(bins.combine_chunks() if isinstance(bins, pa.ChunkedArray) else bins)
        if not ok.all():
            raise bad("bin", ~ok, "a valid BIN or IIN (12 digits, check digit)")
    index = _column_numpy(pc.is_in(table.column("index"), value_set=pa.array(index_ids())))
    if not index.all():
        raise bad("index", ~index, f"one of {', '.join(index_ids())}")
    values = _column_numpy(table.column("value")).astype(np.int16)
    out = (values < 1) | (values > 99)
    if out.any():
        raise bad("value", out, "an integer from 1 to 99")
    cats = _column_numpy(pc.is_in(table.column("category"), value_set=pa.array(CATEGORIES)))
    if not cats.all():
        raise bad("category", ~cats, f"one of {', '.join(CATEGORIES)}")
    p = _column_numpy(table.column("probability")).astype(np.float64)
    with np.errstate(invalid="ignore"):
        wrong = ~((p >= 0.0) & (p <= 1.0)) | (np.round(p, _DECIMALS) != p)
    if wrong.any():
        raise bad("probability", wrong, f"a probability in [0, 1] rounded to {_DECIMALS} decimals")


def _check_unique(table: pa.Table, where: str) -> None:
    """No (bin, index) pair twice (the bins are already valid 12-digit identifiers)."""
    if table.num_rows < 2:
        return
    codes = {name: i for i, name in enumerate(index_ids())}
    bins = _column_numpy(pc.cast(table.column("bin"), pa.int64())).astype(np.int64)
    index = pc.index_in(table.column("index"), value_set=pa.array(list(codes)))
    keys = bins * 8 + _column_numpy(index).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    if same.any():
        row = int(order[1:][same].min())
        raise _refuse(
            "batch_duplicate",
            f"{where}: expected one row per (bin, index), found {int(same.sum())} repeated "
            f"pair(s) (first repeat: row {row + 1}, index {table.column('index')[row].as_py()!r})",
        )


# --------------------------------------------------------------------------- writing


class BatchWriter:
    """Stream a body's preliminary indexes into a signed batch directory at ``out``.

    Use it as a context manager. Each :meth:`write` takes a ``RecordBatch`` or ``Table``
    with exactly the names and types of :data:`BATCH_SCHEMA` and checks every row (no
    null, the writer's source / release / as-of, a valid BIN or IIN, value 1-99, category,
    probability in [0, 1] rounded to 4 decimals), raising :class:`BatchError` otherwise.
    Leaving the block cleanly closes the Parquet file, seals it to ``seal_to`` if given,
    hashes it, writes and signs the manifest and renames the directory into place; leaving
    it with an exception removes everything. Duplicate (bin, index) pairs are the
    caller's to avoid (:func:`open_batch` refuses them).
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        *,
        body_key: SecretKey,
        source: str,
        release_id: str,
        as_of: dt.date,
        seal_to: PublicKey | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        check_source("batch source", source)
        check_token("batch release_id", release_id)
        if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
            raise ValidationError(f"batch as_of: expected a date, found {as_of!r}")
        created = now if now is not None else dt.datetime.now(dt.UTC)
        if created.tzinfo is None or created.utcoffset() is None:
            raise ValidationError(f"batch now: expected a timezone-aware time, found {created}")
        if seal_to is not None and not seal_to.can_receive:
            raise ValidationError(
                f"batch seal_to: key {seal_to.name!r} ({seal_to.key_id}) is verify-only; "
                "expected the register's NAME.pub with its box key",
                code="batch_seal_key",
            )
        self.out = Path(out)
        self.body_key = body_key
        self.source = source
        self.release_id = release_id
        self.as_of = as_of
        self.seal_to = seal_to
        self.created_at = created.astimezone(dt.UTC).replace(microsecond=0)
        self.batch_id = new_record_id("bat", now=self.created_at)
        self.rows = 0
        self._tmp: Path | None = None
        self._writer: pq.ParquetWriter | None = None
        self._manifest: BatchManifest | None = None
        self._checked_bins: pa.Array | pa.ChunkedArray | None = None

    @property
    def manifest(self) -> BatchManifest:
        """The signed manifest (after a clean exit)."""
        if self._manifest is None:
            raise ValidationError(f"batch {self.out}: not finished yet, no manifest")
        return self._manifest

    def __enter__(self) -> BatchWriter:
        if self._tmp is not None:
            raise ValidationError(f"batch {self.out}: the writer is already open")
        if self.out.exists() or self.out.is_symlink():
            raise _refuse(
                "batch_exists",
                f"batch {self.out}: expected a new path, found an existing one (a batch is "
                "never written over anything)",
            )
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        try:
            self._writer = pq.ParquetWriter(
                self._tmp / BATCH_DATA_FILE,
                BATCH_SCHEMA,
                use_dictionary=_DICTIONARY_COLUMNS,  # not the unique bins: wasted work
                write_statistics=False,
            )
        except BaseException:
            self._discard()
            raise
        return self

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Check ``batch`` against the contract and append it."""
        if self._writer is None:
            raise ValidationError(f"batch {self.out}: write() outside the writer's with-block")
        _check_schema(batch.schema, f"batch {self.out}")
        bins = batch.column("bin")
        # A body writes one batch per index for the same entities: check their bins once.
        seen = self._checked_bins is not None and self._checked_bins.equals(bins)
        _check_values(
            batch,
            source=self.source,
            release_id=self.release_id,
            as_of=self.as_of,
            where=f"batch {self.out}",
            offset=self.rows,
            check_bins=not seen,
        )
        self._checked_bins = bins
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        self._writer.write_table(table.cast(BATCH_SCHEMA))
        self.rows += table.num_rows

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            self._finish()
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _finish(self) -> None:
        assert self._writer is not None and self._tmp is not None
        tmp = self._tmp
        self._writer.close()
        self._writer = None
        plain = tmp / BATCH_DATA_FILE
        data_file = plain
        if self.seal_to is not None:
            data_file = seal_file(
                plain,
                tmp / BATCH_SEALED_FILE,
                sender=self.body_key,
                recipient=self.seal_to,
                kind=BATCH_PAYLOAD_KIND,
                meta={"batch_id": self.batch_id, "source": self.source},
            )
            plain.unlink()
        manifest = BatchManifest(
            batch_id=self.batch_id,
            body=self.body_key.name,
            source=self.source,
            release_id=self.release_id,
            as_of=self.as_of,
            created_at=self.created_at,
            row_count=self.rows,
            file=data_file.name,
            sha256=sha256_file(data_file),
            columns=BATCH_COLUMNS,
            sealed=self.seal_to is not None,
        )
        manifest.validate()
        path = tmp / MANIFEST_NAME
        path.write_bytes(manifest.canonical_bytes())
        comment = (
            default_trusted_comment(self.body_key, file_name=MANIFEST_NAME)
            + f"\tbatch_id:{self.batch_id}\tsource:{self.source}\trelease_id:{self.release_id}"
        )
        sign_file(path, self.body_key, trusted_comment=comment)
        for name in (data_file.name, MANIFEST_NAME, BATCH_SIGNATURE_NAME):
            fsync_path(tmp / name)
        fsync_path(tmp)
        try:
            os.rename(tmp, self.out)  # an existing directory that is not empty is refused
        except OSError as exc:
            raise _refuse(
                "batch_exists",
                f"batch {self.out}: cannot move the finished batch into place ({exc.strerror}); "
                "expected a new path",
            ) from None
        self._tmp = None
        fsync_path(self.out.parent)
        self._manifest = manifest


# --------------------------------------------------------------------------- opening


@dataclass(frozen=True, slots=True, eq=False)
class OpenedBatch:
    """A batch that passed every check of :func:`open_batch`."""

    manifest: BatchManifest
    table: pa.Table
    signer: str


def _read_small(path: Path, limit: int, where: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise _refuse(
            "batch_layout", f"{where}: cannot read {path.name} ({exc.strerror})"
        ) from None
    if len(data) > limit:
        raise _refuse("batch_layout", f"{where}: {path.name}: expected at most {limit} bytes")
    return data


def _check_layout(root: Path, where: str, max_bytes: int) -> str:
    """The data file's name, after checking the directory holds exactly the three files."""
    try:
        st = root.lstat()
    except FileNotFoundError:
        raise _refuse("batch_layout", f"{where}: expected a batch directory, found none") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse("batch_layout", f"{where}: expected a directory, found a file or a link")
    names = sorted(os.listdir(root))
    data_files = [n for n in names if n in (BATCH_DATA_FILE, BATCH_SEALED_FILE)]
    expected = {MANIFEST_NAME, BATCH_SIGNATURE_NAME, *data_files[:1]}
    if len(data_files) != 1 or set(names) != expected:
        raise _refuse(
            "batch_layout",
            f"{where}: expected exactly {MANIFEST_NAME}, {BATCH_SIGNATURE_NAME} and one of "
            f"{BATCH_DATA_FILE} / {BATCH_SEALED_FILE}, found {names[:10]}",
        )
    limits = {MANIFEST_NAME: _MAX_MANIFEST_BYTES, BATCH_SIGNATURE_NAME: _MAX_SIG_BYTES}
    for name in names:
        info = (root / name).lstat()
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(
                "batch_layout", f"{where}: {name}: expected a regular file, found a link or other"
            )
        limit = limits.get(name, max_bytes)
        if info.st_size > limit:
            raise _refuse(
                "batch_layout",
                f"{where}: {name}: expected at most {limit} bytes, found {info.st_size}",
            )
    return data_files[0]


def _signer(data: bytes, sig: bytes, trust: TrustRoot, where: str) -> tuple[str, str]:
    """(party name, key id) of a good signature by a body's current key, or refuse."""
    keys = {k.key_id: k for p in trust.parties for k in (p.key, *p.previous_keys)}
    try:
        verified = verify_bytes(data, sig, keys, where=f"{where}: {MANIFEST_NAME}")
    except SignatureError as exc:
        code = "batch_signer" if exc.code == "signature_unknown_key" else "batch_signature"
        raise _refuse(code, f"{where}: {exc} [{exc.code}]") from None
    try:
        party = trust.require_signer(verified.key_id, roles=_BODY_ROLES)
    except TrustError as exc:
        raise _refuse("batch_signer", f"{where}: signer refused: {exc} [{exc.code}]") from None
    return party.name, verified.key_id


def open_batch(
    path: str | os.PathLike[str],
    *,
    trust: TrustRoot,
    recipient: SecretKey | None = None,
    now: dt.datetime | None = None,
    max_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> OpenedBatch:
    """Check the batch directory at ``path`` and load its rows, or raise :class:`BatchError`.

    In order: the layout (exactly the three files, regular, within size caps); the
    manifest's signature by a non-revoked BODY or TAX_BODY party (current key) that owns
    the manifest's source and is its ``body``; the manifest itself (its file and
    ``sealed`` agree with the layout, created no later than ``now`` plus 5 minutes); the
    data file's SHA-256; for a sealed batch, the envelope opened with ``recipient`` and
    sent by that same body; the exact :data:`BATCH_SCHEMA`; the row count; every value
    (source, release and as-of those of the manifest, a valid BIN/IIN, a known index, value
    1-99, category, probability in [0, 1] at 4 decimals) and no (bin, index) pair twice.
    """
    root = Path(path)
    where = f"batch {root}"
    when = now if now is not None else dt.datetime.now(dt.UTC)
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValidationError(f"open_batch: now: expected a timezone-aware time, found {when}")
    data_name = _check_layout(root, where, max_bytes)
    raw = _read_small(root / MANIFEST_NAME, _MAX_MANIFEST_BYTES, where)
    sig = _read_small(root / BATCH_SIGNATURE_NAME, _MAX_SIG_BYTES, where)
    signer, key_id = _signer(raw, sig, trust, where)
    try:
        manifest = BatchManifest.from_json(raw, where=f"{where}: {MANIFEST_NAME}")
    except ValidationError as exc:
        raise _refuse("batch_manifest", f"{exc} [{exc.code}]") from None
    where = f"{where} ({manifest.batch_id})"
    problems = []
    if manifest.body != signer:
        problems.append(f"body {manifest.body!r} but signed by {signer!r}")
    if manifest.file != data_name:
        problems.append(f"file {manifest.file!r} but the directory holds {data_name!r}")
    if manifest.sealed != (data_name == BATCH_SEALED_FILE):
        problems.append(f"sealed={manifest.sealed} but the data file is {data_name!r}")
    if manifest.created_at > when + _CLOCK_SKEW:
        problems.append(f"created_at {manifest.created_at.isoformat()} is in the future")
    if problems:
        raise _refuse("batch_manifest", f"{where}: manifest: " + "; ".join(problems))
    try:
        trust.require_signer(key_id, roles=_BODY_ROLES, source=manifest.source)
    except TrustError as exc:
        raise _refuse("batch_signer", f"{where}: {exc} [{exc.code}]") from None

    data_path = root / data_name
    blob = _read_small(data_path, max_bytes, where)
    found = sha256_bytes(blob)
    if found != manifest.sha256:
        raise _refuse(
            "batch_hash", f"{where}: {data_name}: expected sha256 {manifest.sha256}, found {found}"
        )
    if manifest.sealed:
        if recipient is None:
            raise ValidationError(
                f"{where}: is sealed; expected the recipient's secret key to open it",
                code="batch_recipient_required",
            )
        sender = trust.party(signer).key
        try:
            opened = open_envelope(
                blob,
                recipient=recipient,
                senders={sender.key_id: sender},
                expected_kind=BATCH_PAYLOAD_KIND,
                where=f"{where}: {data_name}",
            )
        except EnvelopeError as exc:
            raise _refuse("batch_envelope", f"{exc} [{exc.code}]") from None
        blob = opened.payload
    table = _read_parquet(blob, manifest, where)
    _check_values(
        table,
        source=manifest.source,
        release_id=manifest.release_id,
        as_of=manifest.as_of,
        where=where,
    )
    _check_unique(table, where)
    return OpenedBatch(manifest=manifest, table=table, signer=signer)


def _read_parquet(blob: bytes, manifest: BatchManifest, where: str) -> pa.Table:
    try:
        pf = pq.ParquetFile(pa.BufferReader(blob))
        _check_schema(pf.schema_arrow, where)
        if pf.metadata.num_rows != manifest.row_count:
            raise _refuse(
                "batch_row_count",
                f"{where}: expected {manifest.row_count} rows (manifest), found "
                f"{pf.metadata.num_rows}",
            )
        table = pf.read()
    except (pa.ArrowException, OSError) as exc:
        raise _refuse("batch_schema", f"{where}: not a readable Parquet file ({exc})") from None
    if not table.schema.equals(BATCH_SCHEMA):
        raise _refuse(
            "batch_schema", f"{where}: expected schema {BATCH_SCHEMA}, found {table.schema}"
        )
    return table
