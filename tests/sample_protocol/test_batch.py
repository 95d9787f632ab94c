"""Tests of sample_protocol.batch: the preliminary-index batch, written and opened.

Real keys, a real trust root, real Parquet files and real sealed envelopes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sample_protocol.batch import (
    BATCH_DATA_FILE,
    BATCH_PAYLOAD_KIND,
    BATCH_SCHEMA,
    BATCH_SEALED_FILE,
    BATCH_SIGNATURE_NAME,
    BatchError,
    BatchWriter,
    open_batch,
)
from sample_protocol.envelope import open_file
from sample_protocol.errors import ValidationError
from sample_protocol.identifier_gen import random_bins, random_iins
from sample_protocol.keys import SecretKey, generate_keypair
from sample_protocol.records import BATCH_COLUMNS, MANIFEST_NAME, BatchManifest, sha256_file
from sample_protocol.signing import sign_file
from sample_protocol.trust import Party, Role, TrustRoot, new_trust_root

AS_OF = dt.date(2026, 10, 1)
RELEASE = "rel1-20261123-abcdefghijklmnop"
NOW = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
INDEXES = ("conscientiousness", "payment_discipline")


@dataclasses.dataclass
class Keys:
    root: SecretKey
    lab: SecretKey
    tax: SecretKey
    stats: SecretKey
    register: SecretKey
    rogue: SecretKey
    trust: TrustRoot


@pytest.fixture(scope="module")
def keys() -> Keys:
    root, lab, tax, stats, register, rogue = (
        generate_keypair(n)
        for n in ("nce-root", "nce-lab", "tax-body", "stats-body", "register", "rogue")
    )
    trust = new_trust_root(
        root,
        [
            Party("nce-lab", Role.LAB, (), lab.public),
            Party("tax-body", Role.TAX_BODY, ("TAX",), tax.public),
            Party("stats-body", Role.BODY, ("STATS",), stats.public),
            Party("register", Role.REGISTER, (), register.public),
        ],
    )
    return Keys(root, lab, tax, stats, register, rogue, trust)


def bins(n: int, seed: int = 1) -> list[str]:
    return [str(b) for b in random_bins(np.random.default_rng(seed), n)]


def rows(
    identifiers: list[str],
    *,
    source: str = "TAX",
    release_id: str = RELEASE,
    as_of: dt.date = AS_OF,
    seed: int = 0,
) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(identifiers) * len(INDEXES)
    p = np.round(rng.uniform(0, 1, n), 4)
    return pa.table(
        {
            "bin": [b for index in INDEXES for b in identifiers],
            "source": [source] * n,
            "index": [index for index in INDEXES for _ in identifiers],
            "value": pa.array(np.clip((p * 100).astype(np.int8), 1, 99), pa.int8()),
            "category": [("low", "medium", "high")[int(v * 3)] for v in p],
            "probability": p,
            "release_id": [release_id] * n,
            "as_of": pa.array([as_of] * n, pa.date32()),
        },
        schema=BATCH_SCHEMA,
    )


def write(
    out: Path, table: pa.Table, key: SecretKey, *, source: str = "TAX", **kw: object
) -> BatchManifest:
    with BatchWriter(
        out, body_key=key, source=source, release_id=RELEASE, as_of=AS_OF, now=NOW, **kw
    ) as writer:
        for batch in table.to_batches(max_chunksize=7):
            writer.write(batch)
    return writer.manifest


def refused(code: str, fn: Callable[..., object], *args: object, **kw: object) -> BatchError:
    with pytest.raises(BatchError) as err:
        fn(*args, **kw)
    assert err.value.code == code, str(err.value)
    assert err.value.exit_code == 3
    return err.value


@pytest.fixture(scope="module")
def plain(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batches") / "plain"
    write(out, rows(bins(20)), keys.tax)
    return out


def copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


# --------------------------------------------------------------------------- writing


def test_write_then_open(keys: Keys, plain: Path) -> None:
    assert sorted(os.listdir(plain)) == [BATCH_DATA_FILE, MANIFEST_NAME, BATCH_SIGNATURE_NAME]
    opened = open_batch(plain, trust=keys.trust, now=NOW)
    m = opened.manifest
    assert opened.signer == "tax-body" == m.body
    assert m.batch_id.startswith("bat-20261124-") and len(m.batch_id) == len("bat-20261124-") + 16
    assert (m.source, m.release_id, m.as_of, m.row_count) == ("TAX", RELEASE, AS_OF, 40)
    assert m.columns == BATCH_COLUMNS and m.file == BATCH_DATA_FILE and not m.sealed
    assert opened.table.schema.equals(BATCH_SCHEMA)
    assert opened.table.equals(rows(bins(20)))
    assert "batch_id:" + m.batch_id in (plain / BATCH_SIGNATURE_NAME).read_text()


def test_sealed_batch_opens_for_the_register_only(keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "sealed"
    m = write(out, rows(bins(10)), keys.tax, seal_to=keys.register.public)
    assert m.sealed and m.file == BATCH_SEALED_FILE
    assert sorted(os.listdir(out)) == [BATCH_SEALED_FILE, MANIFEST_NAME, BATCH_SIGNATURE_NAME]
    opened = open_batch(out, trust=keys.trust, recipient=keys.register, now=NOW)
    assert opened.table.equals(rows(bins(10)))
    with pytest.raises(ValidationError) as err:
        open_batch(out, trust=keys.trust, now=NOW)
    assert err.value.code == "batch_recipient_required"
    refused("batch_envelope", open_batch, out, trust=keys.trust, recipient=keys.lab, now=NOW)
    envelope = open_file(
        out / BATCH_SEALED_FILE,
        None,
        recipient=keys.register,
        senders=[keys.tax.public],
        expected_kind=BATCH_PAYLOAD_KIND,
    )
    assert envelope.meta["batch_id"] == m.batch_id and envelope.sender == "tax-body"


def test_sealed_by_another_body_is_refused(keys: Keys, tmp_path: Path) -> None:
    """The envelope must come from the body that signed the manifest."""
    out = tmp_path / "sealed"
    write(out, rows(bins(5)), keys.tax, seal_to=keys.register.public)
    other = tmp_path / "other"
    write(
        other,
        rows(bins(5), source="STATS"),
        keys.stats,
        source="STATS",
        seal_to=keys.register.public,
    )
    shutil.copy(other / BATCH_SEALED_FILE, out / BATCH_SEALED_FILE)
    manifest = json.loads((out / MANIFEST_NAME).read_bytes())
    manifest["sha256"] = sha256_file(out / BATCH_SEALED_FILE)
    (out / MANIFEST_NAME).write_bytes(BatchManifest.from_dict(manifest).canonical_bytes())
    sign_file(out / MANIFEST_NAME, keys.tax)
    refused("batch_envelope", open_batch, out, trust=keys.trust, recipient=keys.register, now=NOW)


def test_existing_output_is_never_overwritten(keys: Keys, plain: Path, tmp_path: Path) -> None:
    refused("batch_exists", write, plain, rows(bins(3)), keys.tax)
    assert open_batch(plain, trust=keys.trust, now=NOW).manifest.row_count == 40
    (tmp_path / "file").write_text("x")
    refused("batch_exists", write, tmp_path / "file", rows(bins(3)), keys.tax)


def test_exception_inside_leaves_nothing(keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with (
        pytest.raises(RuntimeError),
        BatchWriter(
            out, body_key=keys.tax, source="TAX", release_id=RELEASE, as_of=AS_OF
        ) as writer,
    ):
        writer.write(rows(bins(3)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _bad(table: pa.Table, column: str, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[3] = value
    return table.set_column(
        table.schema.get_field_index(column),
        BATCH_SCHEMA.field(column),
        pa.array(values, BATCH_SCHEMA.field(column).type),
    )


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("bin", "123456789012", "batch_values"),
        ("bin", bins(1)[0] + "0", "batch_values"),
        ("source", "STATS", "batch_values"),
        ("index", "size", "batch_values"),
        ("value", 0, "batch_values"),
        ("value", 100, "batch_values"),
        ("category", "extreme", "batch_values"),
        ("probability", 1.5, "batch_values"),
        ("probability", 0.123456, "batch_values"),
        ("probability", float("nan"), "batch_values"),
        ("release_id", "rel2-other", "batch_values"),
        ("as_of", dt.date(2026, 1, 1), "batch_values"),
    ],
)
def test_writer_refuses_rows_outside_the_contract(
    keys: Keys, tmp_path: Path, column: str, value: object, code: str
) -> None:
    out = tmp_path / "b"
    err = refused(code, write, out, _bad(rows(bins(5)), column, value), keys.tax)
    assert repr(column) in str(err) and "row 4" in str(err)
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_another_schema(keys: Keys, tmp_path: Path) -> None:
    table = rows(bins(3))
    for changed in (
        table.append_column("iin", pa.array(["x"] * table.num_rows)),
        table.drop_columns(["probability"]),
        table.set_column(3, "value", table.column("value").cast(pa.int64())),
        table.select(list(reversed(table.column_names))),
    ):
        refused("batch_schema", write, tmp_path / "b", changed, keys.tax)
    nulls = table.set_column(0, "bin", pa.array([None] * table.num_rows, pa.string()))
    refused("batch_values", write, tmp_path / "b", nulls, keys.tax)
    assert list(tmp_path.iterdir()) == []


def test_writer_arguments_checked(keys: Keys, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        BatchWriter(
            tmp_path / "b", body_key=keys.tax, source="tax", release_id=RELEASE, as_of=AS_OF
        )
    with pytest.raises(ValidationError):
        BatchWriter(tmp_path / "b", body_key=keys.tax, source="TAX", release_id=RELEASE, as_of=NOW)
    writer = BatchWriter(
        tmp_path / "b", body_key=keys.tax, source="TAX", release_id=RELEASE, as_of=AS_OF
    )
    with pytest.raises(ValidationError):
        writer.write(rows(bins(1)))
    with pytest.raises(ValidationError):
        _ = writer.manifest


# --------------------------------------------------------------------------- opening


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from([BATCH_DATA_FILE, MANIFEST_NAME, BATCH_SIGNATURE_NAME]),
    position=st.integers(min_value=0, max_value=10**6),
)
def test_any_flipped_byte_is_refused(
    keys: Keys, plain: Path, tmp_path: Path, name: str, position: int
) -> None:
    target = tmp_path / "flip"
    shutil.rmtree(target, ignore_errors=True)  # hypothesis reuses tmp_path between examples
    copy(plain, target)
    data = (target / name).read_bytes()
    if name == BATCH_SIGNATURE_NAME:  # its first line, the untrusted comment, is not signed
        start = data.index(b"\n") + 1
        position = start + position % (len(data) - start)
    _flip(target / name, position)
    with pytest.raises(BatchError) as err:
        open_batch(target, trust=keys.trust, now=NOW)
    assert err.value.code in {"batch_signature", "batch_hash", "batch_manifest", "batch_signer"}


def test_flipped_byte_in_sealed_data_refused(keys: Keys, tmp_path: Path) -> None:
    out = tmp_path / "s"
    write(out, rows(bins(5)), keys.tax, seal_to=keys.register.public)
    _flip(out / BATCH_SEALED_FILE, 100)
    refused("batch_hash", open_batch, out, trust=keys.trust, recipient=keys.register, now=NOW)


def _resign(out: Path, key: SecretKey, **changes: object) -> None:
    manifest = json.loads((out / MANIFEST_NAME).read_bytes())
    manifest.update(changes)
    (out / MANIFEST_NAME).write_bytes(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    )
    sign_file(out / MANIFEST_NAME, key)


def test_signers(keys: Keys, plain: Path, tmp_path: Path) -> None:
    rogue = copy(plain, tmp_path / "rogue")
    _resign(rogue, keys.rogue)
    refused("batch_signer", open_batch, rogue, trust=keys.trust, now=NOW)
    lab = copy(plain, tmp_path / "lab")
    _resign(lab, keys.lab, body="nce-lab")
    refused("batch_signer", open_batch, lab, trust=keys.trust, now=NOW)
    other = copy(plain, tmp_path / "other")
    _resign(other, keys.stats)  # a good signature, but by a body the manifest does not name
    refused("batch_manifest", open_batch, other, trust=keys.trust, now=NOW)
    wrong_source = copy(plain, tmp_path / "wrong-source")
    _resign(wrong_source, keys.stats, body="stats-body")  # STATS body sending TAX indexes
    refused("batch_signer", open_batch, wrong_source, trust=keys.trust, now=NOW)
    revoked = keys.trust.revoke("tax-body", "key lost")
    refused("batch_signer", open_batch, plain, trust=revoked, now=NOW)


def test_manifest_checks(keys: Keys, plain: Path, tmp_path: Path) -> None:
    future = copy(plain, tmp_path / "future")
    _resign(future, keys.tax, created_at="2027-01-01T00:00:00+00:00")
    refused("batch_manifest", open_batch, future, trust=keys.trust, now=NOW)
    count = copy(plain, tmp_path / "count")
    _resign(count, keys.tax, row_count=39)
    refused("batch_row_count", open_batch, count, trust=keys.trust, now=NOW)
    sealed = copy(plain, tmp_path / "sealed-flag")
    _resign(sealed, keys.tax, sealed=True)
    refused("batch_manifest", open_batch, sealed, trust=keys.trust, now=NOW)
    garbage = copy(plain, tmp_path / "garbage")
    (garbage / MANIFEST_NAME).write_bytes(b'{"kind": "BatchManifest"}')
    sign_file(garbage / MANIFEST_NAME, keys.tax)
    refused("batch_manifest", open_batch, garbage, trust=keys.trust, now=NOW)
    columns = copy(plain, tmp_path / "columns")
    _resign(columns, keys.tax, release_id="rel2-other")
    refused("batch_values", open_batch, columns, trust=keys.trust, now=NOW)


def test_layout_checks(keys: Keys, plain: Path, tmp_path: Path) -> None:
    refused("batch_layout", open_batch, tmp_path / "none", trust=keys.trust, now=NOW)
    extra = copy(plain, tmp_path / "extra")
    (extra / "notes.txt").write_text("hi")
    refused("batch_layout", open_batch, extra, trust=keys.trust, now=NOW)
    link = copy(plain, tmp_path / "link")
    (link / BATCH_DATA_FILE).unlink()
    (link / BATCH_DATA_FILE).symlink_to(plain / BATCH_DATA_FILE)
    refused("batch_layout", open_batch, link, trust=keys.trust, now=NOW)
    missing = copy(plain, tmp_path / "missing")
    (missing / BATCH_SIGNATURE_NAME).unlink()
    refused("batch_layout", open_batch, missing, trust=keys.trust, now=NOW)
    refused("batch_layout", open_batch, plain, trust=keys.trust, now=NOW, max_bytes=10)
    (tmp_path / "afile").write_text("x")
    refused("batch_layout", open_batch, tmp_path / "afile", trust=keys.trust, now=NOW)


def _replace_data(out: Path, table: pa.Table, key: SecretKey) -> None:
    pq.write_table(table, out / BATCH_DATA_FILE)
    _resign(out, key, sha256=sha256_file(out / BATCH_DATA_FILE), row_count=table.num_rows)


def test_signed_but_bad_rows_refused(keys: Keys, plain: Path, tmp_path: Path) -> None:
    """A body's key signing rows outside the contract is still refused, row by row."""
    dup = copy(plain, tmp_path / "dup")
    table = rows(bins(5))
    _replace_data(dup, pa.concat_tables([table, table.slice(2, 1)]), keys.tax)
    err = refused("batch_duplicate", open_batch, dup, trust=keys.trust, now=NOW)
    assert "row 11" in str(err)
    extra = copy(plain, tmp_path / "extra-column")
    _replace_data(extra, table.append_column("name", pa.array(["x"] * table.num_rows)), keys.tax)
    refused("batch_schema", open_batch, extra, trust=keys.trust, now=NOW)
    precise = copy(plain, tmp_path / "precise")
    _replace_data(precise, _bad(table, "probability", 0.123456789), keys.tax)
    refused("batch_values", open_batch, precise, trust=keys.trust, now=NOW)
    not_parquet = copy(plain, tmp_path / "not-parquet")
    (not_parquet / BATCH_DATA_FILE).write_bytes(b"PAR1 not really")
    _resign(not_parquet, keys.tax, sha256=sha256_file(not_parquet / BATCH_DATA_FILE))
    refused("batch_schema", open_batch, not_parquet, trust=keys.trust, now=NOW)


def test_iins_are_valid_keys(keys: Keys, tmp_path: Path) -> None:
    iins = [str(i) for i in random_iins(np.random.default_rng(2), 6)]
    out = tmp_path / "iin"
    write(out, rows(iins), keys.tax)
    assert open_batch(out, trust=keys.trust, now=NOW).table.num_rows == 12


def test_batch_error_is_a_value_error() -> None:
    assert issubclass(BatchError, ValueError)
    assert BatchError("x").exit_code == 3
