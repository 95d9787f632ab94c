"""``sample_protocol.serde``: the fast paths of ``encode_value`` / ``to_dict`` give exactly
what the general rules give (the bytes that are hashed and signed must not move)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import SerdeError
from sample_protocol.serde import Record, canonical_json, encode_value


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    LOW = 1


class Pair(NamedTuple):
    a: int
    b: str


class Tags(tuple):  # a tuple subclass, as a caller might pass one
    __slots__ = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Leaf(Record):
    x: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Tree(Record):
    name: str
    leaves: tuple[Leaf, ...]
    meta: dict[str, Any]


def reference_encode(value: Any) -> Any:
    """``encode_value`` as it was before its fast paths (the general rules only)."""
    if isinstance(value, Record):
        out: dict[str, Any] = {"kind": value.kind()}
        for f in dataclasses.fields(value):  # type: ignore[arg-type]
            try:
                out[f.name] = reference_encode(getattr(value, f.name))
            except SerdeError as exc:
                raise SerdeError(f"{value.kind()}.{f.name}: {exc}") from None
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SerdeError(f"datetime {value!r}: expected a timezone-aware value, found naive")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [reference_encode(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): reference_encode(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise SerdeError(f"expected a finite number, found {value!r}")
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.dates(),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.sampled_from([Colour.RED, Level.LOW, True, False, 0, 1, -0.0, 1e16, 2.5e-7]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.lists(inner, max_size=3).map(Tags),
        st.tuples(st.integers(), st.text(max_size=3)).map(lambda t: Pair(*t)),
        st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3),
        st.dictionaries(st.text(max_size=3), inner, max_size=3).map(collections.OrderedDict),
        st.builds(Leaf, inner),
    ),
    max_leaves=12,
)


def _outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except SerdeError as exc:
        return "error", str(exc)


@settings(max_examples=400, deadline=None)
@given(values)
def test_encode_value_is_the_general_rules(value: Any) -> None:
    fast, reference = _outcome(encode_value, value), _outcome(reference_encode, value)
    assert fast == reference
    if fast[0] == "ok":
        assert [type(x) for x in _flatten(fast[1])] == [type(x) for x in _flatten(reference[1])]
        try:
            expected = canonical_json(reference[1])
        except SerdeError:
            return
        assert canonical_json(fast[1]) == expected


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, list):
        return [x for v in value for x in _flatten(v)]
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in (k, *_flatten(v))]
    return [value]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=5), st.lists(st.builds(Leaf, values), max_size=3), st.dictionaries(
    st.text(max_size=3), values, max_size=3))  # fmt: skip
def test_to_dict_is_the_general_rules(name: str, leaves: list[Leaf], meta: dict[str, Any]) -> None:
    tree = Tree(name, tuple(leaves), meta)
    assert _outcome(Tree.to_dict, tree) == _outcome(reference_encode, tree)


def test_errors_still_name_the_field() -> None:
    with pytest.raises(SerdeError, match=r"Tree\.leaves: Leaf\.x: expected a finite number"):
        Tree("t", (Leaf(math.nan),), {}).to_dict()
    with pytest.raises(SerdeError, match=r"Leaf\.x: datetime .* naive"):
        Leaf(dt.datetime(2026, 1, 1)).to_dict()
