"""The tax body draws the random list of a sample round (Resolution 372, paras 20-21).

:func:`issue_lists` verifies the lab's request, draws ``sample_size`` entities from the
tax body's register extract (the TAX extract, key column ``bin``) with the operating
system's CSPRNG (:class:`secrets.SystemRandom`), optionally stratified by a TAX field,
gives each a fresh random ID (:func:`~sample_protocol.records.new_random_ids`: random
bits, never derived from the BIN/IIN), and writes:

* ``OUT/<recipient>.ridlist`` for every recipient body of the request and for the tax
  body itself: an envelope (payload kind ``random-id-list``) holding the canonical JSON of
  a :class:`~sample_protocol.records.RandomIdList`, signed by the tax body and sealed to
  that body's box key;
* ``STATE/mappings/<request_id>.parquet`` (mode 0600): the mapping, which never leaves.

A request is issued once: a second run for the same request id is refused
(``already_issued``) unless ``force``, which draws a new list and replaces the mapping
(lists sent before become useless: their random IDs no longer match the tax body's).

Example::

    key, trust = load_party("tax-body.key", "trust.json", "nce-root.pub", "state/")
    issued = issue_lists("REQUEST.json", trust=trust, key=key, register="TAX.parquet",
                         state_dir="state/", out_dir="out/")
    issued.entities, issued.files
"""

from __future__ import annotations

import datetime as dt
import os
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sample_protocol import _atomic
from sample_protocol.catalogue import get_source
from sample_protocol.envelope import seal
from sample_protocol.errors import CatalogueError
from sample_protocol.keys import SecretKey
from sample_protocol.records import RandomIdList, is_random_id, new_random_ids, new_record_id
from sample_protocol.trust import Role, TrustRoot

from .errors import RuntimeInputError, RuntimeRefused
from .extract import read_extract
from .sample_round import (
    LIST_KIND,
    RID_COLUMN,
    audit_scope,
    list_file_name,
    mapping_path,
    require_recipient,
    verify_request,
)

__all__ = [
    "NULL_STRATUM",
    "IssuedLists",
    "allocate",
    "draw_sample",
    "issue_lists",
    "read_mapping",
]

