"""The catalogue of data sources (para 24) and scoring indexes (para 11).

The catalogue is **data**: ``catalogue.json`` beside this module lists every source (its
code, owner, paragraph, default mode, the fields it provides with types, units, ranges and
identifier flags, the indexes it informs) and the four indexes. A newer rule set is a new
or overriding JSON file, not new code (:meth:`Catalogue.from_file`).

Every source table is one row per business entity, keyed by a string column (``bin`` at a
state body, holding the BIN or the IIN; the random ID in a depersonalised sample), followed
by the source's fields in catalogue order. ``category`` fields are stored as Arrow strings
whose values must be among the field's ``categories``.

Example::

    >>> from sample_protocol.catalogue import get_source, Catalogue
    >>> get_source("TAX").paragraph
    '24.1'
    >>> get_source("TAX").arrow_schema().field("bin").type
    DataType(string)
    >>> Catalogue.default().mode("TAX").value
    'preliminary'
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pyarrow as pa

from .errors import CatalogueError, ProtocolError, SerdeError, ValidationError
from .serde import Record

__all__ = [
    "DTYPES",
    "INDEXES",
    "KEY_COLUMNS",
    "KEY_KINDS",
    "SOURCES",
    "Catalogue",
    "FieldSpec",
    "IndexSpec",
    "Mode",
    "SourceSpec",
    "get_index",
    "get_source",
    "index_ids",
    "source_codes",
]

#: The logical types a field may have. ``category`` is stored as an Arrow string.
DTYPES: tuple[str, ...] = ("bool", "category", "date32", "float64", "int64", "string")

#: Which identifiers a source's rows carry: BINs only, or BINs and IINs.
KEY_KINDS: tuple[str, ...] = ("bin", "bin_iin")

#: Names reserved for the key column; no field may use them.
KEY_COLUMNS: tuple[str, ...] = ("bin", "iin", "random_id", "entity_id")

_ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "category": pa.string(),
    "date32": pa.date32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "string": pa.string(),
}
_NUMERIC = ("int64", "float64")
_DATA_FILE = Path(__file__).resolve().with_name("catalogue.json")
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SOURCE_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")
_INDEX_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAGRAPH = re.compile(r"^\d+(\.\d+)*$")


class Mode(enum.StrEnum):
    """How a source's data reaches the register (DESIGN section 4)."""

    #: Secret or personal data: the body scores inside its perimeter, sends indexes only.
    PRELIMINARY = "preliminary"
    #: Non-secret data the register may hold: fed to the combiner as features.
    DIRECT = "direct"


def _known(names: Any) -> str:
    return ", ".join(sorted(names))


@dataclass(frozen=True, slots=True)
class FieldSpec(Record):
    """One field of a source: its type, unit, allowed range and identifier flags.

    ``direct_identifier`` fields (names, IINs, addresses, phones...) must be removed before
    data leaves its owner; ``quasi_identifier`` fields (region, activity, size, dates) must
    be generalised until every combination is shared by at least k entities.
    """

    name: str
    dtype: str
    description: str = ""
    unit: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    nullable: bool = True
    direct_identifier: bool = False
    quasi_identifier: bool = False
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = f"field {self.name!r}"
        if not _FIELD_NAME.match(self.name):
            raise ValidationError(
                f"{where}: expected a snake_case name (a-z, 0-9, _), found {self.name!r}",
                code="bad_field_name",
            )
        if self.name in KEY_COLUMNS:
            raise ValidationError(
                f"{where}: the name is reserved for the key column ({_known(KEY_COLUMNS)})",
                code="bad_field_name",
            )
        if self.dtype not in DTYPES:
            raise ValidationError(
                f"{where}: expected dtype one of {', '.join(DTYPES)}, found {self.dtype!r}",
                code="bad_dtype",
            )
        has_bounds = self.min_value is not None or self.max_value is not None
        if has_bounds and self.dtype not in _NUMERIC:
            raise ValidationError(
                f"{where}: min_value/max_value apply to int64 and float64 only, "
                f"found them on a {self.dtype} field",
                code="bad_bounds",
            )
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValidationError(
                f"{where}: min_value {self.min_value} is above max_value {self.max_value}",
                code="bad_bounds",
            )
        if self.dtype == "category":
            if not self.categories:
                raise ValidationError(
                    f"{where}: a category field needs a non-empty 'categories' list",
                    code="bad_categories",
                )
            if len(set(self.categories)) != len(self.categories):
                raise ValidationError(
                    f"{where}: categories must be unique, found {list(self.categories)}",
                    code="bad_categories",
                )
        elif self.categories is not None:
            raise ValidationError(
                f"{where}: 'categories' applies to category fields only, found it on a "
                f"{self.dtype} field",
                code="bad_categories",
            )

    def arrow_type(self) -> pa.DataType:
        """The Arrow type of the field's column (``category`` is a string)."""
        return _ARROW_TYPES[self.dtype]

    def arrow_field(self) -> pa.Field:
        """The Arrow field (name, type, nullability)."""
        return pa.field(self.name, self.arrow_type(), nullable=self.nullable)


