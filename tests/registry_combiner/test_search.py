"""``registry_combiner.search``: para 32 search, and the ``search`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from registry_combiner.cli import app
from registry_combiner.errors import RegistryInputError
from registry_combiner.search import search, search_hit
from sample_protocol.errors import IdentifierError
from tests.registry_combiner.conftest import Register
from tests.registry_combiner.serve_fixtures import legal_entity_rows, unknown_identifier

runner = CliRunner()


@pytest.fixture(scope="module")
def rows(combined: Register) -> list[dict[str, object]]:
    return legal_entity_rows(combined, 40)


def _bins(found) -> list[str]:
    return [e.bin for e in found]


def test_by_identifier(combined: Register, rows):
    store = combined.store
    bin_ = str(rows[0]["bin"])
    for by in ("id", "auto"):
        assert _bins(search(store, f"  {bin_} ", by=by)) == [bin_]
    assert search(store, unknown_identifier(combined), by="id") == []
    with pytest.raises(IdentifierError) as err:
        search(store, bin_[:11] + str((int(bin_[11]) + 1) % 10), by="id")
    assert err.value.code == "identifier_checksum" and "check digit" in str(err.value)
    with pytest.raises(IdentifierError) as err2:
        search(store, "12345")  # all digits: read as an identifier
    assert err2.value.code == "identifier_length"
    with pytest.raises(IdentifierError):
        search(store, "Temir", by="id")


def test_by_name_and_legal_form(combined: Register, rows):
    store = combined.store
    row = next(r for r in rows if r["legal_form"] == "LLP")
    name = str(row["name_ru"])  # like TOO "Temir Group"
    found = search(store, name, by="name", limit=100)
    assert str(row["bin"]) in _bins(found)
    assert all(e.legal_form is not None and e.name is not None for e in found)
    only_llp = search(store, name, by="name", legal_form="LLP", limit=100)
    assert str(row["bin"]) in _bins(only_llp) and {e.legal_form for e in only_llp} == {"LLP"}
    jsc = search(store, name, by="name", legal_form="JSC", limit=100)
    assert str(row["bin"]) not in _bins(jsc) and all(e.legal_form == "JSC" for e in jsc)
    # a legal form is a word of the index too; prefixes and case do not matter
    word = name.split('"')[1].split()[0]
    assert str(row["bin"]) in _bins(search(store, f"{word[:4].lower()} llp", by="name", limit=100))


def test_by_person_keeps_only_the_names_of_people(combined: Register, rows):
    store = combined.store
    row = rows[0]
    surname, first = str(row["head_surname"]), str(row["head_first_name"])
    found = search(store, f"{surname} {first}", by="person", limit=100)
    assert str(row["bin"]) in _bins(found)
    for e in found:
        assert (e.head_surname or "").lower().startswith(surname.lower())
        assert (e.head_first_name or "").lower().startswith(first.lower())
    # a word of a company's name is not a person's name
    word = str(rows[1]["name_ru"]).split('"')[1].split()[0].lower()
    assert search(store, word, by="name", limit=100)  # the word is in the index...
    for e in search(store, word, by="person", limit=100):  # ...but not always a person
        heads = f"{e.head_surname} {e.head_first_name} {e.head_patronymic}".lower().split()
        assert any(h.startswith(word) for h in heads)
    hit = search_hit(found[0])
    assert hit["head"].startswith(surname) and set(hit) >= {"bin", "name", "legal_form"}


@pytest.mark.parametrize(
    "query",
    [
        '"', "*", "OR", "NOT x", 'name:"x"', "NEAR(a b)", "'; DROP TABLE entities; --",
        "a AND OR", "^Temir", "Temir*", "x' OR '1'='1", "\\", "{name}: x", "ё й",
    ],
)  # fmt: skip
def test_query_syntax_is_neutralised(combined: Register, query: str):
    for by in ("auto", "name", "person"):
        try:
            found = search(combined.store, query, by=by)
        except RegistryInputError as exc:
            assert exc.code == "search_empty"
            continue
        assert isinstance(found, list)
    assert combined.store.entity_bins().num_rows == 4000


def test_bad_options(combined: Register):
    store = combined.store
    for kwargs, code in [
        ({"by": "phone"}, "search_bad_mode"),
        ({"limit": 0}, "search_bad_limit"),
        ({"limit": 101}, "search_bad_limit"),
    ]:
        with pytest.raises(RegistryInputError) as err:
            search(store, "Temir", **kwargs)
        assert err.value.code == code and err.value.exit_code == 2
    with pytest.raises(RegistryInputError) as err2:
        search(store, "x" * 201)
    assert err2.value.code == "search_query_too_long"
    with pytest.raises(RegistryInputError) as err3:
        search(store, "  ... ")
    assert err3.value.code == "search_empty"


def test_search_on_the_command_line(combined: Register, rows):
    state = str(Path(combined.store.location).parent)
    row = rows[0]

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["search", *args, "--state", state])
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run(str(row["head_surname"]), "--by", "person", "--json", "--limit", "100")
    assert code == 0, err
    assert str(row["bin"]) in [h["bin"] for h in json.loads(out)["results"]]
    code, out, _ = run(str(row["bin"]))
    assert code == 0 and str(row["bin"]) in out
    code, _, err = run("123456789012")
    assert code == 2 and "identifier_checksum" in err
    code, _, err = run("x", "--by", "phone")
    assert code == 2 and "search_bad_mode" in err
    code, out, _ = run("Zzzzqqq")
    assert code == 0 and "no entity found" in out
    helped = runner.invoke(app, ["search", "--help"])
    assert helped.exit_code == 0 and "patronymic" in helped.stdout and "--by" in helped.stdout
