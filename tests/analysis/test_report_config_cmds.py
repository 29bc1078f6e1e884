"""``dlnvolume config --defaults`` and ``dlnvolume report OUT`` (issue 22, item 5)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


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


def test_report_html_tells_the_answers_apart():
    """Issue 22 item 6: "yes" and "no" were both red. Each answer has its own colour and shape."""
    from analysis.report import _md_to_html

    md = "## Verdict\n\n| q | answer |\n|---|---|\n| a | **yes** |\n| b | **no** |\n| c | **inconclusive** |\n"
    html = _md_to_html(md, Path("."))
    rules = {a: re.search(rf"b\.ans-{a}\{{([^}}]*)\}}", html).group(1) for a in ("yes", "no", "inconclusive")}
    assert len(set(rules.values())) == 3
    colours = {a: re.search(r"(?:^|;)color:(#[0-9a-f]+)", r).group(1) for a, r in rules.items()}
    backgrounds = {a: re.search(r"background:(#[0-9a-f]+)", r) for a, r in rules.items()}
    assert colours["yes"] != colours["no"] and (backgrounds["yes"] is None) != (backgrounds["no"] is None)
    for a in rules:
        assert f"<b class='ans-{a}'>{a}</b>" in html


def test_figure_legends_render_at_a_readable_size():
    """Issue 22 item 6: histogram legends rendered ~5 px high (6 pt in a 3-column figure scaled to the page).
    Computed as the browser does it (a figure shows at its pixel width, dpi × inches, unless wider than the page
    column, then scaled); the test below measures it in a headless Chromium where one is installed."""
    import numpy as np

    from analysis import plots

    rng = np.random.default_rng(0)
    panels = [{"depth": d, "endpoints": rng.normal(size=50), "references": {"ref": rng.normal(size=500)},
               "legend": {"ref": ", KS p=0.12"}} for d in (2, 5, 10, 20, float("inf"))]
    lad = [{"depth": d, "scales": np.array([1e-2, 1e-3]), "distances": {"nuclear": np.abs(rng.normal(size=(2, 8)))},
            "ratios": {}, "best": None} for d in (2, 5, 10)]
    for fig in (plots.volume_histograms(panels), plots.ladder(lad),
                plots.spectra([{"depth": 3, "sigma": np.abs(rng.normal(size=(20, 3)))}])):
        width_px = fig.get_figwidth() * 110  # plots.save's dpi
        scale = min(1.0, plots.PAGE_PX / width_px)
        sizes = [t.get_fontsize() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert sizes and min(sizes) / 72 * 110 * scale >= 11.0, (min(sizes), width_px)
        plots.close(fig)


def test_a_cold_numba_cache_is_announced(tmp_path, monkeypatch):
    """The first run after an install compiles the integrator (~1.5 min): run says so before it starts."""
    from analysis import cli
    from dlnvolume.flows import compiled

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(compiled, "__file__", str(tmp_path / "compiled.py"))
    assert cli._flows_cache_cold()
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "compiled.integrate-330.py311.nbi").write_bytes(b"")
    assert not cli._flows_cache_cold()


def test_volume_histogram_of_a_depth_without_endpoints_draws_no_nan(recwarn):
    """A depth with no kept endpoint (5×5 rank 2 at N = 20) used to draw a density of no values: numpy's 0/0
    RuntimeWarning on the run's stderr. Now the panel says so and nothing warns."""
    import numpy as np

    from analysis import plots

    ref = np.random.default_rng(0).normal(size=200)
    fig = plots.volume_histograms([{"depth": 20, "endpoints": np.array([]), "references": {"ss": ref}}])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["no endpoint kept at this depth"]


# ------------------------------------------------------------------ the report as a browser shows it
_BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,3000")
# after the page has loaded, write what the browser computed into the page, for --dump-dom
_PROBE = """<script>window.addEventListener('load', () => {
  const out = {imgs: [], badges: {}};
  for (const im of document.images) out.imgs.push([im.alt, im.naturalWidth, im.getBoundingClientRect().width]);
  for (const a of ['yes', 'no', 'inconclusive']) {
    const s = getComputedStyle(document.querySelector('b.ans-' + a));
    out.badges[a] = [s.color, s.backgroundColor, s.borderTopStyle];
  }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});</script></body>"""


