"""``nce_model_lab.generic``: any table with a binary target → a signed release bundle.

One synthetic credit table (2,000 rows, text, true/false, date and numeric columns with
missing values) is trained once per module, with a trust root and a lab directory; the
bundle is verified like a body would (signature, gate, parity) and replayed on the CSV.
``world`` is also used by ``test_cli_train_table.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

import nce_model_lab.generic as generic
from agency_runtime.score import score_population
from benchmarks.credit_table import credit_table
from nce_model_lab._generic_input import MIN_EVENTS, prepare_table, read_table
from nce_model_lab.errors import LabError
from nce_model_lab.evaluate import auc
from nce_model_lab.generic import CV_FOLDS, TableTraining, cv_splits, fit_table, train_table
from nce_model_lab.labdir import LabDir
from nce_model_lab.onnx_export import ParityError
from nce_model_lab.release import next_sequence
from sample_protocol.bundle_verify import verify_bundle
from sample_protocol.errors import TrustError, ValidationError
from sample_protocol.features import FeatureKind, FeatureSpec
from sample_protocol.keys import SecretKey, generate_keypair, write_keypair
from sample_protocol.records import sha256_file
from sample_protocol.scores import ScoreScale
from sample_protocol.synthetic import generate_economy
from sample_protocol.trust import Party, Role, TrustRoot, new_trust_root, write_trust_root

N_ROWS = 2000
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


@dataclasses.dataclass
class World:
    """Keys (nce-root, nce-lab, tax-body), a signed trust root and a credit CSV."""

    root: Path
    keys: Path
    trust_path: Path
    trust: TrustRoot
    secrets: dict[str, SecretKey]
    csv: Path
    table: pa.Table

    def key(self, name: str) -> Path:
        return self.keys / f"{name}.key"

    @property
    def root_pub(self) -> Path:
        return self.keys / "nce-root.pub"


def make_world(root: Path, n_rows: int = N_ROWS, seed: int = 3) -> World:
    keys = root / "keys"
    secrets = {name: generate_keypair(name) for name in ("nce-root", "nce-lab", "tax-body")}
    for secret in secrets.values():
        write_keypair(secret, keys)
    parties = [
        Party(name="nce-lab", role=Role.LAB, sources=(), key=secrets["nce-lab"].public),
        Party(
            name="tax-body", role=Role.TAX_BODY, sources=("TAX",), key=secrets["tax-body"].public
        ),
    ]
    record = new_trust_root(secrets["nce-root"], parties)
    trust_path = write_trust_root(record, root / "trust.json", secrets["nce-root"])
    table, _ = credit_table(n_rows, seed)
    csv = root / "credit.csv"
    pacsv.write_csv(table, csv)
    return World(root, keys, trust_path, record, secrets, csv, table)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("generic-world"))


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> tuple[TableTraining, Path, Path]:
    """The module's table trained once: (result, bundle directory, lab directory)."""
    tmp = tmp_path_factory.mktemp("generic-trained")
    lab_dir = tmp / "lab"
    result = train_table(
        world.csv,
        target="default",
        id_column="loan_id",
        lab_key=world.secrets["nce-lab"],
        out_dir=tmp / "bundle",
        trust=world.trust,
        lab_dir=lab_dir,
        now=NOW,
    )
    return result, tmp / "bundle", lab_dir


def _train(world: World, out: Path, **kwargs: Any) -> TableTraining:
    args: dict[str, Any] = {
        "target": "default",
        "id_column": "loan_id",
        "lab_key": world.secrets["nce-lab"],
        "out_dir": out,
        "now": NOW,
    }
    path = kwargs.pop("path", world.csv)
    args.update(kwargs)
    return train_table(path, **args)


# --------------------------------------------------------------------------- happy path


def test_result_reports_cross_validation(trained, world):
    result, bundle, _ = trained
    assert result.n_rows == N_ROWS and result.n_events == int(np.sum(world.table["default"]))
    assert result.cv_folds == CV_FOLDS == len(result.cv_auc) == len(result.cv_families)
    assert result.cv_auc_mean == pytest.approx(np.mean(result.cv_auc), abs=1e-6)
    assert 0.7 < result.cv_auc_mean < 0.95
    assert result.evaluation.n == N_ROWS and result.evaluation.ece < 0.05
    assert result.family in {"hgb", "scorecard"} and result.parity.passed
    assert result.positive == "1" and result.source == "TAX"
    assert result.index == "financial_stability" and result.bundle == str(bundle)
    assert "TAX__loan_id" not in result.features and "TAX__default" not in result.features
    assert "age" in result.outside_contract and len(result.outside_contract) == len(result.features)
    assert {"TAX__purpose", "TAX__has_collateral", "TAX__application_date"} <= set(result.features)
    assert TableTraining.from_json(result.to_json()) == result


