"""The one serialisation module for every record that crosses a party boundary.

A record is a frozen dataclass that inherits :class:`Record`. Its JSON form is a flat
object of its fields plus ``"kind"`` (the class name), so that handing one kind of file
where another was expected fails with a clear message instead of a confusing one.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``datetime.date``,
``datetime.datetime`` (timezone-aware, ISO 8601), ``enum.Enum`` with string values,
``tuple[X, ...]``, ``dict[str, X]`` (and ``Mapping``), ``X | None``, and nested records.

JSON is canonical (sorted keys, no insignificant white space, UTF-8) so that the same
record always has the same bytes, and so the same hash and signature.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar, Union

from .errors import SerdeError

__all__ = ["Record", "canonical_json", "decode_value", "encode_value"]

T = TypeVar("T", bound="Record")


def canonical_json(obj: Any) -> bytes:
    """Serialise ``obj`` (already JSON-shaped) to canonical UTF-8 bytes.

    NaN and infinities have no JSON form: they raise :class:`SerdeError`.
    """
    try:
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN or infinity
        raise SerdeError(f"cannot write canonical JSON: {exc}") from None
    return text.encode("utf-8")


def _refuse_constant(name: str) -> Any:
    raise SerdeError(f"expected a finite number, found {name} (not valid JSON)")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise SerdeError(f"key {key!r} appears twice in one JSON object")
        out[key] = value
    return out


#: Types whose values are their own JSON form (exact types: subclasses such as
#: ``enum.StrEnum`` or ``bool`` members of an ``IntEnum`` take the general path below).
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
#: Field names of each record class, in declaration order (a class's fields never change).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def encode_value(value: Any) -> Any:
    """Turn a field value into its JSON-shaped form."""
    # Fast paths for the exact built-in types (most values); each gives what the general
    # chain below gives for the same value.
    tp = type(value)
    if tp in _PLAIN_TYPES:
        return value
    if tp is float:
        if not math.isfinite(value):
            raise SerdeError(f"expected a finite number, found {value!r}")
        return value
    if tp is tuple or tp is list:
        return [encode_value(v) for v in value]
    if tp is dict:
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise SerdeError(f"datetime {value!r}: expected a timezone-aware value, found naive")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [encode_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        raise SerdeError(f"expected a finite number, found {value!r}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def decode_value(tp: Any, raw: Any, where: str) -> Any:
    """Decode ``raw`` (from JSON) into type ``tp``; ``where`` names the field for errors."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return decode_value(inner[0], raw, where)
        for candidate in inner:
            try:
                return decode_value(candidate, raw, where)
            except SerdeError:
                continue
        raise SerdeError(f"{where}: expected one of {inner}, found {raw!r}")
    if tp is Any:
        return raw
    if origin is tuple:
        if not isinstance(raw, list):
            raise SerdeError(f"{where}: expected a list, found {type(raw).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(raw))
        if len(args) != len(raw):
            raise SerdeError(f"{where}: expected {len(args)} items, found {len(raw)}")
        pairs = enumerate(zip(args, raw, strict=True))
        return tuple(decode_value(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(raw, dict):
            raise SerdeError(f"{where}: expected an object, found {type(raw).__name__}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): decode_value(vt, v, f"{where}.{k}") for k, v in raw.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        if not isinstance(raw, dict):
            raise SerdeError(
                f"{where}: expected a {tp.__name__} object, found {type(raw).__name__}"
            )
        return tp.from_dict(raw, where=where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(raw)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise SerdeError(f"{where}: expected one of {allowed}, found {raw!r}") from None
    if tp is dt.datetime:
        if not isinstance(raw, str):
            raise SerdeError(f"{where}: expected an ISO 8601 date-time, found {raw!r}")
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise SerdeError(f"{where}: expected an ISO 8601 date-time, found {raw!r}") from None
        if value.tzinfo is None or value.utcoffset() is None:
            raise SerdeError(f"{where}: expected a date-time with a time zone, found {raw!r}")
        return value
    if tp is dt.date:
        if not isinstance(raw, str):
            raise SerdeError(f"{where}: expected an ISO date YYYY-MM-DD, found {raw!r}")
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            raise SerdeError(f"{where}: expected an ISO date YYYY-MM-DD, found {raw!r}") from None
    if tp is bool:
        if not isinstance(raw, bool):
            raise SerdeError(f"{where}: expected true or false, found {raw!r}")
        return raw
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise SerdeError(f"{where}: expected an integer, found {raw!r}")
        return raw
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise SerdeError(f"{where}: expected a number, found {raw!r}")
        try:
            number = float(raw)
        except OverflowError:
            raise SerdeError(f"{where}: expected a finite number, found {raw!r}") from None
        if not math.isfinite(number):  # json reads 1e400 as inf
            raise SerdeError(f"{where}: expected a finite number, found {raw!r}")
        return number
    if tp is str:
        if not isinstance(raw, str):
            raise SerdeError(f"{where}: expected a string, found {raw!r}")
        return raw
    raise SerdeError(f"{where}: cannot decode type {_type_name(tp)}")


class Record:
    """Mixin for frozen dataclasses that cross a party boundary.

    Subclasses may override :meth:`validate` to check invariants; it runs after
    decoding, and should raise :class:`~sample_protocol.errors.ValidationError`.
    """

    # Empty slots, so that ``@dataclass(slots=True)`` subclasses really have no __dict__.
    __slots__ = ()

    kind_name: ClassVar[str | None] = None  # defaults to the class name

    @classmethod
    def kind(cls) -> str:
        return cls.kind_name or cls.__name__

    def validate(self) -> None:
        """Check the record's invariants (override in subclasses)."""

    def to_dict(self) -> dict[str, Any]:
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            if not dataclasses.is_dataclass(self):
                raise TypeError(f"{type(self).__name__} must be a dataclass")
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        out: dict[str, Any] = {"kind": self.kind()}
        for name in names:
            try:
                out[name] = encode_value(getattr(self, name))
            except SerdeError as exc:
                raise SerdeError(f"{self.kind()}.{name}: {exc}") from None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str | None = None) -> Self:
        where = where or cls.kind()
        if not isinstance(data, Mapping):
            raise SerdeError(f"{where}: expected a JSON object, found {type(data).__name__}")
        found_kind = data.get("kind")
        if found_kind is not None and found_kind != cls.kind():
            raise SerdeError(
                f"{where}: expected a {cls.kind()} record, found a {found_kind!r} record"
            )
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields) - {"kind"})
        if unknown:
            raise SerdeError(f"{where}: unexpected field(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in data:
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                if has_default:
                    continue
                raise SerdeError(f"{where}: missing field {name!r}")
            kwargs[name] = decode_value(hints[name], data[name], f"{where}.{name}")
        try:
            record = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SerdeError):
                raise
            raise SerdeError(f"{where}: {exc}") from exc
        record.validate()
        return record

    def to_json(self) -> str:
        return canonical_json(self.to_dict()).decode("utf-8")

    def canonical_bytes(self) -> bytes:
        """The canonical UTF-8 JSON bytes: what is hashed and signed."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, text: str | bytes, *, where: str | None = None) -> Self:
        where = where or cls.kind()
        try:
            data = json.loads(
                text,
                parse_constant=_refuse_constant,
                object_pairs_hook=_refuse_duplicate_keys,
            )
        except SerdeError as exc:
            raise SerdeError(f"{where}: {exc}") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too-long integers
            raise SerdeError(f"{where}: not valid JSON ({exc})") from None
        except RecursionError:  # hostile nesting ([[[[...]]]]) must be a refusal, not a crash
            raise SerdeError(f"{where}: JSON nested too deeply") from None
        try:
            return cls.from_dict(data, where=where)
        except RecursionError:
            raise SerdeError(f"{where}: record nested too deeply") from None
