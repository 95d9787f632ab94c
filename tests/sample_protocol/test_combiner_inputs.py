"""``sample_protocol.combiner_inputs``: the combiner's input matrix, same as the lab's."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nce_model_lab.training.combiner import Combiner
from nce_model_lab.training.selection import Selection
from sample_protocol.combiner_inputs import (
    LOGIT_CLIP,
    CombinerLayout,
    EncodedSource,
    combiner_matrix,
    log_odds,
    present_rows,
)
from sample_protocol.errors import ValidationError
from sample_protocol.features import FeatureColumn, FeatureKind, FeatureSpec

SPEC = FeatureSpec(
    columns=(
        FeatureColumn("COURT", "civil_cases_3y", FeatureKind.NUMERIC),
        FeatureColumn("COURT", "last_act_type", FeatureKind.CATEGORY, ("decision", "ruling")),
        FeatureColumn("UTILITIES", "last_nonpayment_month", FeatureKind.DATE),
        FeatureColumn("UTILITIES", "arrears_kzt", FeatureKind.NUMERIC),
        FeatureColumn("TRANSPORT", "has_international_certificate", FeatureKind.BOOL),
    )
)
N = 200


def _tables() -> tuple[pa.Table, dict[str, pa.Table], dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    court = rng.random(N) < 0.4
    util = rng.random(N) < 0.3
    trans = rng.random(N) < 0.2

    def where(mask: np.ndarray, values: list) -> list:
        return [v if m else None for v, m in zip(values, mask, strict=True)]

    months = [dt.date(2020 + i % 5, 1 + i % 12, 1) for i in range(N)]
    cols = {
        "COURT__civil_cases_3y": pa.array(where(court, rng.integers(0, 9, N).tolist()), pa.int64()),
        "COURT__last_act_type": pa.array(
            where(court, rng.choice(["decision", "ruling", "court_order"], N).tolist())
        ),
        "UTILITIES__last_nonpayment_month": pa.array(where(util, months), pa.date32()),
        "UTILITIES__arrears_kzt": pa.array(where(util, rng.random(N).tolist()), pa.float64()),
        "TRANSPORT__has_international_certificate": pa.array(
            where(trans, (rng.random(N) < 0.5).tolist()), pa.bool_()
        ),
    }
    joined = pa.table(cols)
    per_source = {
        s: pa.table({k.split("__")[1]: v for k, v in cols.items() if k.startswith(s + "__")})
        for s in ("COURT", "UTILITIES", "TRANSPORT")
    }
    p = rng.random(N)
    p[rng.random(N) < 0.25] = np.nan
    p[:2] = (0.0, 1.0)
    return joined, per_source, {"TAX": p, "LEGAL_STATS": np.full(N, 0.3)}


def _lab_combiner() -> Combiner:
    return Combiner(
        index="conscientiousness",
        preliminary_sources=("TAX", "LEGAL_STATS", "CIVIL_STATUS"),
        direct_sources=("COURT", "UTILITIES", "TRANSPORT"),
        direct_spec=SPEC,
        model=None,
        selection=Selection(family="hgb", hgb_auc=0.0, scorecard_auc=0.0, n_validation=0),
    )


def test_the_matrix_is_the_labs_on_a_joined_table_and_on_per_source_tables():
    joined, per_source, prelim = _tables()
    lab = _lab_combiner()
    layout = CombinerLayout.from_model("conscientiousness", lab.input_names, SPEC)
    assert layout.input_names == lab.input_names
    expected = lab.matrix(joined, prelim)  # CIVIL_STATUS sent nothing at all
    np.testing.assert_array_equal(combiner_matrix(layout, prelim, joined), expected)
    cache: dict = {}
    mine = combiner_matrix(layout, prelim, per_source, cache=cache)
    np.testing.assert_array_equal(mine, expected)
    np.testing.assert_array_equal(combiner_matrix(layout, prelim, per_source, cache=cache), mine)
    assert mine.dtype == np.float32 and mine.shape == (N, layout.n_inputs)


def test_a_direct_source_absent_from_the_mapping_is_missing_everywhere():
    _, per_source, prelim = _tables()
    layout = CombinerLayout.from_model("conscientiousness", _lab_combiner().input_names, SPEC)
    del per_source["UTILITIES"]
    X = combiner_matrix(layout, prelim, per_source)
    util = next(g for g in layout.groups() if g.source == "UTILITIES")
    assert np.isnan(X[:, list(util.columns)]).all() and (X[:, util.missing] == 1).all()
    with pytest.raises(ValueError, match="n_rows"):
        combiner_matrix(layout, prelim, {})
    assert combiner_matrix(layout, prelim, {}, n_rows=N).shape == (N, layout.n_inputs)
    with pytest.raises(ValidationError) as err:
        combiner_matrix(layout, prelim, {"COURT": per_source["COURT"].slice(0, 5)}, n_rows=N)
    assert err.value.code == "combiner_rows"


def test_groups_cover_every_input_once():
    layout = CombinerLayout.from_model("conscientiousness", _lab_combiner().input_names, SPEC)
    groups = layout.groups()
    assert [g.source for g in groups] == [
        "TAX", "LEGAL_STATS", "CIVIL_STATUS", "COURT", "UTILITIES", "TRANSPORT",
    ]  # fmt: skip
    used = sorted(i for g in groups for i in (*g.columns, g.missing))
    assert used == list(range(layout.n_inputs))
    names = layout.input_names
    assert all(names[g.missing] == f"{g.source}__missing" for g in groups)
    assert layout.source_spec("UTILITIES").names == (
        "UTILITIES__last_nonpayment_month",
        "UTILITIES__arrears_kzt",
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda n: n[1:],  # a log-odds input dropped
        lambda n: (n[1], n[0], *n[2:]),  # two swapped
        lambda n: (*n, "EXTRA__missing"),  # one too many
        lambda n: n[:-1],  # one missing flag short
    ],
)
def test_names_out_of_order_are_refused(edit):
    names = edit(_lab_combiner().input_names)
    with pytest.raises(ValidationError) as err:
        CombinerLayout.from_model("conscientiousness", names, SPEC)
    assert err.value.code == "combiner_layout"


def test_log_odds_clip_and_present_rows():
    out = log_odds([0.0, 0.5, 1.0, np.nan])
    assert out[0] == pytest.approx(-LOGIT_CLIP) and out[2] == pytest.approx(LOGIT_CLIP)
    assert out[1] == 0.0 and np.isnan(out[3])
    joined, _, _ = _tables()
    court = FeatureSpec(columns=SPEC.columns[:2])
    assert (present_rows(joined, court) == joined["COURT__civil_cases_3y"].is_valid()).all()
    assert not present_rows(pa.table({"x": [1, 2]}), court).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), drop=st.booleans())
def test_an_encoded_source_gathers_the_matrix_of_the_taken_rows(seed: int, drop: bool):
    """Whole feeds encoded once and gathered per block give the matrix of the block's rows
    taken from the feeds (entities without a row read as nulls)."""
    _, per_source, prelim = _tables()
    rng = np.random.default_rng(seed)
    if drop:  # a feed without one of the columns the spec names
        per_source["UTILITIES"] = per_source["UTILITIES"].drop_columns(["arrears_kzt"])
    layout = CombinerLayout.from_model("conscientiousness", _lab_combiner().input_names, SPEC)
    block = rng.integers(0, N, 64)  # entities of a block (rows of the feeds, repeats too)
    taken, gathered = {}, {}
    for source, table in per_source.items():
        order = rng.permutation(N)[: rng.integers(0, N + 1)]  # a feed: some rows, shuffled
        feed = table.take(pa.array(order))
        pos = np.full(N, -1, dtype=np.int64)
        pos[order] = np.arange(order.size)
        at = pos[block]
        taken[source] = feed.take(pa.array(at, mask=at < 0))
        columns = [c for c in SPEC.columns if c.source == source]
        gathered[source] = EncodedSource.encode(feed, columns).gather(at)
    block_prelim = {s: v[block] for s, v in prelim.items()}
    expected = combiner_matrix(layout, block_prelim, taken)
    np.testing.assert_array_equal(combiner_matrix(layout, block_prelim, gathered), expected)