def test_bundle_verifies_as_the_body_would(trained, world, tmp_path):
    result, bundle, _ = trained
    verified = verify_bundle(bundle, trust=world.trust, audience="TAX", state_dir=tmp_path, now=NOW)
    manifest = verified.manifest
    assert verified.signer == "nce-lab" and manifest.lab == "nce-lab"
    assert manifest.release_id == result.release_id and manifest.sequence == 1
    assert [m.name for m in manifest.models] == ["TAX.financial_stability"]
    entry = manifest.models[0]
    assert entry.source == "TAX" and entry.input_names == result.features
    assert manifest.cutoffs_for("financial_stability") == result.cutoffs
    notes = manifest.training
    assert notes["kind"] == "train-table" and notes["table"] == "credit.csv"
    assert notes["table_sha256"] == sha256_file(world.csv) == result.table_sha256
    assert notes["target"] == "default" and notes["id_column"] == "loan_id"
    assert json.loads(notes["cv_auc"]) == list(result.cv_auc)
    assert ScoreScale.from_json(notes["scale:financial_stability"]) == result.scale
    assert verified.parity["TAX.financial_stability"] <= 1e-5
    assert sorted(manifest.files) == [
        "models/TAX.financial_stability.features.json",
        "models/TAX.financial_stability.onnx",
        "models/TAX.financial_stability.reference.json",
        "parity.json",
    ]


def test_body_replays_the_features_on_its_own_table(trained, world, tmp_path):
    """A body's table with the same (bare) column names runs through the gated model."""
    result, bundle, _ = trained
    verified = verify_bundle(bundle, trust=world.trust, audience="TAX", state_dir=tmp_path, now=NOW)
    spec = FeatureSpec.from_json(
        (bundle / "models/TAX.financial_stability.features.json").read_text()
    )
    _, body_table = read_table(world.csv, id_column="loan_id")
    X = spec.transform(body_table)
    assert X.shape == (N_ROWS, len(result.features)) and np.isnan(X).any()
    p = verified.models["TAX.financial_stability"].run(X)
    y = world.table["default"].to_numpy()
    assert auc(y, p) > result.cv_auc_mean  # in-sample, so better than cross-validated
    kinds = {c.field: c.encoding for c in spec.columns}
    assert kinds["purpose"] is FeatureKind.CATEGORY and kinds["age"] is FeatureKind.NUMERIC
    assert kinds["has_collateral"] is FeatureKind.BOOL
    assert kinds["application_date"] is FeatureKind.DATE


def test_agency_runtime_scores_a_bundle_of_a_body_extract(world, tmp_path):
    """A TAX extract plus an outcome column: the body scores it with its own runtime."""
    economy = generate_economy(900, seed=6, sources=("TAX",))
    extract = economy.sources["TAX"]
    outcomes = economy.observed_outcomes().select(["bin", "outcome_financial_stability"])
    table = extract.join(outcomes, "bin", join_type="inner")
    pq.write_table(table, tmp_path / "tax_outcomes.parquet")
    pq.write_table(extract, tmp_path / "TAX.parquet")
    result = _train(
        world, tmp_path / "bundle", path=tmp_path / "tax_outcomes.parquet",
        target="outcome_financial_stability", id_column="bin", trust=world.trust,
    )  # fmt: skip
    assert result.outside_contract == () and "taxpayer_name" in result.dropped
    scored = score_population(
        tmp_path / "bundle", tmp_path / "TAX.parquet", source="TAX",
        key=world.secrets["tax-body"], out=tmp_path / "batch", state_dir=tmp_path / "state",
        trust=world.trust, now=NOW, as_of=dt.date(2026, 3, 1),
    )  # fmt: skip
    assert scored.release_id == result.release_id and scored.entities == extract.num_rows
    assert scored.indexes == ("financial_stability",)


def test_lab_dir_records_the_release(trained):
    result, _, lab_dir = trained
    lab = LabDir(lab_dir)
    assert result.release_id in lab.read_registry().releases
    assert next_sequence(lab_dir) == 2
    assert "train-table" in lab.audit_path.read_text()


