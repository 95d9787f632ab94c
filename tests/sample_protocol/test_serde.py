from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sample_protocol.errors import SerdeError, ValidationError
from sample_protocol.serde import Record, canonical_json, decode_value, encode_value


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass(frozen=True, slots=True)
class Inner(Record):
    name: str
    when: dt.date


@dataclasses.dataclass(frozen=True, slots=True)
class Everything(Record):
    s: str
    i: int
    f: float
    b: bool
    d: dt.date
    t: dt.datetime
    e: Colour
    tup: tuple[int, ...]
    fixed: tuple[str, int]
    m: dict[str, float]
    opt: str | None
    inner: Inner
    inners: tuple[Inner, ...]
    nested_map: dict[str, tuple[int, ...]]
    either: int | str
    default: int = 7


@dataclasses.dataclass(frozen=True, slots=True)
class Renamed(Record):
    kind_name = "renamed-thing"
    x: int


@dataclasses.dataclass(frozen=True, slots=True)
class Checked(Record):
    x: int

    def validate(self) -> None:
        if self.x < 0:
            raise ValidationError(f"Checked.x: expected >= 0, found {self.x}", code="neg")


UTC = dt.UTC
ALMATY = dt.timezone(dt.timedelta(hours=5))

timezones = st.one_of(
    st.just(UTC),
    st.builds(
        dt.timezone,
        st.timedeltas(min_value=dt.timedelta(hours=-23), max_value=dt.timedelta(hours=23)),
    ),
)
aware = st.datetimes(timezones=timezones)
floats = st.floats(allow_nan=False, allow_infinity=False)
inners = st.builds(Inner, name=st.text(max_size=10), when=st.dates())
everything = st.builds(
    Everything,
    s=st.text(max_size=20),
    i=st.integers(),
    f=floats,
    b=st.booleans(),
    d=st.dates(),
    t=aware,
    e=st.sampled_from(Colour),
    tup=st.lists(st.integers(), max_size=5).map(tuple),
    fixed=st.tuples(st.text(max_size=5), st.integers()),
    m=st.dictionaries(st.text(max_size=5), floats, max_size=4),
    opt=st.none() | st.text(max_size=5),
    inner=inners,
    inners=st.lists(inners, max_size=3).map(tuple),
    nested_map=st.dictionaries(
        st.text(max_size=3), st.lists(st.integers(), max_size=3).map(tuple), max_size=3
    ),
    either=st.integers() | st.text(max_size=5),
    default=st.integers(),
)


def sample() -> Everything:
    return Everything(
        s="x",
        i=1,
        f=0.5,
        b=True,
        d=dt.date(2026, 3, 2),
        t=dt.datetime(2026, 3, 2, 9, 30, tzinfo=ALMATY),
        e=Colour.RED,
        tup=(1, 2),
        fixed=("a", 1),
        m={"b": 1.0, "a": 2.0},
        opt=None,
        inner=Inner("in", dt.date(2026, 1, 1)),
        inners=(Inner("a", dt.date(2026, 1, 1)), Inner("b", dt.date(2026, 1, 2))),
        nested_map={"k": (1, 2)},
        either="text",
    )


def raw() -> dict:
    return json.loads(sample().to_json())


# -- round trips ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(everything)
def test_every_supported_type_round_trips(record):
    text = record.to_json()
    back = Everything.from_json(text)
    assert back == record
    assert back.canonical_bytes() == record.canonical_bytes()
    assert Everything.from_dict(record.to_dict()) == record
    assert Everything.from_json(record.canonical_bytes()) == record


def test_decoded_types_are_the_declared_ones():
    back = Everything.from_json(sample().to_json())
    assert type(back.tup) is tuple and type(back.inners) is tuple
    assert back.e is Colour.RED
    assert isinstance(back.inner, Inner)
    assert back.t.utcoffset() == dt.timedelta(hours=5)
    assert type(back.d) is dt.date


