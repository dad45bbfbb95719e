"""The flat-table commands as a user runs them: outputs, and one-line errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from conftest import make_flat_leads

from leadscore.cli.main import main
from leadscore.scoring.scorer import OUTPUT_COLUMNS


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    leads = make_flat_leads(600, seed=1)
    train = root / "train.csv"
    leads.to_csv(train, index=False)
    model = root / "model"
    assert main(["fit", "--data", str(train), "--target", "converted", "--id", "lead_id",
                 "--time", "created", "--out", str(model)]) == 0
    return root, model, leads


def run_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    return err


def test_fit_then_score_keeps_order_and_ids(fitted, tmp_path):
    root, model, leads = fitted
    new = leads.drop(columns=["converted"]).sample(frac=1.0, random_state=3)
    new.loc[new.index[0], "source"] = "Trade Show"          # a category never seen in training
    new = new.drop(columns=["budget"])                      # an optional column left out
    path, out = tmp_path / "new.parquet", tmp_path / "scores.csv"
    new.to_parquet(path)
    assert main(["score", "--model", str(model), "--input", str(path), "--output", str(out),
                 "-q"]) == 0
    scores = pd.read_csv(out)
    assert scores["lead_id"].tolist() == new["lead_id"].tolist()
    assert list(scores.columns) == [*OUTPUT_COLUMNS, "run_id"]
    assert set(scores["tier"]) <= {"HIGH_PRIORITY", "MEDIUM_PRIORITY", "NURTURE", "LOW_PRIORITY"}
    high = scores["probability"] >= 0.7
    assert (scores.loc[high, "tier"] == "HIGH_PRIORITY").all()
    assert scores["probability"].between(0, 1).all()
    assert (scores["score"] == (scores["probability"] * 100).round()).all()


def test_score_without_id_writes_row_numbers(tmp_path):
    leads = make_flat_leads(300, seed=2)
    leads.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", "--data", str(tmp_path / "t.csv"), "--target", "converted",
                 "--drop", "lead_id", "--candidates", "logistic", "--out", str(tmp_path / "m")]) == 0
    leads.head(5).to_csv(tmp_path / "s.csv", index=False)
    assert main(["score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "s.csv"),
                 "--output", str(tmp_path / "o.parquet"), "-q"]) == 0
    assert pd.read_parquet(tmp_path / "o.parquet")["lead_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert main(["score", "--model", str(tmp_path / "m"), "--input", str(tmp_path / "s.csv"),
                 "--output", str(tmp_path / "o2.parquet"), "-q", "--chunk-size", "2"]) == 0
    assert pd.read_parquet(tmp_path / "o2.parquet")["lead_id"].tolist() == ["1", "2", "3", "4", "5"]


def test_fit_errors(capsys, tmp_path):
    assert "file not found" in run_error(capsys, ["fit", "--data", str(tmp_path / "nope.csv"),
                                                  "--target", "y", "--out", str(tmp_path / "m")])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "empty" in run_error(capsys, ["fit", "--data", str(empty), "--target", "y",
                                         "--out", str(tmp_path / "m")])
    leads = make_flat_leads(200)
    path = tmp_path / "l.csv"
    leads.to_csv(path, index=False)
    err = run_error(capsys, ["fit", "--data", str(path), "--target", "outcome",
                             "--out", str(tmp_path / "m")])
    assert "target column 'outcome' not found" in err
    err = run_error(capsys, ["fit", "--data", str(path), "--target", "region",
                             "--out", str(tmp_path / "m")])
    assert "not binary" in err
    leads.loc[3, "lead_id"] = leads.loc[4, "lead_id"]
    leads.to_csv(path, index=False)
    err = run_error(capsys, ["fit", "--data", str(path), "--target", "converted", "--id",
                             "lead_id", "--out", str(tmp_path / "m")])
    assert "duplicated" in err and leads.loc[4, "lead_id"] in err
    assert not (tmp_path / "m").exists()


def test_score_errors(capsys, fitted, tmp_path):
    root, model, leads = fitted
    out = tmp_path / "scores.csv"
    path = tmp_path / "x.csv"
    leads.drop(columns=["created"]).to_csv(path, index=False)
    err = run_error(capsys, ["score", "--model", str(model), "--input", str(path),
                             "--output", str(out)])
    assert "missing required column(s): created" in err
    dup = leads.copy()
    dup.loc[1, "lead_id"] = dup.loc[0, "lead_id"]
    dup.to_csv(path, index=False)
    err = run_error(capsys, ["score", "--model", str(model), "--input", str(path), "--output", str(out),
                             "--on-bad-row", "fail"])
    assert f"bad row (lead {dup.loc[1, 'lead_id']}): lead_id appears more than once" in err
    assert "no model" in run_error(capsys, ["score", "--model", str(tmp_path), "--input",
                                            str(path), "--output", str(out)])
    assert not out.exists()
    assert main(["score", "--model", str(model), "--input", str(path), "--output", str(out), "-q"]) == 0
    assert "1 bad row(s) skipped, e.g. lead " in capsys.readouterr().err
    assert len(pd.read_csv(out)) == len(dup) - 1


def test_tampered_model_is_refused(capsys, fitted, tmp_path):
    root, model, leads = fitted
    copy = tmp_path / "model"
    copy.mkdir()
    (copy / "metadata.json").write_bytes((model / "metadata.json").read_bytes())
    (copy / "model.joblib").write_bytes((model / "model.joblib").read_bytes()[:-10])
    err = run_error(capsys, ["score", "--model", str(copy), "--input", str(root / "train.csv"),
                             "--output", str(tmp_path / "o.csv")])
    assert "refusing to load" in err


@pytest.mark.parametrize("command", ["demo", "features", "split", "train", "evaluate", "export",
                                     "fit", "score", "models"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: leadscore " + command in capsys.readouterr().out


def test_console_script_reports_errors_on_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "leadscore.cli", "score", "--model", str(tmp_path),
                           "--input", "missing.csv", "--output", "o.csv"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("leadscore score: error:")
    assert "Traceback" not in proc.stderr


def test_fit_stops_on_a_leaky_column_unless_allowed(capsys, tmp_path):
    leads = make_flat_leads(600, seed=8)
    leads["sales_stage"] = leads["converted"].map({"Yes": "Closed Won", "no": "Closed Lost"})
    path = tmp_path / "l.csv"
    leads.to_csv(path, index=False)
    err = run_error(capsys, ["fit", "--data", str(path), "--target", "converted", "--id", "lead_id",
                             "--candidates", "logistic", "--out", str(tmp_path / "m")])
    assert "possible leakage" in err and "sales_stage" in err
    assert not (tmp_path / "m").exists()
    assert main(["fit", "--data", str(path), "--target", "converted", "--id", "lead_id", "--candidates",
                 "logistic", "--allow-leaky", "sales_stage", "--out", str(tmp_path / "m"), "-q"]) == 0


def test_output_equal_to_input_is_refused_and_the_input_kept(fitted, capsys, tmp_path):
    _, model, leads = fitted
    path = tmp_path / "leads.csv"
    leads.drop(columns=["converted"]).head(20).to_csv(path, index=False)
    before = path.read_bytes()
    linked = tmp_path / "same.csv"
    linked.symlink_to(path)  # another name for the same file
    for output in (path, linked, tmp_path / "." / "leads.csv"):
        err = run_error(capsys, ["score", "--model", str(model), "--input", str(path), "--output",
                                 str(output), "-q"])
        assert "--output is the input file" in err
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.run.json"))


def test_duplicate_column_names_are_refused_with_one_line(fitted, capsys, tmp_path):
    _, model, leads = fitted
    path = tmp_path / "dupes.csv"
    frame = leads.head(30)
    text = frame.to_csv(index=False).splitlines()
    text[0] = text[0].replace("region", "source")  # two columns named "source"
    path.write_text("\n".join(text) + "\n")
    err = run_error(capsys, ["fit", "--data", str(path), "--target", "converted", "--out",
                             str(tmp_path / "m")])
    assert "duplicate column names: source" in err
    err = run_error(capsys, ["score", "--model", str(model), "--input", str(path), "--output",
                             str(tmp_path / "s.csv"), "-q"])
    assert "duplicate column names: source" in err and not (tmp_path / "s.csv").exists()


def test_file_system_refusals_are_one_line(fitted, capsys, tmp_path):
    root, _, leads = fitted
    taken = tmp_path / "model.bin"
    taken.write_text("not a folder")
    err = run_error(capsys, ["fit", "--data", str(root / "train.csv"), "--target", "converted",
                             "--out", str(taken)])
    assert "is a file: give a folder for the model" in err and taken.read_text() == "not a folder"
    packed = tmp_path / "leads.csv"  # gzip content under a plain-text name
    import gzip

    packed.write_bytes(gzip.compress(leads.head(20).to_csv(index=False).encode()))
    err = run_error(capsys, ["fit", "--data", str(packed), "--target", "converted", "--out",
                             str(tmp_path / "m")])
    assert "is gzip-compressed, not text: name it leads.csv.gz" in err
