"""Small vectorised helpers shared by the synthetic generators (numpy and pyarrow only)."""

from __future__ import annotations

import datetime as dt
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..catalogue import FieldSpec, SourceSpec

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
Bool = npt.NDArray[np.bool_]
Arr = npt.NDArray[Any]

EPOCH = dt.date(1970, 1, 1)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream for ``name`` (a source code, 'population'...).

    Each source draws from its own stream, so a source's table is the same whether it is
    generated alone or with others.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (Arrow's date32)."""
    return (day - EPOCH).days


def sigmoid(x: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-x))
    return out


def bern(rng: np.random.Generator, p: F64 | float, n: int | None = None) -> Bool:
    """Independent Bernoulli draws with probabilities ``p``."""
    size = n if n is not None else np.shape(p)
    out: Bool = rng.random(size) < p
    return out


def pois(rng: np.random.Generator, lam: F64) -> I64:
    """Poisson counts (rates clipped to a sane range)."""
    out: I64 = rng.poisson(np.clip(lam, 0.0, 1e6)).astype(np.int64)
    return out


def noisy(rng: np.random.Generator, signal: F64, reliability: float) -> F64:
    """``signal`` blurred so that its correlation with the result is ``reliability``."""
    noise = rng.standard_normal(signal.shape[0])
    out: F64 = reliability * signal + np.sqrt(1.0 - reliability**2) * noise
    return out


def lognormal(rng: np.random.Generator, mu: F64 | float, sigma: float, n: int) -> F64:
    out: F64 = np.exp(mu + sigma * rng.standard_normal(n))
    return out


def choice(rng: np.random.Generator, weights: Sequence[float] | F64, n: int) -> I64:
    """``n`` indices drawn with the given (unnormalised) weights."""
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    out: I64 = np.searchsorted(cdf, rng.random(n), side="right").astype(np.int64)
    return out


def round_kzt(x: F64) -> F64:
    """Amounts are whole tenge."""
    out: F64 = np.round(x)
    return out


# -- Arrow columns ----------------------------------------------------------------------


def date_col(days: Arr, missing: Bool | None = None) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32), type=pa.date32(), mask=missing)


def num_col(values: Arr, dtype: str, missing: Bool | None = None) -> pa.Array:
    np_type = np.int64 if dtype == "int64" else np.float64
    arrow = pa.int64() if dtype == "int64" else pa.float64()
    return pa.array(np.asarray(values, dtype=np_type), type=arrow, mask=missing)


def bool_col(values: Bool) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.bool_), type=pa.bool_())


def cat_col(codes: I64, categories: Sequence[str], missing: Bool | None = None) -> pa.Array:
    """Strings picked from ``categories`` by integer code (nulls where ``missing``)."""
    dictionary = pa.array(list(categories), type=pa.string())
    idx = pa.array(np.asarray(codes, dtype=np.int32), type=pa.int32(), mask=missing)
    return dictionary.take(idx)


def join(*parts: pa.Array | str) -> pa.Array:
    """Element-wise concatenation of string arrays and literals."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, "")


def int_str(values: Arr, width: int = 0) -> pa.Array:
    """Integers as decimal strings, left-padded with zeros to ``width``."""
    s = pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string())
    if width:
        s = pc.utf8_lpad(s, width=width, padding="0")
    return s


def with_nulls(arr: pa.Array, missing: Bool) -> pa.Array:
    """``arr`` with nulls where ``missing``."""
    return pc.if_else(pa.array(missing), pa.nulls(len(arr), arr.type), arr)


def build_table(spec: SourceSpec, key: pa.Array, columns: Mapping[str, pa.Array]) -> pa.Table:
    """The source's table in exactly its catalogue schema (key column ``bin``)."""
    schema = spec.arrow_schema()
    missing = [name for name in spec.field_names() if name not in columns]
    extra = sorted(set(columns) - set(spec.field_names()))
    if missing or extra:  # a generator bug, not a user error
        raise RuntimeError(
            f"{spec.code}: generator columns differ: missing {missing}, extra {extra}"
        )
    arrays = [key, *(_within_range(columns[f.name], f) for f in spec.fields)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _within_range(arr: pa.Array, field: FieldSpec) -> pa.Array:
    """A numeric column clipped to its contract's range: a heavy tail drawn for millions of
    entities must not give a value the contract (and so every body's checks) refuses."""
    if not (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type)):
        return arr
    if field.min_value is not None:
        arr = pc.max_element_wise(arr, pa.scalar(field.min_value).cast(arr.type), skip_nulls=False)
    if field.max_value is not None:
        arr = pc.min_element_wise(arr, pa.scalar(field.max_value).cast(arr.type), skip_nulls=False)
    return arr