@dataclass(frozen=True, slots=True)
class SourceSpec(Record):
    """One data source of para 24: owner, default mode, fields, indexes it informs."""

    code: str
    owner: str
    paragraph: str
    default_mode: Mode
    key: str
    fields: tuple[FieldSpec, ...]
    informs: tuple[str, ...]
    description: str = ""
    #: True for a source the rules do not require (CUSTOMS).
    optional: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        where = f"source {self.code!r}"
        if not _SOURCE_CODE.match(self.code):
            raise ValidationError(
                f"{where}: expected an upper-case code (A-Z, 0-9, _), found {self.code!r}",
                code="bad_source_code",
            )
        if not _PARAGRAPH.match(self.paragraph):
            raise ValidationError(
                f"{where}: expected a paragraph like '24.1', found {self.paragraph!r}",
                code="bad_paragraph",
            )
        if self.key not in KEY_KINDS:
            raise ValidationError(
                f"{where}: expected key one of {', '.join(KEY_KINDS)}, found {self.key!r}",
                code="bad_key",
            )
        if not self.fields:
            raise ValidationError(f"{where}: has no fields", code="no_fields")
        seen: set[str] = set()
        for f in self.fields:
            if f.name in seen:
                raise ValidationError(
                    f"{where}: field {f.name!r} is listed twice", code="duplicate_field"
                )
            seen.add(f.name)
        if not self.informs:
            raise ValidationError(f"{where}: informs no index", code="informs_nothing")
        if len(set(self.informs)) != len(self.informs):
            raise ValidationError(
                f"{where}: an index is listed twice in informs {list(self.informs)}",
                code="duplicate_index",
            )

    def field_names(self) -> tuple[str, ...]:
        """Names of the fields, in catalogue order (the key column excluded)."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; :class:`CatalogueError` if the source has none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise CatalogueError(
            f"source {self.code!r} has no field {name!r}; known fields: "
            f"{', '.join(self.field_names())}",
            code="unknown_field",
        )

    def model_fields(self) -> tuple[FieldSpec, ...]:
        """Fields usable as model inputs: every field that is not a direct identifier."""
        return tuple(f for f in self.fields if not f.direct_identifier)

    def direct_identifiers(self) -> tuple[FieldSpec, ...]:
        """Fields that depersonalisation must remove."""
        return tuple(f for f in self.fields if f.direct_identifier)

    def quasi_identifiers(self) -> tuple[FieldSpec, ...]:
        """Fields that depersonalisation must generalise (k-anonymity)."""
        return tuple(f for f in self.fields if f.quasi_identifier)

    def arrow_schema(self, keyed_by: str = "bin") -> pa.Schema:
        """The Arrow schema of this source's table: the key column, then every field.

        ``keyed_by`` names the key column: ``bin`` at the owner (BIN or IIN), the random
        ID column in a depersonalised sample.
        """
        if not _FIELD_NAME.match(keyed_by):
            raise ValidationError(
                f"source {self.code!r}: key column name must be snake_case, found {keyed_by!r}",
                code="bad_field_name",
            )
        if keyed_by in self.field_names():
            raise ValidationError(
                f"source {self.code!r}: key column {keyed_by!r} clashes with a field",
                code="bad_field_name",
            )
        key = pa.field(keyed_by, pa.string(), nullable=False)
        return pa.schema([key, *(f.arrow_field() for f in self.fields)])


@dataclass(frozen=True, slots=True)
class IndexSpec(Record):
    """One scoring index (para 11) and its training target."""

    id: str
    name: str
    estimates: str
    target: str
    horizon_months: int = 12

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not _INDEX_ID.match(self.id):
            raise ValidationError(
                f"index {self.id!r}: expected a snake_case id, found {self.id!r}",
                code="bad_index_id",
            )
        if not 1 <= self.horizon_months <= 120:
            raise ValidationError(
                f"index {self.id!r}: expected horizon_months in 1..120, "
                f"found {self.horizon_months}",
                code="bad_horizon",
            )


_OVERRIDE_KEYS = ("drop_sources", "fields", "indexes", "modes", "rules", "sources", "version")


@dataclass(frozen=True, slots=True)
class Catalogue(Record):
    """A rule set: its sources, its indexes and the mode configured for each source.

    ``modes`` holds overrides only; a source not named there uses its ``default_mode``.
    """

    version: str
    sources: tuple[SourceSpec, ...]
    indexes: tuple[IndexSpec, ...]
    modes: dict[str, Mode] = field(default_factory=dict)
    rules: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        codes = [s.code for s in self.sources]
        dup = sorted({c for c in codes if codes.count(c) > 1})
        if dup:
            raise ValidationError(
                f"catalogue {self.version!r}: source(s) listed twice: {', '.join(dup)}",
                code="duplicate_source",
            )
        ids = [i.id for i in self.indexes]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValidationError(
                f"catalogue {self.version!r}: index(es) listed twice: {', '.join(dup)}",
                code="duplicate_index",
            )
        for s in self.sources:
            for index_id in s.informs:
                if index_id not in ids:
                    raise CatalogueError(
                        f"catalogue {self.version!r}: source {s.code!r} informs unknown "
                        f"index {index_id!r}; known indexes: {_known(ids)}",
                        code="unknown_index",
                    )
        for code, mode in self.modes.items():
            if code not in codes:
                raise CatalogueError(
                    f"catalogue {self.version!r}: mode given for unknown source {code!r}; "
                    f"known sources: {_known(codes)}",
                    code="unknown_source",
                )
            if not isinstance(mode, Mode):
                raise ValidationError(
                    f"catalogue {self.version!r}: source {code!r}: expected mode "
                    f"'preliminary' or 'direct', found {mode!r}",
                    code="bad_mode",
                )

    # -- construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> Catalogue:
        """The packaged rule set (Resolution 372 of 2021, para 24, plus CUSTOMS)."""
        return _default_catalogue()

    @classmethod
    def from_file(cls, path: str | Path, *, base: Catalogue | None = None) -> Catalogue:
        """Read a rule set or an override of ``base`` (the default catalogue) from JSON.

        A file with ``"kind": "Catalogue"`` is a whole rule set. Any other object
        overrides ``base`` with these optional keys:

        - ``"modes"``: ``{"COURT": "preliminary", ...}``
        - ``"fields"``: ``{"TAX": [FieldSpec objects]}`` replaces that source's fields
        - ``"sources"``: ``[SourceSpec objects]`` replaces sources of the same code or adds new
        - ``"indexes"``: ``[IndexSpec objects]`` replaces or adds indexes
        - ``"drop_sources"``: ``["CUSTOMS"]``; ``"version"``, ``"rules"``: new labels

        Errors are :class:`ValidationError` or :class:`CatalogueError` naming the file.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CatalogueError(f"{path}: catalogue file not found", code="no_catalogue") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SerdeError(f"{path}: not valid JSON ({exc})") from None
        try:
            if isinstance(raw, dict) and raw.get("kind") == cls.kind():
                return cls.from_dict(raw, where=str(path))
            return (base or cls.default()).with_overrides(raw, where=str(path))
        except ProtocolError as exc:
            message = str(exc)
            if not message.startswith(str(path)):
                message = f"{path}: {message}"
            raise type(exc)(message, code=exc.code) from None

    def with_overrides(self, raw: Any, *, where: str = "overrides") -> Catalogue:
        """A new catalogue with the overrides of :meth:`from_file` applied."""
        if not isinstance(raw, dict):
            raise ValidationError(
                f"{where}: expected a JSON object, found {type(raw).__name__}",
                code="bad_catalogue",
            )
        unknown = sorted(set(raw) - set(_OVERRIDE_KEYS) - {"kind"})
        if unknown:
            raise ValidationError(
                f"{where}: unexpected key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(_OVERRIDE_KEYS)}",
                code="bad_catalogue",
            )
        sources = {s.code: s for s in self.sources}
        indexes = {i.id: i for i in self.indexes}
        for i, item in enumerate(_as_list(raw.get("indexes", []), f"{where}.indexes")):
            spec = IndexSpec.from_dict(item, where=f"{where}.indexes[{i}]")
            indexes[spec.id] = spec
        for i, item in enumerate(_as_list(raw.get("sources", []), f"{where}.sources")):
            src = SourceSpec.from_dict(item, where=f"{where}.sources[{i}]")
            sources[src.code] = src
        fields_raw = raw.get("fields", {})
        if not isinstance(fields_raw, dict):
            raise ValidationError(
                f"{where}.fields: expected an object of source code -> list of fields",
                code="bad_catalogue",
            )
        for code, items in fields_raw.items():
            if code not in sources:
                raise CatalogueError(
                    f"{where}.fields: unknown source {code!r}; known sources: {_known(sources)}",
                    code="unknown_source",
                )
            new_fields = tuple(
                FieldSpec.from_dict(item, where=f"{where}.fields.{code}[{i}]")
                for i, item in enumerate(_as_list(items, f"{where}.fields.{code}"))
            )
            sources[code] = replace(sources[code], fields=new_fields)
        for code in _as_list(raw.get("drop_sources", []), f"{where}.drop_sources"):
            if code not in sources:
                raise CatalogueError(
                    f"{where}.drop_sources: unknown source {code!r}; known sources: "
                    f"{_known(sources)}",
                    code="unknown_source",
                )
            del sources[code]
        modes = {c: m for c, m in self.modes.items() if c in sources}
        modes_raw = raw.get("modes", {})
        if not isinstance(modes_raw, dict):
            raise ValidationError(
                f"{where}.modes: expected an object of source code -> mode", code="bad_catalogue"
            )
        for code, value in modes_raw.items():
            if code not in sources:
                raise CatalogueError(
                    f"{where}.modes: unknown source {code!r}; known sources: {_known(sources)}",
                    code="unknown_source",
                )
            try:
                modes[code] = Mode(value)
            except ValueError:
                raise ValidationError(
                    f"{where}.modes.{code}: expected 'preliminary' or 'direct', found {value!r}",
                    code="bad_mode",
                ) from None
        version = raw.get("version", self.version)
        rules = raw.get("rules", self.rules)
        if not isinstance(version, str) or not isinstance(rules, str):
            raise ValidationError(
                f"{where}: 'version' and 'rules' must be strings", code="bad_catalogue"
            )
        return Catalogue(
            version=version,
            sources=tuple(sources.values()),
            indexes=tuple(indexes.values()),
            modes=modes,
            rules=rules,
        )

    def with_modes(self, modes: Mapping[str, Mode | str]) -> Catalogue:
        """A copy with these mode overrides added."""
        return self.with_overrides(
            {"modes": {c: Mode(m).value for c, m in modes.items()}}, where="with_modes"
        )

    # -- look-ups -----------------------------------------------------------------------

    def source(self, code: str) -> SourceSpec:
        """The source with this code; :class:`CatalogueError` naming the known ones."""
        for s in self.sources:
            if s.code == code:
                return s
        raise CatalogueError(
            f"unknown source {code!r}; known sources: {', '.join(self.source_codes())}",
            code="unknown_source",
        )

    def index(self, index_id: str) -> IndexSpec:
        """The index with this id; :class:`CatalogueError` naming the known ones."""
        for i in self.indexes:
            if i.id == index_id:
                return i
        raise CatalogueError(
            f"unknown index {index_id!r}; known indexes: {', '.join(self.index_ids())}",
            code="unknown_index",
        )

    def source_codes(self) -> tuple[str, ...]:
        """Source codes in catalogue (para 24) order."""
        return tuple(s.code for s in self.sources)

    def index_ids(self) -> tuple[str, ...]:
        """Index ids in catalogue order."""
        return tuple(i.id for i in self.indexes)

    def mode(self, code: str) -> Mode:
        """The configured mode of a source (its override, else its default)."""
        return self.modes.get(code, self.source(code).default_mode)

    def preliminary_sources(self) -> tuple[SourceSpec, ...]:
        """Sources that score inside their perimeter and send preliminary indexes."""
        return tuple(s for s in self.sources if self.mode(s.code) is Mode.PRELIMINARY)

    def direct_sources(self) -> tuple[SourceSpec, ...]:
        """Sources whose data the register may hold and feed to the combiner."""
        return tuple(s for s in self.sources if self.mode(s.code) is Mode.DIRECT)

    def sources_informing(self, index_id: str) -> tuple[SourceSpec, ...]:
        """Sources whose data informs ``index_id``."""
        self.index(index_id)
        return tuple(s for s in self.sources if index_id in s.informs)


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValidationError(
            f"{where}: expected a list, found {type(value).__name__}", code="bad_catalogue"
        )
    return value


