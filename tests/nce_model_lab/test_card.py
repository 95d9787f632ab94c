"""``nce_model_lab.card`` / ``card_target`` / ``card_plots``: the HTML model card.

Uses the session's trained and released lab (conftest.py). Also tests the curves that
``evaluate`` records for the card (ROC points, histogram of published values).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import itertools
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from nce_model_lab.card import MODEL_CARD_FILE, ReleaseInfo, render_card
from nce_model_lab.card_plots import model_figure
from nce_model_lab.card_target import write_card
from nce_model_lab.errors import LabError
from nce_model_lab.evaluate import roc_curve, value_histogram
from nce_model_lab.labdir import LabDir
from nce_model_lab.quality import DEFAULT_GATES, QualityGates
from nce_model_lab.trained import EVALUATION_FILE, TrainedRound
from sample_protocol.records import MANIFEST_NAME, REGISTER_AUDIENCE, ReleaseManifest
from sample_protocol.scores import ScoreScale
from tests.nce_model_lab.conftest import FORCE_REASON, copy_lab

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Every tag, attribute and text of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data
        else:
            self.text.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def assert_self_contained(page: str) -> _Page:
    """No script, no event handler, nothing loaded from elsewhere; every image a PNG."""
    parsed = parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert not {"script", "link", "iframe", "object", "embed", "base", "form"} & set(parsed.tags)
    assert not [a for a in parsed.attrs if a[1].startswith("on")]
    assert not [a for a in parsed.attrs if a[1] == "href"]
    assert "url(" not in parsed.style and "@import" not in parsed.style
    images = [v for tag, k, v in parsed.attrs if k == "src"]
    assert images and all(tag == "img" for tag, k, _ in parsed.attrs if k == "src")
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    return parsed


@pytest.fixture(scope="module")
def round_page(trained) -> str:
    _, rnd = trained
    return render_card(rnd, gates=DEFAULT_GATES)


# -- the page --------------------------------------------------------------------------------


def test_round_card_is_self_contained_and_has_one_figure_per_model(trained, round_page):
    _, rnd = trained
    parsed = assert_self_contained(round_page)
    assert parsed.tags.count("img") == len(rnd.models)
    assert "not released" in round_page


def test_round_card_shows_every_measure_of_every_model(trained, round_page):
    _, rnd = trained
    text = " ".join(parse(round_page).text)
    for m in rnd.models:
        ev = m.evaluation
        assert f"<h3>{m.name}</h3>" in round_page
        for value in (f"{ev.auc:.3f}", f"{ev.gini:.3f}", f"{ev.ks:.3f}", f"{ev.brier:.4f}"):
            assert value in text, (m.name, value)
        assert f"{ev.ece:.3f}" in text and f"{ev.psi:.3f}" in text
        for b in ev.calibration:  # the calibration table, bin by bin
            assert f"{b.lower:.4f} to {b.upper:.4f}" in text
        assert f"{m.cutoffs.medium_from:.4f}" in text and f"{m.cutoffs.high_from:.4f}" in text
        assert f"{m.scale.value(m.cutoffs.high_from)} to {m.scale.max_value}" in text
        for rate in ev.category_rates.values():
            assert f"{rate.n:,}" in text
    for item in ("AUC (95% interval)", "Gini", "KS", "Brier score", "ECE from sampling alone"):
        assert item in text
    assert "PSI, training vs held-out scores" in text


def test_round_card_has_the_training_record_gates_and_rule(trained, round_page):
    _, rnd = trained
    text = " ".join(parse(round_page).text)
    assert rnd.training_sha256 in text and rnd.request_id in text
    assert f"train {rnd.split['train']:,}" in text
    for name, version in rnd.libraries.items():
        assert f"library {name}" in text and version in text
    assert "quantile rule" in text and "10% highest" in text and "next 20% medium" in text
    assert "0.600" in text and "0.980" in text and "0.050" in text  # the gates
    assert "FAILS (" in text  # the CUSTOMS models, not overridden in a round card
    for m in rnd.models:
        assert m.sha256 in text
    assert "price of privacy" in text and "never enters the lab" in text
    assert "Taxpayer conscientiousness" in text  # the catalogue's index names


def test_every_value_is_escaped(trained):
    _, rnd = trained
    evil = "<script>alert(1)</script>"
    model = dataclasses.replace(rnd.models[0], name=evil, family='x" onload="y')
    odd = dataclasses.replace(rnd, models=(model,), skipped={"A.b": "<b>bold</b>"})
    release = ReleaseInfo("rel1-x", 1, ("<i>",), rnd.trained_at, rnd.trained_at, "lab & co")
    page = render_card(odd, gates=QualityGates(), overrides=(f"{evil}: forced",), release=release)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page and "<i>" not in page
    assert 'onload="y' not in page and "lab &amp; co" in page
    assert_self_contained(page)


def test_an_old_evaluation_without_curves_still_renders(trained):
    _, rnd = trained
    m = rnd.models[0]
    old = dataclasses.replace(
        m, evaluation=dataclasses.replace(m.evaluation, roc=(), value_histogram=())
    )
    assert model_figure(old).startswith(PNG)
    page = render_card(dataclasses.replace(rnd, models=(old,)), gates=None)
    assert_self_contained(page)
    assert "not checked" in page


def test_the_figure_is_a_deterministic_png(trained):
    from nce_model_lab import card_plots

    _, rnd = trained
    m = rnd.model("combiner.payment_discipline")
    png = card_plots._draw(m)
    assert png.startswith(PNG) and card_plots._draw(m) == png
    assert model_figure(m) == png


# -- the cards in the bundles ----------------------------------------------------------------


def test_each_bundle_carries_the_card_of_its_own_models(released):
    _, bundles = released
    for bundle in bundles:
        manifest = ReleaseManifest.from_json((bundle / MANIFEST_NAME).read_bytes())
        page = (bundle / MODEL_CARD_FILE).read_text(encoding="utf-8")
        assert_self_contained(page)
        mine = {m.name for m in manifest.models}
        headings = {h for h in page.split("<h3>")[1:] for h in [h.split("</h3>")[0]]}
        assert headings == mine, bundle.name
        assert f"release {manifest.release_id} for {bundle.name}" in page
        if bundle.name == REGISTER_AUDIENCE:
            assert all(name.startswith("combiner.") for name in mine)
        else:
            assert "combiner." not in page
            others = {b.name for b in bundles} - {bundle.name, REGISTER_AUDIENCE}
            assert not [o for o in others if f"{o}." in page]
        if manifest.quality_overrides:
            text = html.unescape(page)
            assert all(o in text for o in manifest.quality_overrides)
            assert "overridden (" in page and FORCE_REASON in text
        else:
            assert "FAILS" not in page


def test_card_of_a_bundle_is_the_card_inside_it(released, tmp_path):
    lab, bundles = released
    tax = next(b for b in bundles if b.name == "TAX")
    written = write_card(lab.lab, tax, out=tmp_path / "tax.html")
    assert written.path.read_bytes() == (tax / MODEL_CARD_FILE).read_bytes()
    assert written.audiences == ("TAX",) and written.release_id == tax.parent.name
    assert written.failures == () and written.overrides == ()


def test_card_of_a_whole_release_lists_every_model_and_override(released, trained, tmp_path):
    lab, bundles = released
    _, rnd = trained
    copy = copy_lab(lab, tmp_path / "lab")
    written = write_card(copy.lab, bundles[0].parent)
    release_id = bundles[0].parent.name
    assert written.path == LabDir(copy.lab).round_dir(rnd.request_id) / "cards" / (
        f"{release_id}.html"
    )
    assert set(written.models) == {m.name for m in rnd.models}
    assert written.audiences[-1] == REGISTER_AUDIENCE and len(written.audiences) == len(bundles)
    assert written.failures and written.overrides
    assert {f.model for f in written.failures} == {o.split(": ")[0] for o in written.overrides}
    page = written.path.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert page.count("<img") == len(rnd.models)


def test_card_of_a_round(trained, tmp_path):
    lab, rnd = trained
    copy = copy_lab(lab, tmp_path / "lab")
    written = write_card(copy.lab, copy.request_id, gates=QualityGates(min_auc=0.5, max_ece=0.2))
    assert written.path == LabDir(copy.lab).round_dir(rnd.request_id) / "cards" / "round.html"
    assert written.release_id is None and written.failures == ()
    assert "every gate" in written.path.read_text(encoding="utf-8")
    default = write_card(copy.lab, copy.request_id, out=tmp_path / "c" / "card.html")
    assert default.path == tmp_path / "c" / "card.html" and default.failures


# -- refusals --------------------------------------------------------------------------------


def test_a_target_that_is_neither_round_nor_release_is_refused(released, tmp_path):
    lab, bundles = released
    with pytest.raises(LabError) as err:
        write_card(lab.lab, "req-20250303-aaaaaaaaaaaaaaaa", out=tmp_path / "x.html")
    assert err.value.code == "card_target_unknown" and "req-20250303-" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabError) as err:
        write_card(lab.lab, tmp_path / "empty", out=tmp_path / "x.html")
    assert err.value.code == "card_not_a_release" and "manifest.json" in str(err.value)
    with pytest.raises(LabError) as err:
        write_card(lab.lab, bundles[0], out=tmp_path / "x.html", gates=QualityGates())
    assert err.value.code == "bad_option" and "--min-auc" in str(err.value)
    assert not (tmp_path / "x.html").exists()


def test_bundles_of_two_releases_are_refused(released, tmp_path):
    lab, bundles = released
    mixed = tmp_path / "mixed"
    shutil.copytree(bundles[0], mixed / "A")
    shutil.copytree(bundles[1], mixed / "B")
    manifest = json.loads((mixed / "B" / MANIFEST_NAME).read_bytes())
    manifest["release_id"] = "rel9-20250303-aaaaaaaaaaaaaaaa"
    (mixed / "B" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(LabError) as err:
        write_card(lab.lab, mixed, out=tmp_path / "x.html")
    assert err.value.code == "card_mixed_release" and "rel9-" in str(err.value)


def test_a_release_of_a_round_trained_again_is_refused(released, tmp_path):
    lab, bundles = released
    copy = copy_lab(lab, tmp_path / "lab")
    path = copy.models_dir / EVALUATION_FILE
    rnd = TrainedRound.from_json(path.read_bytes())
    first = dataclasses.replace(rnd.models[0], sha256="0" * 64)
    path.write_bytes(dataclasses.replace(rnd, models=(first, *rnd.models[1:])).canonical_bytes())
    bundle = next(b for b in bundles if b.name == rnd.models[0].source)
    with pytest.raises(LabError) as err:
        write_card(copy.lab, bundle, out=tmp_path / "x.html")
    assert err.value.code == "card_round_changed" and rnd.models[0].name in str(err.value)
    path.write_bytes(dataclasses.replace(rnd, training_sha256="1" * 64).canonical_bytes())
    with pytest.raises(LabError) as err:
        write_card(copy.lab, bundle, out=tmp_path / "x.html")
    assert err.value.code == "card_round_changed" and "1" * 64 in str(err.value)
    assert not (tmp_path / "x.html").exists()


# -- the curves evaluate records for the card -------------------------------------------------


def test_roc_curve_matches_sklearn_and_keeps_its_ends():
    rng = np.random.default_rng(3)
    p = np.round(rng.random(500), 2)  # ties
    y = (rng.random(500) < p).astype(int)
    full = roc_curve(y, p, max_points=10_000)
    fpr, tpr, _ = sk_roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose([q.fpr for q in full], fpr, atol=1e-12)
    np.testing.assert_allclose([q.tpr for q in full], tpr, atol=1e-12)
    short = roc_curve(y, p, max_points=11)
    assert len(short) == 11 and short[0] == full[0] and short[-1] == full[-1]
    assert (short[0].fpr, short[0].tpr, short[-1].fpr, short[-1].tpr) == (0.0, 0.0, 1.0, 1.0)
    assert all(a.fpr <= b.fpr and a.tpr <= b.tpr for a, b in itertools.pairwise(short))
    with pytest.raises(LabError) as err:
        roc_curve(y, p, max_points=1)
    assert err.value.code == "bad_points"


def test_value_histogram_counts_every_entity_once():
    rng = np.random.default_rng(4)
    p = rng.beta(1, 8, 1000)
    y = (rng.random(1000) < p).astype(int)
    scale = ScoreScale(base_value=40, base_probability=0.08, points_to_double_odds=10)
    bins = value_histogram(y, p, scale)
    assert [(b.lower, b.upper) for b in bins][:2] == [(1, 5), (6, 10)]
    assert bins[-1].upper == 99 and len(bins) == 20
    assert sum(b.negatives + b.positives for b in bins) == 1000
    assert sum(b.positives for b in bins) == int(y.sum())
    with pytest.raises(LabError) as err:
        value_histogram(y, p, scale, width=0)
    assert err.value.code == "bad_bins"


def test_trained_models_record_both_curves(trained):
    _, rnd = trained
    for m in rnd.models:
        ev = m.evaluation
        assert 2 <= len(ev.roc) <= 201 and (ev.roc[-1].fpr, ev.roc[-1].tpr) == (1.0, 1.0)
        assert sum(b.negatives + b.positives for b in ev.value_histogram) == ev.n
