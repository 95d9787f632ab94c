"""Scan whole columns (Python sequences, numpy or Arrow arrays) for valid IINs and BINs.

Used by the depersonalisation checks on both sides of a sample: a body before a sample
leaves, the lab before it is ingested.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .errors import IdentifierError
from .identifiers import (
    _POW10,
    _valid_columns,
    _valid_rows,
    contains_identifier,
    is_valid_identifier,
)

__all__ = ["identifier_mask", "key_mask"]


def _scan_python(value: object) -> bool:
    if value is None or isinstance(value, bool):
        return False
    if isinstance(value, int | np.integer):
        v = abs(int(value))
        return is_valid_identifier(f"{v:012d}") if v < 10**12 else contains_identifier(str(v))
    if isinstance(value, float | np.floating):
        return bool(np.isfinite(value)) and _scan_python(int(value))
    return contains_identifier(value if isinstance(value, str) else str(value))


def _mask_numbers(values: npt.NDArray[Any], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    out = np.zeros(len(values), dtype=bool)
    if values.dtype.kind == "f":
        valid = valid & np.isfinite(values) & (np.abs(values) < 2.0**62)
        codes = np.abs(np.trunc(np.where(valid, values, 0.0))).astype(np.int64)
    else:
        codes = np.abs(values.astype(np.int64))
        valid = valid & (codes >= 0)  # abs() of the most negative int64 stays negative
    small = valid & (codes < 10**12)
    d = (codes[small, None] // _POW10) % 10
    out[small] = _valid_rows(d)
    for i in np.flatnonzero(valid & ~small):
        out[i] = contains_identifier(str(int(codes[i])))
    return out


def _twelve_digit_rows(
    arr: pa.Array,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64], npt.NDArray[np.int64], Any]:
    """``present``, byte ``lengths``, the rows of exactly 12 bytes and their digits.

    ``digits`` is an ``int16`` matrix ``[12, len(exact)]``, one row per position (values
    outside 0-9 where the byte is not a digit), or ``None`` when no row has 12 bytes.
    """
    n = len(arr)
    present = ~arr.is_null().to_numpy(zero_copy_only=False)
    off_type = np.int32 if pa.types.is_string(arr.type) else np.int64
    buffers = arr.buffers()
    raw_offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    offsets: npt.NDArray[np.int64] = raw_offsets.astype(np.int64)
    lengths = np.diff(offsets)  # in UTF-8 bytes: only all-ASCII values can be 12 digits
    exact = np.flatnonzero(present & (lengths == 12))
    if not exact.size:
        return present, lengths, exact, None
    data = np.frombuffer(buffers[2], dtype=np.uint8)
    starts = offsets[exact]
    if starts[-1] - starts[0] == 12 * (exact.size - 1):  # contiguous: no copy needed
        block = data[starts[0] : starts[0] + 12 * exact.size].reshape(-1, 12)
    else:
        block = data[starts[:, None] + np.arange(12)]
    digits = block.T.astype(np.int16, order="C")  # each position a contiguous row
    digits -= 48
    return present, lengths, exact, digits


def _all_digits(digits: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    # as unsigned, a byte below "0" is a large number: one comparison per row
    return np.asarray(digits.view(np.uint16).max(axis=0) <= 9)


def key_mask(arr: pa.Array, *, bins_only: bool = False) -> npt.NDArray[np.bool_]:
    """For each value of a text key column, whether it is exactly a valid IIN or BIN
    (12 digits, no spaces or other text); with ``bins_only``, a valid BIN.

    Nulls and values of any other length are ``False``.
    """
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    out = np.zeros(len(arr), dtype=bool)
    if len(arr) == 0 or arr.null_count == len(arr):
        return out
    _, _, exact, digits = _twelve_digit_rows(arr)
    if digits is not None:
        ok = _all_digits(digits) & _valid_columns(digits)
        if bins_only:
            ok &= (digits[4] >= 4) & (digits[4] <= 6)
        out[exact] = ok
    return out


def _mask_strings(arr: pa.Array) -> npt.NDArray[np.bool_]:
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    n = len(arr)
    out = np.zeros(n, dtype=bool)
    if n == 0 or arr.null_count == n:
        return out
    present, lengths, exact, digits = _twelve_digit_rows(arr)
    if digits is not None:
        out[exact] = _all_digits(digits) & _valid_columns(digits)
    longer = np.flatnonzero(present & (lengths > 12))
    if longer.size:
        sub = arr.take(pa.array(longer))
        runs = pc.match_substring_regex(sub, r"[0-9]{12}").to_numpy(zero_copy_only=False)
        texts = sub.filter(pa.array(runs)).to_pylist()
        out[longer[runs]] = [contains_identifier(t) for t in texts]
    return out


def _mask_arrow(arr: pa.Array) -> npt.NDArray[np.bool_]:
    t = arr.type
    if pa.types.is_dictionary(t):
        inner = _mask_arrow(arr.dictionary)
        idx = arr.indices.to_numpy(zero_copy_only=False)
        valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        return np.asarray(valid & inner[np.where(valid, idx, 0).astype(np.int64)])
    if pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view":
        return _mask_strings(arr)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        valid = ~arr.is_null().to_numpy(zero_copy_only=False)
        nums = arr if not pa.types.is_decimal(t) else arr.cast(pa.float64(), safe=False)
        raw = nums.fill_null(0).to_numpy(zero_copy_only=False)
        if pa.types.is_unsigned_integer(t):
            raw = np.minimum(raw, np.iinfo(np.int64).max).astype(np.int64)
        return _mask_numbers(raw, valid)
    if pa.types.is_boolean(t) or pa.types.is_temporal(t) or pa.types.is_null(t):
        return np.zeros(len(arr), dtype=bool)
    raise IdentifierError(
        f"identifier_mask: expected a text or numeric column, found Arrow type {t}",
        code="identifier_type",
    )


def identifier_mask(
    values: Sequence[object] | pa.Array | pa.ChunkedArray | npt.NDArray[Any],
) -> npt.NDArray[np.bool_]:
    """For each value, whether it holds a valid IIN or BIN (numpy bool array).

    Text is scanned like :func:`find_identifiers` (exact 12-digit values are checked with
    numpy; only values with a longer digit run go through Python). Integers and floats
    are read as their integer part, zero-padded to 12 digits, since a leading-zero IIN
    stored as a number loses its first digit. Nulls, booleans and dates are never
    identifiers; other Arrow types (binary, nested) raise ``identifier_type``.
    """
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return _mask_column(values)
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        numbers = values.astype(np.float64 if values.dtype.kind == "f" else np.int64)
        return _mask_numbers(numbers, np.ones(len(values), dtype=bool))
    try:
        return _mask_column(pa.array(values if isinstance(values, np.ndarray) else list(values)))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError, IdentifierError):
        return np.array([_scan_python(v) for v in values], dtype=bool)


def _mask_column(values: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    if isinstance(values, pa.ChunkedArray):
        parts = [_mask_arrow(c) for c in values.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    return _mask_arrow(values)