@functools.cache
def _default_catalogue() -> Catalogue:
    text = _DATA_FILE.read_text(encoding="utf-8")
    return Catalogue.from_json(text, where="sample_protocol/catalogue.json")


_DEFAULT = _default_catalogue()

#: Read-only mapping of source code -> :class:`SourceSpec`, in para 24 order.
SOURCES: Mapping[str, SourceSpec] = MappingProxyType({s.code: s for s in _DEFAULT.sources})
#: Read-only mapping of index id -> :class:`IndexSpec`.
INDEXES: Mapping[str, IndexSpec] = MappingProxyType({i.id: i for i in _DEFAULT.indexes})


def get_source(code: str) -> SourceSpec:
    """The default catalogue's source ``code``; :class:`CatalogueError` if unknown."""
    return _DEFAULT.source(code)


def get_index(index_id: str) -> IndexSpec:
    """The default catalogue's index ``index_id``; :class:`CatalogueError` if unknown."""
    return _DEFAULT.index(index_id)


def source_codes() -> tuple[str, ...]:
    """Codes of the default catalogue's sources, in para 24 order."""
    return _DEFAULT.source_codes()


def index_ids() -> tuple[str, ...]:
    """Ids of the default catalogue's indexes."""
    return _DEFAULT.index_ids()
