"""Every example configuration of docs/examples runs end to end (``--quick``), and ``check`` plans it
(issue 22 item 6: a Gibbs reference, a task read from ``.npz``, a rank-2 task)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from analysis.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.toml"))
#: run in the fast suite (the others, 50–60 s each, in the slow one: .ci/run stays well inside its time)
FAST = ("custom-3x3", "gibbs-3x3")
CASES = [p if p.stem in FAST else pytest.param(p, marks=pytest.mark.slow) for p in EXAMPLES]


def test_the_examples_cover_what_researchers_bring():
    names = {p.stem for p in EXAMPLES}
    assert {"gibbs-3x3", "npz-4x4", "rank2-4x4"} <= names
    assert 'measure = "gibbs"' in (ROOT / "docs/examples/gibbs-3x3.toml").read_text()
    assert 'values = "task-4x4.npz"' in (ROOT / "docs/examples/npz-4x4.toml").read_text()
    assert "volume_rank = 2" in (ROOT / "docs/examples/rank2-4x4.toml").read_text()


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(path, tmp_path, capsys, monkeypatch):
    """(gibbs-3x3 runs with its progress bars: the references' bars move inside SMC replicates, issue 22
    item 2, and a reference that did not converge is one ``warning:`` line naming it.)"""
    from dlnvolume import batching

    out = tmp_path / "out"
    shown = path.stem == "gibbs-3x3"
    monkeypatch.setattr(batching, "POLL_S", 0.01)  # partial progress reported often enough to be seen
    assert main(["run", str(path), "--out", str(out), "--quick", "--workers", "1"]
                + ([] if shown else ["--no-progress", "-q"])) == 0
    err = capsys.readouterr().err.replace("\r", "\n")
    if shown:
        for name in ("gibbs_beta20", "solution_set"):
            partial = re.findall(rf"reference {name} N\d: .*\| (\d+\.\d+)/2 \[", err)
            assert partial, err[-2000:]  # a fraction of a replicate, not only whole ones
        for line in err.splitlines():
            if "not converged" in line:
                assert re.match(r"warning: reference \w+ N\d: smc: not converged .*; see the report$", line), line
    else:
        assert err == ""
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    doc = json.loads((out / "tests.json").read_text())
    assert doc, "tests.json is empty"
    rows = json.loads((out / "verdict.json").read_text())
    assert rows
