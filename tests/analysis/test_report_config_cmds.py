"""``dlnvolume config --defaults`` and ``dlnvolume report OUT`` (issue 22, item 5)."""

from __future__ import annotations

import re
import tomllib

import pytest

from analysis import experiment
from analysis.cli import main
from test_resume import TINY


def test_config_defaults_lists_every_key_with_the_default_a_run_uses(capsys):
    assert main(["config", "--defaults"]) == 0
    text = capsys.readouterr().out
    doc = tomllib.loads(text)  # a valid TOML template
    # every key of every table is there, set or commented out, with its meaning
    for table, keys in experiment._spec_keys().items():
        for key in keys:
            pat = rf"^(# )?{re.escape(key)} = .+\S"
            section = text.split(f"[{table}]", 1)[1] if table else text
            assert re.search(pat, section, re.M), (table, key)
    assert set(experiment.KEY_DOCS) == {(t, k) for t, keys in experiment._spec_keys().items() for k in keys}
    # the values printed are the defaults: parsing them back (with a task) gives the default configuration
    doc["task"] = {"kind": "diagonal_2x2"}
    ref = doc.pop("references")[0]
    parsed = experiment.parse_config(doc)
    assert parsed == experiment.ExperimentConfig(name="custom", task={"kind": "diagonal_2x2"})
    assert ref == {k: v for k, v in vars(experiment.ReferenceConfig(name="x", measure="y")).items()
                   if k not in ("name", "measure") and v is not None}


def test_report_rerenders_from_checkpoints_without_running_anything(tmp_path, capsys, monkeypatch):
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY)
    out = tmp_path / "out"
    assert main(["run", str(exp), "--out", str(out), "--no-progress", "--workers", "1", "-q"]) == 0
    tests_before = (out / "tests.json").read_bytes()
    report_before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    (out / "figures" / "volume_histograms.png").unlink()
    capsys.readouterr()

    from dlnvolume import flows

    def no_flows(*a, **k):
        raise AssertionError("dlnvolume report ran a flow")

    monkeypatch.setattr(flows, "endpoints", no_flows)
    assert main(["report", str(out)]) == 0
    assert "re-rendered" in capsys.readouterr().out
    assert (out / "tests.json").read_bytes() == tests_before
    assert (out / "figures" / "volume_histograms.png").is_file()

    def body(md: str) -> str:  # all but this session's timings
        return md.split("## Run", 1)[0]

    assert body((out / "report.md").read_text()) == body(report_before)

    # a results folder whose checkpoints are incomplete: one line naming the missing file
    for f in (out / "checkpoints").glob("endpoints_*.npz"):
        f.unlink()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dlnvolume: error: checkpoint ") and "is missing" in err and err.count("\n") == 1
    # not a results folder
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.toml there" in capsys.readouterr().err