def _browser():
    import os
    import shutil

    import pytest

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("DLNVOLUME_REQUIRE_BROWSER"):
        pytest.fail("DLNVOLUME_REQUIRE_BROWSER is set but no chromium / google-chrome is on PATH")
    pytest.skip("no headless browser (chromium) on this machine")


def _render(browser: str, page: Path, tmp_path: Path) -> tuple[dict, "object"]:
    """What the browser computed on ``page`` (probe JSON) and its screenshot as an RGB array."""
    import json
    import subprocess

    import numpy as np
    from matplotlib import image

    flags = [browser, *_BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    probe = json.loads(re.search(r"<pre id=\"probe\">(.*?)</pre>", dom, re.S).group(1).replace("&quot;", '"'))
    shot = tmp_path / (page.stem + ".png")
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    return probe, np.asarray(image.imread(shot))[..., :3]


def test_report_in_a_headless_browser_tells_answers_apart_and_reads_its_legends(tmp_path):
    """Issue 22 item 6, checked in a real browser: in a headless Chromium at a 1280-px window, the three answers
    have different computed colours and shapes and all three show on the screenshot, and every figure's legend
    renders at ≥ 11 px (LEGEND_PT at the saved dpi, times the width the browser gave the image over its natural
    width). Negative control: the same page with figures squeezed to 300 px must fail the legend check."""
    import numpy as np

    from analysis import plots
    from analysis.report import _md_to_html

    browser = _browser()
    rng = np.random.default_rng(0)
    (tmp_path / "figures").mkdir()
    panels = [{"depth": d, "endpoints": rng.normal(size=50), "references": {"ref": rng.normal(size=500)},
               "legend": {"ref": ", KS p=0.12"}} for d in (2, 5, 10, 20, float("inf"))]
    lad = [{"depth": d, "scales": np.array([1e-2, 1e-3]), "distances": {"nuclear": np.abs(rng.normal(size=(2, 8)))},
            "ratios": {}, "best": None} for d in (2, 5, 10)]
    md = ["# report", "", "## Verdict", "", "| question | answer |", "|---|---|", "| a | **yes** |", "| b | **no** |",
          "| c | **inconclusive** |", "", "## Figures", ""]
    for name, fig in (("histograms", plots.volume_histograms(panels)), ("ladder", plots.ladder(lad)),
                      ("spectra", plots.spectra([{"depth": 3, "sigma": np.abs(rng.normal(size=(20, 3)))}]))):
        plots.save(fig, tmp_path / "figures" / f"{name}.png")
        plots.close(fig)
        md += [f"![{name}](figures/{name}.png)", ""]
    html = _md_to_html("\n".join(md), tmp_path)
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", _PROBE))
    squeezed = tmp_path / "squeezed.html"
    squeezed.write_text(html.replace("</style>", "figure img{width:300px}</style>").replace("</body>", _PROBE))

    def legend_px(probe: dict) -> dict[str, float]:
        return {alt: plots.LEGEND_PT / 72 * 110 * shown / natural for alt, natural, shown in probe["imgs"]}

    probe, shot = _render(browser, page, tmp_path)
    assert len(probe["imgs"]) == 3 and min(legend_px(probe).values()) >= 11.0, legend_px(probe)
    badges = probe["badges"]
    assert len({tuple(b) for b in badges.values()}) == 3, badges
    assert badges["yes"][0] != badges["no"][0] and badges["yes"][1] != badges["no"][1]
    assert [b[2] for b in badges.values()] == ["none", "solid", "dashed"]  # filled, outlined, dashed
    # the colours are on the screen, not only in the style sheet: yes's fill, no's and inconclusive's text
    for css in (badges["yes"][1], badges["no"][0], badges["inconclusive"][0]):
        rgb = np.array([int(v) for v in re.findall(r"\d+", css)[:3]]) / 255
        assert (np.abs(shot - rgb).max(axis=-1) < 0.02).sum() >= 20, css

    control, _ = _render(browser, squeezed, tmp_path)
    assert min(legend_px(control).values()) < 11.0
