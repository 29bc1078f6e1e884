"""Smoke test of ``dlnvolume bench``: every section at quick sizes, no thresholds (~3 min: slow suite; it used
to run in .ci/run before the tests)."""

from __future__ import annotations

import json

import pytest

from analysis.cli import main


@pytest.mark.slow
def test_every_bench_section_runs_at_quick_sizes(tmp_path):
    from analysis.bench import SECTIONS

    assert main(["bench", "--quick", "--out", str(tmp_path / "bench")]) == 0
    doc = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert (tmp_path / "bench" / "bench.png").is_file()
    assert doc["errors"] == {}, doc["errors"]
    assert {row["section"] for row in doc["rows"]} == set(SECTIONS)
