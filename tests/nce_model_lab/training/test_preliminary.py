"""``nce_model_lab.training.preliminary``: one source per model, no row dropped, exportable."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from nce_model_lab.errors import LabError
from nce_model_lab.onnx_export import check_parity
from nce_model_lab.training.features import MIN_OBSERVED, fit_features
from nce_model_lab.training.preliminary import PreliminaryModel
from sample_protocol.catalogue import Catalogue
from sample_protocol.features import FeatureColumn, FeatureKind, FeatureSpec


def test_every_preliminary_pair_has_a_model(federated):
    cat = Catalogue.default()
    expected = {(s.code, i) for s in cat.preliminary_sources() for i in s.informs}
    assert set(federated.preliminary.models) | set(federated.preliminary.skipped) == expected
    assert ("TAX", "financial_stability") in federated.preliminary.models


def test_inputs_come_from_one_source_contract(federated):
    cat = Catalogue.default()
    for (source, _), model in federated.preliminary.models.items():
        fields = {f.name for f in cat.source(source).model_fields()}
        assert {c.source for c in model.spec.columns} == {source}
        assert {c.field for c in model.spec.columns} <= fields
        assert all(name.startswith(f"{source}__") for name in model.spec.names)


def test_a_foreign_column_is_refused():
    spec = FeatureSpec(
        columns=(
            FeatureColumn(source="TAX", field="staff_count", encoding=FeatureKind.NUMERIC),
            FeatureColumn(source="COURT", field="civil_cases_3y", encoding=FeatureKind.NUMERIC),
        )
    )
    with pytest.raises(LabError) as err:
        PreliminaryModel("TAX", "financial_stability", spec, None, None)
    assert err.value.code == "preliminary_leakage" and "COURT" in str(err.value)


def test_no_row_dropped_for_missing_values(economy_table, federated):
    table, _ = economy_table
    model = federated.preliminary.models[("TAX", "payment_discipline")]
    assert np.isnan(model.spec.transform(table)).any()  # there are missing values...
    p = model.predict_proba(table)
    assert p.shape == (table.num_rows,) and np.isfinite(p).all()  # ...and every row scored
    oof = federated.preliminary.oof[("TAX", "payment_discipline")]
    assert oof.shape == (table.num_rows,) and np.isfinite(oof).all()


def test_selection_recorded(federated):
    for model in federated.preliminary.models.values():
        sel = model.selection
        assert sel.family in ("hgb", "scorecard")
        if sel.family == "hgb":
            assert sel.hgb_auc > sel.scorecard_auc + 0.005


@pytest.mark.parametrize("family", ["scorecard", "hgb"])
def test_onnx_export_parity(economy_table, federated, family):
    table, _ = economy_table
    models = [m for m in federated.preliminary.models.values() if m.family == family]
    if not models:
        pytest.skip(f"no {family} model chosen on this economy")
    model = models[0]
    X = model.spec.transform(table.slice(0, 2000))
    report = check_parity(model.model, model.to_onnx(), X)
    assert report.max_abs_diff <= 1e-5 and report.category_flips == 0


def test_a_barely_observed_field_is_no_feature(economy_table):
    """Regression: a field seen in a few rows could be absent from a whole calibration fold,
    and histogram gradient boosting crashed binning a column with no value."""
    table, _ = economy_table
    name = "TAX__staff_count"
    sparse = np.full(table.num_rows, None, dtype=object)
    sparse[:3] = [1, 2, 3]  # observed in 3 rows only
    table = table.set_column(table.column_names.index(name), name, pa.array(sparse, pa.int64()))
    spec = fit_features(table, [Catalogue.default().source("TAX")])
    assert "staff_count" not in {c.field for c in spec.columns}
    assert MIN_OBSERVED > 3
    # with the threshold off, the field would be a feature: the guard is what removes it
    loose = fit_features(table, [Catalogue.default().source("TAX")], min_observed=1)
    assert "staff_count" in {c.field for c in loose.columns}