def test_fit_table_cross_validates_on_the_given_folds():
    table, _ = credit_table(600, seed=4)
    prepared = prepare_table(table, target="default", id_column="loan_id", source="TAX")
    fit = fit_table(prepared.X, prepared.y, seed=2, folds=3)
    assert len(fit.fold_auc) == 3 and fit.oof.shape == (600,)
    assert np.all((fit.oof > 0) & (fit.oof < 1))
    for (_, held_out), area in zip(cv_splits(prepared.y, 2, 3), fit.fold_auc, strict=True):
        assert area == pytest.approx(auc(prepared.y[held_out], fit.oof[held_out]), abs=1e-6)


def test_parquet_and_string_target_with_positive(world, tmp_path):
    table = world.table.slice(0, 800)
    labels = pa.array(np.where(table["default"].to_numpy() == 1, "bad", "good"))
    table = table.set_column(table.column_names.index("default"), "status", labels)
    path = tmp_path / "credit.parquet"
    pq.write_table(table, path)
    _, read = read_table(path, id_column="loan_id")
    assert read.equals(table)
    with pytest.raises(LabError) as err:
        prepare_table(read, target="status", id_column="loan_id", source="TAX")
    assert err.value.code == "ambiguous_target" and "--positive" in str(err.value)
    prepared = prepare_table(
        read, target="status", id_column="loan_id", source="TAX", positive="bad",
        drop=["region"],
    )  # fmt: skip
    assert (
        prepared.positive == "bad" and prepared.y.sum() == (labels.to_numpy(False) == "bad").sum()
    )
    assert prepared.dropped == {"region": "--drop"}
    assert "TAX__region" not in prepared.spec.names


def test_a_failed_parity_check_writes_nothing(world, tmp_path, monkeypatch):
    real = generic.to_onnx
    rng = np.random.default_rng(0)

    def wrong_model(model: Any, n_features: int, **kwargs: Any) -> bytes:
        other = LogisticRegression().fit(rng.normal(size=(50, n_features)), np.arange(50) % 2)
        return real(other, n_features)

    monkeypatch.setattr(generic, "to_onnx", wrong_model)
    small = tmp_path / "small.csv"
    pacsv.write_csv(world.table.slice(0, 600), small)
    with pytest.raises(ParityError):
        _train(world, tmp_path / "bundle", path=small)
    assert not (tmp_path / "bundle").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.csv"]


# --------------------------------------------------------------------------- refusals


def _table(**columns: Any) -> pa.Table:
    n = 200
    base: dict[str, Any] = {
        "id": [f"A{i:04d}" for i in range(n)],
        "x": np.arange(n, dtype=np.float64),
        "y": (np.arange(n) % 4 == 0).astype(np.int64),
    }
    base.update(columns)
    return pa.table(base)


def _prepare_error(table: pa.Table, **kwargs: Any) -> LabError:
    args: dict[str, Any] = {"target": "y", "id_column": "id", "source": "TAX"}
    args.update(kwargs)
    with pytest.raises(LabError) as err:
        prepare_table(table, **args)
    return err.value


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"target": "outcome"}, "no_target_column"),
        ({"id_column": "key"}, "no_id_column"),
        ({"target": "id"}, "bad_option"),
        ({"drop": ["nope"]}, "no_such_column"),
        ({"positive": "7"}, "bad_option"),
    ],
)
def test_bad_columns_and_options(kwargs, code):
    err = _prepare_error(_table(), **kwargs)
    assert err.code == code and err.exit_code == 2


def test_target_must_be_binary_and_complete():
    err = _prepare_error(_table(y=np.arange(200) % 3))
    assert err.code == "non_binary_target" and "found 3: '0', '1', '2'" in str(err)
    err = _prepare_error(_table(y=np.zeros(200, dtype=np.int64)))
    assert err.code == "non_binary_target"
    missing = pa.array(np.arange(200) % 2, mask=np.arange(200) == 17)
    err = _prepare_error(_table(y=missing))
    assert err.code == "bad_target" and "data row 18" in str(err)
    err = _prepare_error(_table(y=(np.arange(200) < MIN_EVENTS - 1).astype(np.int64)))
    assert err.code == "too_few_events"
    booleans = prepare_table(
        _table(y=np.arange(200) % 2 == 0), target="y", id_column="id", source="TAX"
    )
    assert booleans.positive == "true" and booleans.y.sum() == 100
    floats = prepare_table(
        _table(y=(np.arange(200) % 2).astype(float)), target="y", id_column="id", source="TAX"
    )
    assert floats.positive == "1"


