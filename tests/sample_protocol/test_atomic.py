from __future__ import annotations

import os
import stat

import pytest

from sample_protocol._atomic import atomic_path, write_bytes, write_text


def test_write_bytes_creates_file_with_mode(tmp_path):
    dest = write_bytes(tmp_path / "sub" / "a.bin", b"abc", mode=0o600)
    assert dest.read_bytes() == b"abc"
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600


def test_write_text_replaces_existing(tmp_path):
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    write_text(dest, "new ✓")
    assert dest.read_text(encoding="utf-8") == "new ✓"


def test_failure_leaves_destination_untouched_and_no_temp_file(tmp_path):
    dest = tmp_path / "keep.txt"
    dest.write_text("original")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("writer crashed")
    assert dest.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_failure_creates_no_destination(tmp_path):
    dest = tmp_path / "new.parquet"
    with pytest.raises(ValueError), atomic_path(dest):
        raise ValueError("boom")
    assert list(tmp_path.iterdir()) == []