def test_int_is_accepted_where_a_float_belongs():
    data = raw() | {"f": 3}
    back = Everything.from_dict(data)
    assert back.f == 3.0 and type(back.f) is float


def test_union_tries_each_member():
    assert Everything.from_dict(raw() | {"either": 5}).either == 5
    assert Everything.from_dict(raw() | {"either": "5"}).either == "5"
    with pytest.raises(SerdeError, match=r"Everything\.either: expected one of"):
        Everything.from_dict(raw() | {"either": 1.5})


def test_default_field_may_be_absent():
    data = raw()
    del data["default"]
    assert Everything.from_dict(data).default == 7


def test_kind_tag_is_the_class_name_or_kind_name():
    assert sample().to_dict()["kind"] == "Everything"
    assert Renamed(1).to_dict() == {"kind": "renamed-thing", "x": 1}
    assert Renamed.from_json('{"kind":"renamed-thing","x":1}') == Renamed(1)


def test_records_have_no_instance_dict():
    assert not hasattr(Inner("a", dt.date(2026, 1, 1)), "__dict__")


# -- canonical bytes -------------------------------------------------------------------


def test_canonical_bytes_do_not_depend_on_dict_insertion_order():
    a = dataclasses.replace(sample(), m={"a": 1.0, "b": 2.0, "c": 3.0})
    b = dataclasses.replace(sample(), m={"c": 3.0, "a": 1.0, "b": 2.0})
    assert a == b
    assert a.canonical_bytes() == b.canonical_bytes()
    assert b'"m":{"a":1.0,"b":2.0,"c":3.0}' in b.canonical_bytes()


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": "қ"}) == '{"a":"қ","b":1}'.encode()
    assert sample().to_json().encode() == sample().canonical_bytes()
    assert b" " not in canonical_json({"x": [1, 2], "y": {"z": None}})


def test_canonical_json_refuses_nan():
    with pytest.raises(SerdeError) as info:
        canonical_json({"x": float("nan")})
    assert info.value.code == "bad_record"


# -- refusals -------------------------------------------------------------------------


def test_naive_datetime_refused_on_write_naming_the_field():
    bad = dataclasses.replace(sample(), t=dt.datetime(2026, 3, 2, 9, 30))
    with pytest.raises(SerdeError, match=r"Everything\.t: .*timezone-aware") as info:
        bad.to_json()
    assert info.value.code == "bad_record"


def test_naive_datetime_refused_on_read():
    with pytest.raises(SerdeError, match=r"Everything\.t: expected a date-time with a time zone"):
        Everything.from_dict(raw() | {"t": "2026-03-02T09:30:00"})


def test_tzinfo_without_offset_counts_as_naive():
    class NoOffset(dt.tzinfo):
        def utcoffset(self, d):
            return None

    with pytest.raises(SerdeError, match="timezone-aware"):
        encode_value(dt.datetime(2026, 1, 1, tzinfo=NoOffset()))


def test_nan_field_refused_on_write_naming_the_field():
    with pytest.raises(SerdeError, match=r"Everything\.f: expected a finite number"):
        dataclasses.replace(sample(), f=float("inf")).canonical_bytes()


def test_wrong_kind_names_both_kinds():
    text = Inner("a", dt.date(2026, 1, 1)).to_json()
    with pytest.raises(SerdeError) as info:
        Everything.from_json(text)
    assert "expected a Everything record" in str(info.value)
    assert "'Inner'" in str(info.value)
    assert info.value.code == "bad_record"


def test_wrong_kind_of_nested_record_is_refused():
    data = raw()
    data["inner"]["kind"] = "Everything"
    with pytest.raises(SerdeError, match=r"Everything\.inner: expected a Inner record"):
        Everything.from_dict(data)


def test_unknown_field_refused():
    with pytest.raises(SerdeError, match=r"Everything: unexpected field\(s\) extra, zz"):
        Everything.from_dict(raw() | {"zz": 1, "extra": 2})