#: The stratum of entities whose stratification field is empty.
NULL_STRATUM = "<null>"
_STRATIFY_DTYPES = ("bool", "category", "string")
_DIR_MODE = 0o700
_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class IssuedLists:
    """What :func:`issue_lists` did."""

    request_id: str
    list_id: str
    issued_by: str
    entities: int
    register_rows: int
    recipients: tuple[str, ...]
    files: tuple[Path, ...]
    mapping: Path
    stratify: str | None
    strata: dict[str, int]
    replaced: bool

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (paths as strings)."""
        return {
            "request_id": self.request_id,
            "list_id": self.list_id,
            "issued_by": self.issued_by,
            "entities": self.entities,
            "register_rows": self.register_rows,
            "recipients": list(self.recipients),
            "files": [str(p) for p in self.files],
            "mapping": str(self.mapping),
            "stratify": self.stratify,
            "strata": dict(self.strata),
            "replaced": self.replaced,
        }


# -- drawing ----------------------------------------------------------------------------


def allocate(counts: Sequence[int], size: int, rng: random.Random | None = None) -> list[int]:
    """Proportional allocation of ``size`` draws over strata of ``counts`` entities.

    Each stratum gets the floor of its share; the remaining draws go to the largest
    remainders (ties broken at random). No stratum gets more than it holds.

    >>> allocate([50, 30, 20], 10)
    [5, 3, 2]
    """
    total = sum(counts)
    if size > total or size < 0:
        raise RuntimeInputError(
            f"allocate: expected 0 <= size <= {total}, found {size}", code="bad_size"
        )
    if total == 0:
        return [0] * len(counts)
    rng = rng or secrets.SystemRandom()
    quotas = [size * c // total for c in counts]
    rests = [(size * c) % total for c in counts]
    left = size - sum(quotas)
    order = sorted(range(len(counts)), key=lambda i: (-rests[i], rng.random()))
    for i in order[:left]:
        quotas[i] += 1
    return quotas


def draw_sample(
    n: int,
    size: int,
    *,
    strata: Sequence[str] | None = None,
    rng: random.Random | None = None,
) -> np.ndarray:
    """Positions (0..n-1) of ``size`` distinct entities, drawn without replacement.

    With ``strata`` (one label per entity), each stratum is drawn in proportion to its
    size (:func:`allocate`). The positions come back in random order. ``rng`` defaults to
    :class:`secrets.SystemRandom` (the operating system's CSPRNG); pass another only in
    tests.
    """
    if size > n:
        raise RuntimeRefused(
            f"draw: the register has {n} entities, fewer than the {size} requested",
            code="register_too_small",
        )
    rng = rng or secrets.SystemRandom()
    if strata is None:
        picked = rng.sample(range(n), size)
    else:
        if len(strata) != n:
            raise RuntimeInputError(
                f"draw: expected one stratum per entity ({n}), found {len(strata)}",
                code="bad_strata",
            )
        groups: dict[str, list[int]] = {}
        for i, label in enumerate(strata):
            groups.setdefault(label, []).append(i)
        labels = sorted(groups)
        quotas = allocate([len(groups[s]) for s in labels], size, rng)
        picked = []
        for label, quota in zip(labels, quotas, strict=True):
            picked.extend(rng.sample(groups[label], quota))
        rng.shuffle(picked)
    return np.asarray(picked, dtype=np.int64)


def _strata_labels(column: pa.ChunkedArray | pa.Array) -> list[str]:
    labels = pc.cast(column, pa.string()).to_pylist()
    return [NULL_STRATUM if v is None else v for v in labels]


# -- issuing ----------------------------------------------------------------------------


def _check_stratify(stratify: str) -> None:
    spec = get_source("TAX")
    try:
        fs = spec.field(stratify)
    except CatalogueError:
        raise RuntimeInputError(
            f"--stratify {stratify!r}: not a field of the TAX source; expected one of the "
            f"categorical fields: "
            + ", ".join(f.name for f in spec.fields if f.dtype in _STRATIFY_DTYPES),
            code="bad_stratify",
        ) from None
    if fs.dtype not in _STRATIFY_DTYPES or fs.direct_identifier:
        raise RuntimeInputError(
            f"--stratify {stratify!r}: expected a categorical TAX field (bool, category or "
            f"string, not a direct identifier), found a {fs.dtype} field",
            code="bad_stratify",
        )


def _write_mapping(path: Path, table: pa.Table, request_id: str, list_id: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, _DIR_MODE)
    meta = {b"request_id": request_id.encode(), b"list_id": list_id.encode()}
    table = table.replace_schema_metadata(meta)
    with _atomic.atomic_path(path, mode=_FILE_MODE) as tmp:
        pq.write_table(table, tmp)


def read_mapping(state_dir: str | os.PathLike[str], request_id: str) -> pa.Table:
    """The tax body's mapping of a request: ``bin``, ``rid`` (and ``stratum`` if any)."""
    path = mapping_path(state_dir, request_id)
    if not path.is_file():
        raise RuntimeInputError(
            f"mapping {path}: not found; no list was issued for request {request_id!r} here",
            code="missing_mapping",
        )
    return pq.read_table(path)


def issue_lists(
    request_path: str | os.PathLike[str],
    *,
    trust: TrustRoot,
    key: SecretKey,
    register: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    stratify: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> IssuedLists:
    """Verify the request, draw the list, seal one copy per recipient, keep the mapping.

    Nothing is written unless every check passed; the action (or its refusal) is logged in
    ``STATE/audit.log``. Refusals (exit 3): a request not signed by the lab, a key that is
    not the tax body's, a request already issued (``already_issued``), a register with
    fewer entities than asked (``register_too_small``), an untrusted recipient.
    """
    say = progress or (lambda _m: None)
    state = Path(state_dir)
    out = Path(out_dir)
    with audit_scope(state, key.name, "random_id_list_issued", str(request_path)) as scope:
        verified = verify_request(request_path, trust)
        request = verified.request
        scope.subject = request.request_id
        say(f"request {request.request_id}: signed by {verified.signer.name}, verified")
        trust.require_signer(key.key_id, roles={Role.TAX_BODY}, source="TAX")
        mapping_file = mapping_path(state, request.request_id)
        replaced = mapping_file.exists()
        if replaced and not force:
            raise RuntimeRefused(
                f"request {request.request_id}: a list was already issued (mapping "
                f"{mapping_file}); issuing twice would give the bodies different random IDs. "
                "Pass --force to draw a new list and replace it",
                code="already_issued",
            )
        names = tuple(dict.fromkeys((*request.recipients, key.name)))
        parties = [require_recipient(trust, n, what=f"request {request.request_id}") for n in names]
        if stratify is not None:
            _check_stratify(stratify)

        extract = read_extract(register, "TAX", fields=[stratify] if stratify else [])
        n = extract.rows_read
        say(f"register {extract.path}: {n:,} entities checked")
        if request.sample_size > n:
            raise RuntimeRefused(
                f"request {request.request_id}: asks for {request.sample_size:,} entities but "
                f"the register {extract.path} holds only {n:,}",
                code="register_too_small",
            )
        labels = _strata_labels(extract.table.column(stratify)) if stratify else None
        picked = draw_sample(n, request.sample_size, strata=labels)
        bins = extract.table.column("bin").take(pa.array(picked)).to_pylist()
        rids = new_random_ids(len(bins))
        if not all(is_random_id(r) for r in rids):  # pragma: no cover - guaranteed upstream
            raise RuntimeRefused("random IDs: a malformed ID was drawn", code="bad_random_id")
        strata: dict[str, int] = {}
        if labels is not None:
            for i in picked.tolist():
                strata[labels[i]] = strata.get(labels[i], 0) + 1
        say(f"drew {len(bins):,} entities" + (f" in {len(strata)} strata" if strata else ""))

        list_id = new_record_id("list")
        issued_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
        blobs: dict[Path, bytes] = {}
        for party in parties:
            record = RandomIdList(
                list_id=list_id,
                request_id=request.request_id,
                issued_by=key.name,
                recipient=party.name,
                issued_at=issued_at,
                identifiers=tuple(bins),
                random_ids=rids,
            )
            record.validate()
            meta = {"request_id": request.request_id, "list_id": list_id}
            blob = seal(
                record.canonical_bytes(), sender=key, recipient=party.key, kind=LIST_KIND, meta=meta
            )
            blobs[out / list_file_name(party.name)] = blob

        columns: dict[str, object] = {"bin": bins, RID_COLUMN: list(rids)}
        if labels is not None:
            columns["stratum"] = [labels[i] for i in picked.tolist()]
        mapping = pa.table(columns)
        written: list[Path] = []
        try:
            for path, blob in blobs.items():
                _atomic.write_bytes(path, blob, mode=_FILE_MODE)
                written.append(path)
            _write_mapping(mapping_file, mapping, request.request_id, list_id)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        for path in written:
            say(f"wrote {path}")
        result = IssuedLists(
            request_id=request.request_id,
            list_id=list_id,
            issued_by=key.name,
            entities=len(bins),
            register_rows=n,
            recipients=tuple(p.name for p in parties),
            files=tuple(written),
            mapping=mapping_file,
            stratify=stratify,
            strata=strata,
            replaced=replaced,
        )
        scope.log.append(
            scope.action,
            request.request_id,
            "ok",
            {
                "list_id": list_id,
                "entities": len(bins),
                "register_rows": n,
                "recipients": ",".join(result.recipients),
                "stratify": stratify or "",
                "replaced": replaced,
                "request_sha256": verified.sha256,
            },
        )
    return result