def test_ids_must_be_unique_and_are_never_shown():
    ids = [f"A{i:04d}" for i in range(200)]
    ids[150] = ids[20] = "990101300122"
    err = _prepare_error(_table(id=ids))
    assert err.code == "duplicate_id"
    assert "data row 151 repeats the id of data row 21" in str(err)
    assert "990101300122" not in str(err)
    err = _prepare_error(_table(id=pa.array([*ids[:199], None])))
    assert err.code == "bad_id_column" and "data row 200" in str(err)


def test_columns_that_are_no_features():
    n = 200
    rare = pa.array(np.arange(n, dtype=float), mask=np.arange(n) >= 10)
    prepared = prepare_table(
        _table(bin=[f"{i}" for i in range(n)], const=np.ones(n), rare=rare,
               empty=pa.nulls(n), names=[f"name {i}" for i in range(n)]),
        target="y", id_column="id", source="TAX",
    )  # fmt: skip
    assert prepared.spec.names == ("TAX__x",)
    assert prepared.dropped["bin"] == "an identifier column name"
    assert prepared.dropped["const"] == prepared.dropped["names"]
    assert "observed in 10 row(s)" in prepared.dropped["rare"]
    assert prepared.dropped["empty"] == "no value in any row"
    err = _prepare_error(_table(x=np.ones(200)))
    assert err.code == "no_features"


def test_columns_of_a_body_contract():
    """A body's own extract: contract fields keep their catalogue meaning."""
    n = 200
    table = _table(
        TAX__tax_debt_kzt=np.arange(n, dtype=float),
        staff_count=np.arange(n) % 7,
        registration_date=[f"20{10 + i % 12}-0{1 + i % 9}" for i in range(n)],
        taxpayer_name=[f"Name {i % 30}" for i in range(n)],
        LEGAL_STATS__inspections_3y=np.arange(n) % 3,
    )
    prepared = prepare_table(table, target="y", id_column="id", source="TAX")
    spec = prepared.spec
    assert spec.names == (
        "TAX__x", "TAX__tax_debt_kzt", "TAX__staff_count", "TAX__registration_date",
    )  # fmt: skip
    assert [c.field for c in spec.columns][1] == "tax_debt_kzt"
    assert spec.columns[3].encoding is FeatureKind.DATE  # a generalised date string
    assert prepared.outside_contract == ("x",)
    assert prepared.dropped == {
        "taxpayer_name": "a direct identifier of the TAX contract",
        "LEGAL_STATS__inspections_3y": "a column of source LEGAL_STATS, not TAX",
    }
    twice = _table(TAX__x=np.arange(n, dtype=float))
    assert _prepare_error(twice).code == "bad_feature_spec"
    bad_date = table.set_column(
        table.column_names.index("registration_date"), "registration_date", pa.array(["soon"] * n)
    )
    assert _prepare_error(bad_date).code == "bad_date_string"


def test_unusable_columns_are_refused():
    lists = pa.array([[1, 2]] * 200)
    assert _prepare_error(_table(z=lists)).code == "bad_feature_type"
    assert _prepare_error(_table(**{"x ": np.ones(200)})).code == "bad_column_name"
    err = _prepare_error(_table(who=["990101300122"] * 150 + ["other"] * 50))
    assert err.code == "identifier_in_features" and err.exit_code == 3
    assert "990101300122" not in str(err)
    assert _prepare_error(_table().slice(0, 99)).code == "table_too_small"


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really PAR1")
    for path in (tmp_path / "missing.csv", tmp_path, bad):
        with pytest.raises(LabError) as err:
            read_table(path)
        assert err.value.code == "unreadable_table" and str(path) in str(err.value)


def test_bad_options_and_keys_write_nothing(world, tmp_path):
    cases = [
        ({"index": "credit"}, "bad_option"),
        ({"source": "BANK"}, "bad_option"),
        ({"valid_days": 0}, "bad_option"),
        ({"sequence": 0}, "bad_option"),
    ]
    for kwargs, code in cases:
        with pytest.raises(LabError) as err:
            _train(world, tmp_path / "bundle", **kwargs)
        assert err.value.code == code
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ValidationError) as err:
        _train(world, tmp_path / "full")
    assert err.value.code == "bundle_exists"
    with pytest.raises(TrustError):
        _train(world, tmp_path / "bundle", lab_key=world.secrets["tax-body"], trust=world.trust)
    assert not (tmp_path / "bundle").exists()
