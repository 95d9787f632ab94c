"""``registry_combiner.report``: signed reports of a check, and ``report`` / ``verify-report``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from registry_combiner.cli import app
from registry_combiner.errors import RegistryInputError, RegistryRefused
from registry_combiner.query import entity_view
from registry_combiner.report import (
    EntityReport,
    ReportCache,
    ReportCoverage,
    ReportEntity,
    ReportIndex,
    ReportPoint,
    ReportReason,
    _Body,
    build_report,
    issue_report,
    render_html,
    verify_report,
    write_report,
)
from registry_combiner.store import EntityProfile
from registry_combiner.store_sqlite import SqliteStore
from sample_protocol.errors import IdentifierError, SignatureError
from sample_protocol.keys import SecretKey, load_public_key
from sample_protocol.serde import canonical_json
from sample_protocol.signing import sign_bytes
from sample_protocol.trust import Role
from tests.agency_runtime.round_fixtures import REGISTER, TAX_BODY
from tests.registry_combiner.conftest import Register, new_register
from tests.registry_combiner.serve_fixtures import copy_register, unknown_identifier

runner = CliRunner()


@pytest.fixture(scope="module")
def store(combined: Register, tmp_path_factory: pytest.TempPathFactory):
    db = copy_register(combined, tmp_path_factory.mktemp("report") / "state")
    s = SqliteStore(db)
    yield s
    s.close()


def _bankrupt(combined: Register) -> str:
    lists = pq.read_table(combined.world.feeds["TAX_LISTS"])
    return lists.filter(lists["bankrupt"])["bin"][0].as_py()


def test_a_report_shows_the_indexes_and_is_logged(combined: Register, store, tmp_path: Path):
    bin_ = _bankrupt(combined)
    key = combined.world.world.secret(REGISTER)
    issued = issue_report(store, bin_, user="alice", key=key)
    r = issued.report
    assert r.user == "alice" and r.register == REGISTER and r.key_id == key.key_id
    assert r.entity.bin == bin_ and "bankrupt" in r.lists
    assert r.release_id == combined.world.release_id and r.run_id is not None
    view = entity_view(store, bin_)
    assert [(ix.index, ix.value, ix.category) for ix in r.indexes] == [
        (ix["index"], ix["value"], ix["category"]) for ix in view["indexes"]
    ]
    fs = next(ix for ix in r.indexes if ix.index == "financial_stability")
    assert fs.category == "high" and fs.overridden and "bankrupt" in fs.overrides
    assert fs.reasons[0].input == "override" and fs.coverage.preliminary == {"TAX": "present"}
    assert fs.history[0].value == fs.value
    # the JSON is the record's canonical form, and it reads back
    assert EntityReport.from_json(issued.json) == r
    assert json.loads(issued.json)["kind"] == "EntityReport"
    # the check is in the log, with the report's hash
    check = store.checks_by_user("alice", limit=1)[0]
    assert (check.bin, check.view, check.report_sha256) == (bin_, "report", issued.sha256)
    assert check.check_id == issued.check_id and check.run_id == r.run_id
    assert abs((check.checked_at - r.issued_at).total_seconds()) < 1
    # both files verify with the register's public key
    files = write_report(issued, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in files)
    pub = combined.world.world.public(REGISTER)
    done = verify_report(files[0], pub)
    assert done.report == r and done.signature.signer == REGISTER
    assert f"report:{r.report_id}" in done.signature.trusted_comment
    html_done = verify_report(files[2], pub)
    assert html_done.report is None and issued.sha256.encode() in files[2].read_bytes()


def test_a_tampered_report_is_refused(combined: Register, store, tmp_path: Path):
    key = combined.world.world.secret(REGISTER)
    bin_ = store.entity_bins()["bin"][7].as_py()
    files = write_report(issue_report(store, bin_, user="bob", key=key), tmp_path)
    report_json, html_file = files[0], files[2]
    pub = key.public
    original = report_json.read_bytes()
    data = json.loads(original)
    data["indexes"][0]["value"] = 1 if data["indexes"][0]["value"] != 1 else 2
    report_json.write_bytes(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(SignatureError) as err:
        verify_report(report_json, pub)
    assert err.value.code == "signature_mismatch" and err.value.exit_code == 3
    html_file.write_bytes(html_file.read_bytes().replace(b"</h1>", b"</h1><p>ok</p>"))
    with pytest.raises(SignatureError):
        verify_report(html_file, pub)
    # a report signed by someone else, checked against the trust root's register
    report_json.write_bytes(original)
    body = combined.world.world.secret(TAX_BODY)
    sig_path = Path(f"{report_json}.minisig")
    sig_path.write_text(sign_bytes(original, body))
    registers = combined.trust.trusted_keys(Role.REGISTER)
    with pytest.raises(SignatureError) as err2:
        verify_report(report_json, registers)
    assert err2.value.code == "signature_unknown_key"
    # a register-signed report that names another issuer
    forged = dataclasses.replace(EntityReport.from_json(original), key_id=body.key_id)
    report_json.write_bytes(forged.canonical_bytes())
    sig_path.write_text(sign_bytes(forged.canonical_bytes(), key))
    with pytest.raises(RegistryRefused) as err3:
        verify_report(report_json, registers)
    assert err3.value.code == "report_signer_mismatch"
    sig_path.unlink()
    with pytest.raises(SignatureError) as err4:
        verify_report(report_json, registers)
    assert err4.value.code == "signature_missing"


def test_bad_and_unknown_identifiers_get_no_report(combined: Register, store):
    key = combined.world.world.secret(REGISTER)
    before = len(store.checks_by_user("eve"))
    with pytest.raises(IdentifierError) as err:
        issue_report(store, "123456789012", user="eve", key=key)
    assert err.value.code == "identifier_checksum" and err.value.exit_code == 2
    with pytest.raises(RegistryInputError) as err2:
        issue_report(store, unknown_identifier(combined), user="eve", key=key)
    assert err2.value.code == "unknown_entity"
    assert len(store.checks_by_user("eve")) == before


def _hostile_report() -> EntityReport:
    evil = "<script>alert('x')</script>&\"'"
    return EntityReport(
        report_id="rep-20260101-aaaaaaaaaaaaaaaa",
        issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        register="register",
        key_id="0123456789ABCDEF",
        user=evil,
        entity=ReportEntity(evil, "legal", evil, evil, None, None, evil, None),
        lists=(evil,),
        run_id=1,
        release_id=evil,
        computed_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        indexes=(
            ReportIndex(
                index=evil,
                value=50,
                category="high",
                probability=0.5,
                partial=True,
                overridden=False,
                overrides=(evil,),
                reasons=(ReportReason(evil, evil, evil, evil),),
                coverage=ReportCoverage({evil: evil}, {}),
                history=(),
            ),
        ),
        notes=(evil,),
    )


def test_html_escapes_everything_and_runs_no_script():
    page = render_html(_hostile_report(), "ab" * 32).decode()
    assert "<script" not in page.lower() and "alert('x')" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;&#x27;" in page
    assert "default-src 'none'" in page and "ab" * 32 in page


def _cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_report_and_verify_report_on_the_command_line(combined: Register, store, tmp_path: Path):
    state = Path(store.location).parent
    key = str(combined.world.register_key)
    w = combined.world.world
    bin_ = store.entity_bins()["bin"][3].as_py()
    out = tmp_path / "reports"
    code, stdout, err = _cli(
        "report", bin_, "--state", str(state), "--key", key, "--out", str(out), "--user", "carol",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    done = json.loads(stdout)
    json_file = out / f"{done['report_id']}.json"
    assert {Path(f).name for f in done["files"]} == {
        f"{done['report_id']}{s}" for s in (".json", ".json.minisig", ".html", ".html.minisig")
    }
    assert store.checks_by_user("carol")[0].report_sha256 == done["sha256"]
    code, stdout, err = _cli("verify-report", str(json_file), "--pub", str(w.pub(REGISTER)))
    assert code == 0 and "signature OK" in stdout and "carol" in stdout, err
    code, stdout, err = _cli(
        "verify-report", str(out / f"{done['report_id']}.html"), "--trust", str(w.trust),
        "--root-pub", str(w.root_pub), "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(stdout)["signer"] == REGISTER, err
    code, _, err = _cli("verify-report", str(json_file), "--pub", str(w.pub(TAX_BODY)))
    assert code == 3 and "signature_unknown_key" in err
    code, _, err = _cli("verify-report", str(json_file))
    assert code == 2 and "--pub" in err
    json_file.write_bytes(json_file.read_bytes().replace(b'"carol"', b'"mallory"'))
    code, _, err = _cli("verify-report", str(json_file), "--pub", str(w.pub(REGISTER)))
    assert code == 3 and "signature_mismatch" in err
    code, _, err = _cli("report", "123456789012", "--state", str(state), "--key", key)
    assert code == 2 and "checksum" in err
    code, _, err = _cli("report", bin_, "--state", str(tmp_path / "nowhere"), "--key", key)
    assert code == 2 and "store_missing" in err
    for command in ("report", "verify-report"):
        code, stdout, _ = _cli(command, "--help")
        assert code == 0 and "minisign" in stdout


@pytest.fixture
def minisign_bin():
    found = shutil.which("minisign")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("minisign is not installed, but CI must run the interop tests")
        pytest.skip("minisign is not installed (Debian package `minisign`)")
    return found


@pytest.mark.minisign
def test_minisign_checks_a_report(combined: Register, store, tmp_path: Path, minisign_bin):
    key = combined.world.world.secret(REGISTER)
    pub = combined.world.world.keys_dir / f"{REGISTER}.minisign.pub"
    assert load_public_key(pub).key_id == key.key_id
    bin_ = store.entity_bins()["bin"][11].as_py()
    files = write_report(issue_report(store, bin_, user="dave", key=key), tmp_path)

    def minisign(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [minisign_bin, "-Vm", str(path), "-p", str(pub)], capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=30, check=False,
        )  # fmt: skip

    for path in (files[0], files[2]):
        done = minisign(path)
        assert done.returncode == 0, done.stderr
        assert "Signature and comment signature verified" in done.stdout
    files[0].write_bytes(files[0].read_bytes().replace(b'"dave"', b'"evil"'))
    assert minisign(files[0]).returncode != 0


# -- the hot path: report bodies, their cache, and bytes composed from pieces ------------


def _record_of(
    view: dict, *, report_id: str, issued_at: dt.datetime, user: str, key: SecretKey
) -> EntityReport:
    """The report of ``view`` built as records (the reference the composed bytes must match)."""
    e, run = view["entity"], view["run"]
    indexes = tuple(
        ReportIndex(
            index=ix["index"], value=int(ix["value"]), category=ix["category"],
            probability=float(ix["probability"]), partial=bool(ix["partial"]),
            overridden=bool(ix["overridden"]), overrides=tuple(ix["overrides"]),
            reasons=tuple(ReportReason(r["code"], r["source"], r["factor"], r["kind"])
                          for r in ix["reasons"]),
            coverage=ReportCoverage(dict(ix["coverage"]["preliminary"]),
                                    dict(ix["coverage"]["direct"])),
            history=tuple(ReportPoint(**h) for h in ix["history"]),
        )
        for ix in view["indexes"]
    )  # fmt: skip
    notes = [] if run is not None else ["no indexes yet: the register has not combined this entity"]
    partial = [ix.index for ix in indexes if ix.partial]
    if partial:
        notes.append(
            "partial: a source the combiner expects did not deliver for this entity "
            f"({', '.join(partial)}; see coverage)"
        )
    return EntityReport(
        report_id=report_id, issued_at=issued_at, register=key.name, key_id=key.key_id,
        user=user,
        entity=ReportEntity(e["bin"], e["kind"], e["name"], e["legal_form"], e["status"],
                            e["registration_date"], e["region"], e["oked"]),
        lists=tuple(view["lists"]),
        run_id=None if run is None else int(run["run_id"]),
        release_id=None if run is None else run["release_id"],
        computed_at=None if run is None else run["computed_at"],
        indexes=indexes, notes=tuple(notes),
    )  # fmt: skip


def test_report_bytes_are_the_records_canonical_bytes(combined: Register, store):
    """For every entity (cached or not): the bytes served are exactly those of the record."""
    key = combined.world.world.secret(REGISTER)
    cache = ReportCache(64)
    bins = store.entity_bins()["bin"].to_pylist()
    wanted = bins[:60] + bins[:5] + [_bankrupt(combined)]
    for i, bin_ in enumerate(wanted):
        user = ["alice", 'o"b\\r\u00e9n\u00fc \U0001f600', "\x00user\x00", "\u2028x"][i % 4]
        when = dt.datetime(2026, 11, 23, 10, i % 60, tzinfo=dt.UTC)
        issued = issue_report(
            store, bin_, user=user, key=key, html_too=i % 10 == 0, now=when, cache=cache
        )
        record = _record_of(
            entity_view(store, bin_), report_id=issued.report_id, issued_at=when, user=user,
            key=key,
        )  # fmt: skip
        assert issued.json == record.canonical_bytes(), bin_
        assert issued.report == record and issued.report.canonical_bytes() == issued.json
        assert issued.sha256 == hashlib.sha256(issued.json).hexdigest()
    assert len(cache) == len(set(wanted))
    built = build_report(store, bins[0], user="zed", key=key)
    again = _record_of(
        entity_view(store, bins[0]), report_id=built.report_id, issued_at=built.issued_at,
        user="zed", key=key,
    )  # fmt: skip
    assert built == again


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    user=st.text(max_size=40),
    name=st.one_of(
        st.none(), st.text(max_size=30), st.sampled_from(["\x00user\x00", "\x00report_id\x00"])
    ),
    seconds=st.integers(0, 10**9),
)
def test_composed_bytes_equal_canonical_json(user: str, name: str | None, seconds: int):
    doc = {
        "kind": "EntityReport", "report_id": "", "issued_at": "", "user": "", "register": "r",
        "key_id": "K", "run_id": 3, "entity": {"kind": "ReportEntity", "name": name},
        "notes": [name or ""],
    }  # fmt: skip
    body = _Body.of(doc, 1)
    assert (body.pieces is None) == (name in ("\x00user\x00", "\x00report_id\x00"))
    when = dt.datetime(2001, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds, microseconds=7)
    values = {"issued_at": when.isoformat(), "report_id": f"rep-{seconds}", "user": user}
    try:
        expected = canonical_json({**doc, **values})
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 form either way
        with pytest.raises(UnicodeEncodeError):
            body.canonical_bytes(issued_at=when, report_id=f"rep-{seconds}", user=user)
        return
    assert body.canonical_bytes(issued_at=when, report_id=f"rep-{seconds}", user=user) == expected


def test_the_cache_never_serves_a_stale_body(combined: Register, tmp_path: Path):
    """A cached body is keyed by the entity's row and the store's generation: a new
    profile, feed or run is a new key, so the next report shows it."""
    copy_register(combined, tmp_path / "state")
    register = new_register(combined.world, tmp_path / "state")
    store, key = register.store, combined.world.world.secret(REGISTER)
    try:
        cache = ReportCache(8)
        bin_ = store.entity_bins()["bin"][2].as_py()
        first = issue_report(store, bin_, user="u", key=key, html_too=False, cache=cache)
        again = issue_report(store, bin_, user="u", key=key, html_too=False, cache=cache)
        assert len(cache) == 1 and again.report.entity == first.report.entity
        generation = store.generation()
        assert generation[0] == first.report.run_id and generation[1] > 0
        # a new profile (as a feed gives it): the entity's row, so the key, changes
        feed_id = generation[1]
        store.update_profiles([EntityProfile(bin=bin_, name="Renamed LLP")], feed_id=feed_id)
        renamed = issue_report(store, bin_, user="u", key=key, html_too=False, cache=cache)
        assert renamed.report.entity.name == "Renamed LLP" and len(cache) == 2
        # a new run: the generation changes, the report shows the new run
        register.combine()
        assert store.generation()[0] == generation[0] + 1
        rerun = issue_report(store, bin_, user="u", key=key, html_too=False, cache=cache)
        assert rerun.report.run_id == generation[0] + 1 and len(cache) == 3
        assert rerun.report.indexes[0].history[0].run_id == rerun.report.run_id
        assert [p.run_id for p in rerun.report.indexes[0].history] == [
            generation[0] + 1,
            generation[0],
        ]
        uncached = issue_report(store, bin_, user="u", key=key, html_too=False)
        assert uncached.report.indexes == rerun.report.indexes
    finally:
        store.close()
