"""Model cards: built from metadata alone, true to it, escaped, written at registration, CLI."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import make_flat_leads

from leadscore.artifacts.bundle import save_bundle
from leadscore.artifacts.card import build_card, limitations
from leadscore.artifacts.card_render import to_html, to_markdown
from leadscore.artifacts.registry import Registry
from leadscore.cli.main import main
from leadscore.training.fit import fit_table

SECTIONS = ["Model details", "Intended use", "Training data and label", "Features and leakage guard",
            "Evaluation", "Calibration", "Threshold and tiers", "Quality per segment", "Known limitations"]


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    result = fit_table(make_flat_leads(600), target="converted", id_column="lead_id", time_column="created",
                       drop=["notes"], candidates=["logistic"])
    return save_bundle(result.bundle, tmp_path_factory.mktemp("card") / "model")


def test_card_of_a_fitted_model_states_its_recorded_facts(bundle_dir):
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    card = build_card(meta)
    assert [s.title for s in card.sections] == SECTIONS
    markdown = to_markdown(card)
    holdout = meta["holdout"]
    low, high = holdout["ci"]["roc_auc"]
    assert f"| {holdout['metrics']['roc_auc']:.3f} | {low:.3f} to {high:.3f} |" in markdown
    assert "validation part (time: last 20% of rows by time as validation)" in markdown
    assert f"{meta['rows']:,} labelled leads" in markdown
    assert "Dropped `notes`: dropped by request." in markdown
    for feature in meta["features"]:
        assert f"| `{feature['name']}` | {feature['kind']} |" in markdown
    assert holdout["segments"], "categorical columns with few values get per-segment figures"
    for column in holdout["segments"]:
        assert f"By `{column}`:" in markdown
    tier_names = [t["name"] for t in meta["tiers"]]
    assert all(f"| {name} |" in markdown for name in tier_names)
    plan = meta["tier_plan"]
    assert [p["name"] for p in plan] == tier_names
    assert sum(p["share"] for p in plan) == pytest.approx(1, abs=1e-3)
    assert f"{plan[-1]['name']} {100 * plan[-1]['share']:.1f}% of leads, expected conversion" in markdown
    assert "measured before the final refit on all rows" in markdown  # fit refits by default


def test_html_card_is_self_contained_with_a_reliability_chart(bundle_dir):
    meta = json.loads((bundle_dir / "metadata.json").read_text())
    page = to_html(build_card(meta))
    found = tags(page)
    assert not [t for t, _ in found if t in ("script", "link", "iframe")]
    assert not [a for _, a in found if any(str(v).startswith(("http:", "https:")) for v in a.values()
                                           if v and not v.startswith("http://www.w3.org/2000/svg"))]
    assert [t for t, _ in found if t == "h2"] and sum(t == "svg" for t, _ in found) == 1
    assert sum(t == "circle" for t, _ in found) == len(meta["holdout"]["calibration"])


def test_card_without_recorded_facts_says_so_instead_of_guessing():
    card = build_card({})
    markdown = to_markdown(card)
    assert [s.title for s in card.sections] == SECTIONS
    assert "No held-out evaluation was recorded for this version." in markdown
    assert "Leakage guard: no result recorded for this version." in markdown
    assert "No per-segment evaluation was recorded" in markdown
    assert "Version: **unregistered**, not registered" in markdown


def test_text_from_the_data_is_escaped_in_html_and_markdown():
    meta = {"features": [{"name": "<script>alert(1)</script>", "kind": "categorical", "missing_rate": 0.0},
                         {"name": "a|b", "kind": "numeric", "missing_rate": 0.5}]}
    card = build_card(meta)
    page = to_html(card)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "`a\\|b`" in to_markdown(card)  # a pipe would split the Markdown table cell


def holdout_with_segments(rows: list[dict]) -> dict:
    return {"holdout": {"metrics": {"roc_auc": 0.80, "positive_rate": 0.12},
                        "segments": {"source": rows}}}


def test_limitations_name_miscalibrated_and_weak_segments_only_when_large_enough():
    rows = [
        {"segment": "social_ads", "leads": 432, "conversion_rate": 0.025, "mean_probability": 0.122,
         "roc_auc": 0.79, "top_decile_rate": 0.07},
        {"segment": "web", "leads": 1800, "conversion_rate": 0.124, "mean_probability": 0.141,
         "roc_auc": 0.70, "top_decile_rate": 0.4},
        {"segment": "tiny", "leads": 40, "conversion_rate": 0.0, "mean_probability": 0.2, "roc_auc": 0.5,
         "top_decile_rate": 0.0},
    ]
    text = "\n".join(limitations(holdout_with_segments(rows)))
    assert "Over-predicts `source` = social_ads: 12.2% predicted on average, 2.5% observed" in text
    assert "Ranks `source` = web less well (ROC-AUC 0.700 vs 0.800 overall" in text
    assert "web:" not in text  # 14.1% vs 12.4% is within tolerance: not called miscalibrated
    assert "tiny" not in text  # 40 leads: too few to name


def test_registration_writes_the_card_and_the_cli_prints_or_writes_it(bundle_dir, tmp_path, capsys):
    registry = Registry(tmp_path / "reg")
    version = registry.register(bundle_dir, activate=True)
    folder = registry.path(version)
    written = (folder / "model_card.md").read_text()
    assert written.startswith(f"# Model card: lead conversion model {version}")
    assert "<h2>Calibration</h2>" in (folder / "model_card.html").read_text()
    assert main(["models", "card", "active", "--registry", str(tmp_path / "reg")]) == 0
    assert capsys.readouterr().out == written  # the same card as at registration
    assert main(["models", "card", version, "--registry", str(tmp_path / "reg"), "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")
    assert main(["models", "card", str(bundle_dir), "--out", str(tmp_path / "cards")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "cards/model_card.md"),
                                               str(tmp_path / "cards/model_card.html")]
    assert "Version: **unregistered**" in (tmp_path / "cards/model_card.md").read_text()


def test_cli_card_errors_are_one_line(tmp_path, capsys):
    assert main(["models", "card", "19990101000000", "--registry", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"leadscore models: error: no model version 19990101000000 in .*\n", err)
    assert main(["models", "card", "active", "--registry", str(tmp_path / "none")]) == 2
    assert "has no active model" in capsys.readouterr().err