def test_missing_field_refused():
    data = raw()
    del data["s"]
    with pytest.raises(SerdeError, match=r"Everything: missing field 's'"):
        Everything.from_dict(data)


@pytest.mark.parametrize(
    ("path", "value", "where", "expected"),
    [
        (("i",), True, "Everything.i", "expected an integer"),
        (("i",), 1.5, "Everything.i", "expected an integer"),
        (("s",), 5, "Everything.s", "expected a string"),
        (("b",), 1, "Everything.b", "expected true or false"),
        (("f",), "1", "Everything.f", "expected a number"),
        (("d",), "2026-13-01", "Everything.d", "expected an ISO date"),
        (("d",), 20260101, "Everything.d", "expected an ISO date"),
        (("t",), "yesterday", "Everything.t", "expected an ISO 8601 date-time"),
        (("e",), "green", "Everything.e", "expected one of 'red', 'blue'"),
        (("tup",), {"a": 1}, "Everything.tup", "expected a list"),
        (("tup",), [1, "2"], "Everything.tup[1]", "expected an integer"),
        (("fixed",), ["a"], "Everything.fixed", "expected 2 items, found 1"),
        (("m",), [1], "Everything.m", "expected an object"),
        (("m",), {"k": "v"}, "Everything.m.k", "expected a number"),
        (("inner",), "x", "Everything.inner", "expected a Inner object"),
        (("inners", 1, "when"), "soon", "Everything.inners[1].when", "expected an ISO date"),
        (("nested_map",), {"k": [1, None]}, "Everything.nested_map.k[1]", "expected an integer"),
        (("opt",), 3, "Everything.opt", "expected a string"),
    ],
)
def test_wrong_type_names_the_dotted_field_path(path, value, where, expected):
    data = raw()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SerdeError) as info:
        Everything.from_dict(data)
    message = str(info.value)
    assert message.startswith(f"{where}: ")
    assert expected in message
    assert info.value.code == "bad_record"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"kind":"Checked","x":NaN}', "expected a finite number, found NaN"),
        ('{"kind":"Checked","x":-Infinity}', "found -Infinity"),
        ('{"kind":"Checked","x":1,"x":2}', "key 'x' appears twice"),
    ],
)
def test_bad_json_refused(text, expected):
    with pytest.raises(SerdeError) as info:
        Checked.from_json(text, where="file.json")
    assert str(info.value).startswith("file.json: ")
    assert expected in str(info.value)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_too_large_for_a_float_refused(number):
    with pytest.raises(SerdeError, match=r"Everything\.f: expected a finite number"):
        Everything.from_json(sample().to_json().replace('"f":0.5', f'"f":{number}'))


def test_validate_runs_after_decoding():
    assert Checked.from_json('{"kind":"Checked","x":1}') == Checked(1)
    with pytest.raises(ValidationError) as info:
        Checked.from_json('{"kind":"Checked","x":-1}')
    assert info.value.code == "neg"
    assert "Checked.x" in str(info.value)


def test_missing_kind_tag_is_accepted():
    assert Checked.from_dict({"x": 2}) == Checked(2)


def test_decode_value_of_unsupported_type_names_it():
    with pytest.raises(SerdeError, match="where: cannot decode type bytes"):
        decode_value(bytes, "x", "where")


def test_encode_value_shapes():
    assert encode_value((Colour.BLUE, dt.date(2026, 1, 2), [1])) == ["blue", "2026-01-02", [1]]
    assert encode_value({1: Inner("a", dt.date(2026, 1, 1))}) == {
        "1": {"kind": "Inner", "name": "a", "when": "2026-01-01"}
    }


def test_hostile_nesting_is_a_serde_error_not_a_crash():
    from sample_protocol.errors import SerdeError
    from sample_protocol.records import SampleRequest

    deep = "[" * 200_000 + "]" * 200_000
    with pytest.raises(SerdeError) as err:
        SampleRequest.from_json(deep)
    assert "nested too deeply" in str(err.value)
