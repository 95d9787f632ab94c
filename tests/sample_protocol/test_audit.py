"""Tests for sample_protocol.audit: the hash-chained audit log."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.audit import (
    GENESIS,
    MAX_DETAIL_BYTES,
    AuditEntry,
    AuditLog,
    AuditVerification,
    verify_log,
)
from sample_protocol.errors import AuditLogError, ValidationError

T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def fixed_clock() -> dt.datetime:
    return T0


def make_log(path: Path, n: int, actor: str = "tax-body") -> AuditLog:
    log = AuditLog(path, actor, clock=fixed_clock)
    for i in range(n):
        outcome = "refused" if i % 3 == 2 else "ok"
        log.append("batch_scored", f"batch-{i}.parquet", outcome, {"rows": i, "n": "é"})
    return log


def reported_line(exc: AuditLogError) -> int:
    match = re.search(r" line (\d+): ", str(exc))
    assert match, f"no line number in {exc}"
    return int(match.group(1))


# -- happy path ---------------------------------------------------------------------


def test_append_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "state" / "audit.log"  # the directory is created
    log = AuditLog(path, "tax-body", clock=fixed_clock)
    assert not path.exists()
    first = log.append("sample_prepared", "sample-1", details={"rows": 10, "sealed": True})
    second = log.append("release_verified", "r-7", "refused", {"reason": "expired"})
    assert first.seq == 0 and first.prev == GENESIS
    assert first.details == {"rows": "10", "sealed": "true"}
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert second.seq == 1
    assert second.prev == hashlib.sha256(lines[0]).hexdigest()
    assert lines[1] == second.canonical_bytes()
    result = log.verify()
    assert result == AuditVerification(entries=2, head=hashlib.sha256(lines[1]).hexdigest())
    assert log.head() == result.head
    assert verify_log(path) == result
    assert list(log.entries()) == [first, second]
    assert first.time == T0 and first.actor == "tax-body"


def test_entry_round_trip(tmp_path: Path) -> None:
    entry = make_log(tmp_path / "a.log", 1).entries().__next__()
    assert AuditEntry.from_json(entry.to_json()) == entry
    result = AuditVerification(entries=3, head="ab" * 32)
    assert AuditVerification.from_json(result.to_json()) == result
    with pytest.raises(ValidationError) as err:
        AuditVerification.from_json('{"entries": 1, "head": "XYZ"}')
    assert "'XYZ'" in str(err.value)


def test_empty_log_verifies_with_genesis_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    log = AuditLog(path, "register")
    assert log.verify() == AuditVerification(entries=0, head=GENESIS)
    assert log.head() == GENESIS
    assert list(log.entries()) == []


def test_time_is_stored_in_utc(tmp_path: Path) -> None:
    almaty = dt.timezone(dt.timedelta(hours=5))
    log = AuditLog(
        tmp_path / "a.log", "lab", clock=lambda: dt.datetime(2026, 1, 1, 12, tzinfo=almaty)
    )
    entry = log.append("release_built", "r-1")
    assert entry.time == dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)
    assert entry.time.utcoffset() == dt.timedelta(0)
    assert '"time":"2026-01-01T07:00:00+00:00"' in (tmp_path / "a.log").read_text()


def test_default_clock_is_aware(tmp_path: Path) -> None:
    entry = AuditLog(tmp_path / "a.log", "lab").append("x", "y")
    assert entry.time.tzinfo is not None and entry.time.utcoffset() == dt.timedelta(0)


# -- unhappy paths of append ---------------------------------------------------------


def test_missing_log_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.log"
    with pytest.raises(AuditLogError) as err:
        verify_log(path)
    assert err.value.code == "audit_missing"
    assert str(path) in str(err.value)
    with pytest.raises(AuditLogError):
        list(AuditLog(path, "lab").entries())


def test_details_are_checked(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.log", "lab")
    with pytest.raises(ValidationError) as err:
        log.append("x", "y", details={"blob": "a" * (MAX_DETAIL_BYTES + 1)})
    assert err.value.code == "audit_bad_details"
    assert "'blob'" in str(err.value) and str(MAX_DETAIL_BYTES) in str(err.value)
    with pytest.raises(ValidationError) as err:
        log.append("x", "y", details={"key": b"\x00secret"})
    assert err.value.code == "audit_bad_details" and "bytes" in str(err.value)
    assert "secret" not in str(err.value)  # the value is never echoed
    with pytest.raises(ValidationError) as err:
        log.append("x", "y", details={"": "v"})
    assert err.value.code == "audit_bad_details"
    assert not (tmp_path / "a.log").exists()  # nothing was written


def test_bad_outcome_and_actor(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as err:
        AuditLog(tmp_path / "a.log", "lab").append("x", "y", outcome="maybe")
    assert "outcome" in str(err.value) and "'maybe'" in str(err.value)
    with pytest.raises(ValidationError) as err:
        AuditLog(tmp_path / "a.log", "")
    assert "actor" in str(err.value)
    with pytest.raises(ValidationError) as err:
        AuditLog(tmp_path / "b.log", "lab", clock=lambda: dt.datetime(2026, 1, 1)).append("x", "y")
    assert "naive" in str(err.value)
    assert verify_log(tmp_path / "a.log").entries == 0  # the refused append left no line


def test_truncated_last_line_is_detected_and_not_chained_onto(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = make_log(path, 5)
    data = path.read_bytes()
    path.write_bytes(data[:-20])  # killed mid-write
    with pytest.raises(AuditLogError) as err:
        log.verify()
    assert err.value.code == "audit_truncated"
    assert reported_line(err.value) == 5
    assert str(path) in str(err.value)
    with pytest.raises(AuditLogError) as err:
        log.append("x", "y")
    assert err.value.code == "audit_truncated" and "cannot append" in str(err.value)
    with pytest.raises(AuditLogError):
        log.head()
    assert path.read_bytes() == data[:-20]  # append wrote nothing


def test_missing_final_newline_only(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 3)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(AuditLogError) as err:
        verify_log(path)
    assert err.value.code == "audit_truncated" and reported_line(err.value) == 3


def test_append_refuses_unparsable_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = make_log(path, 2)
    with path.open("ab") as fh:
        fh.write(b"{not json}\n")
    with pytest.raises(AuditLogError) as err:
        log.append("x", "y")
    assert err.value.code == "audit_unparsable" and "cannot append" in str(err.value)
    with pytest.raises(AuditLogError) as err:
        log.verify()
    assert err.value.code == "audit_unparsable" and reported_line(err.value) == 3


def test_long_last_line_is_found(tmp_path: Path) -> None:
    """The backwards search for the last line crosses read-chunk boundaries."""
    path = tmp_path / "audit.log"
    log = AuditLog(path, "lab")
    log.append("a", "b", details={f"k{i}": "x" * 4000 for i in range(5)})
    log.append("a", "c", details={f"k{i}": "y" * 4000 for i in range(5)})
    entry = log.append("a", "d")
    assert entry.seq == 2
    assert log.verify().entries == 3


# -- pinpointing the first broken line ----------------------------------------------


def test_prev_mismatch_message(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 4)
    lines = path.read_bytes().split(b"\n")
    record = json.loads(lines[1])
    record["subject"] = "forged"
    lines[1] = AuditEntry.from_dict(record).canonical_bytes()
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditLogError) as err:
        verify_log(path)
    assert err.value.code == "audit_prev_mismatch"
    assert f"{path} line 3: prev hash does not match line 2 (expected " in str(err.value)


def test_non_canonical_line_is_reported_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 3)
    lines = path.read_bytes().split(b"\n")
    lines[0] = json.dumps(json.loads(lines[0]), indent=1).replace("\n", "").encode()
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(AuditLogError) as err:
        verify_log(path)
    assert err.value.code == "audit_unparsable" and reported_line(err.value) == 1


def test_first_line_must_start_from_genesis(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    make_log(path, 1)
    record = json.loads(path.read_bytes())
    record["prev"] = "1" * 64
    path.write_bytes(AuditEntry.from_dict(record).canonical_bytes() + b"\n")
    with pytest.raises(AuditLogError) as err:
        verify_log(path)
    assert err.value.code == "audit_prev_mismatch" and "64 zeros" in str(err.value)


def test_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = make_log(path, 3)
    anchor = log.verify()
    log.append("later", "z")
    assert log.verify(anchor=anchor).entries == 4  # the log still extends the anchor
    # cut the last two lines: the chain alone is fine, the anchor is not
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:2]))
    assert log.verify().entries == 2
    with pytest.raises(AuditLogError) as err:
        log.verify(anchor=anchor)
    assert err.value.code == "audit_anchor_mismatch" and "only 2" in str(err.value)
    with pytest.raises(AuditLogError) as err:
        log.verify(anchor=AuditVerification(entries=0, head="f" * 64))
    assert err.value.code == "audit_anchor_mismatch"


def _first_difference(a: list[bytes], b: list[bytes]) -> int:
    """1-based number of the first line where ``b`` differs from ``a``."""
    for i, (x, y) in enumerate(zip(a, b, strict=False), start=1):
        if x != y:
            return i
    return min(len(a), len(b)) + 1


TAMPER = st.sampled_from(["flip", "delete", "swap", "insert_copy", "insert_junk"])
N_LINES = 6


@settings(max_examples=60, deadline=None)
@given(kind=TAMPER, data=st.data())
def test_any_tamper_is_detected_at_the_first_broken_line(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("log") / "audit.log"
    log = make_log(path, N_LINES)
    anchor = log.verify()
    original = path.read_bytes().splitlines(keepends=True)
    lines = list(original)
    i = data.draw(st.integers(0, N_LINES - 1), label="line index")
    if kind == "flip":
        pos = data.draw(st.integers(0, len(lines[i]) - 1), label="byte")
        delta = data.draw(st.integers(1, 255), label="delta")
        raw = bytearray(lines[i])
        raw[pos] = (raw[pos] + delta) % 256
        lines[i] = bytes(raw)
    elif kind == "delete":
        del lines[i]
    elif kind == "swap":
        j = data.draw(st.integers(0, N_LINES - 1).filter(lambda j: j != i), label="other")
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "insert_copy":
        j = data.draw(st.integers(0, N_LINES - 1), label="copied")
        lines.insert(i, original[j])
    else:
        junk = data.draw(st.binary(min_size=1, max_size=40), label="junk")
        lines.insert(i, junk + b"\n")
    tampered = b"".join(lines)
    assert tampered != b"".join(original)
    path.write_bytes(tampered)
    first_diff = _first_difference(b"".join(original).split(b"\n"), tampered.split(b"\n"))

    try:
        verify_log(path)
    except AuditLogError as exc:
        # never blamed on a line that is intact and chained, at most one line late
        assert first_diff <= reported_line(exc) <= first_diff + 1, (exc, first_diff)
        return
    # The chain alone cannot see a change confined to the end of the log: the last
    # line edited into another valid entry, or the last line deleted.
    assert first_diff >= N_LINES
    with pytest.raises(AuditLogError) as err:
        verify_log(path, anchor=anchor)
    assert err.value.code == "audit_anchor_mismatch"


# -- several processes appending ----------------------------------------------------


def _append_many(path: str, actor: str, n: int) -> None:
    log = AuditLog(path, actor)
    for i in range(n):
        log.append("batch_scored", f"{actor}-{i}", details={"i": i})


def test_concurrent_appends_from_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), name, 100)) for name in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    result = verify_log(path)
    assert result.entries == 200
    entries = list(AuditLog(path, "x").entries())
    assert [e.seq for e in entries] == list(range(200))
    for actor in "ab":  # each process's own entries are complete and in its order
        subjects = [e.subject for e in entries if e.actor == actor]
        assert subjects == [f"{actor}-{i}" for i in range(100)]
