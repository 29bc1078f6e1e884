"""TOML schema: built-ins parse, round trip through the writer, one-line errors naming the key."""

from __future__ import annotations

import math
import tomllib

import pytest

from analysis.experiment import builtin_experiments, load_config, parse_config, to_toml
from dlnvolume.errors import ConfigError


def test_builtins_parse_and_round_trip():
    b = builtin_experiments()
    assert {"cmv-2x2", "razin-cohen-2x2", "arora-100"} <= set(b)
    for name, text in b.items():
        cfg = parse_config(tomllib.loads(text))
        assert cfg.name == name
        again = parse_config(tomllib.loads(to_toml(cfg.to_dict())))
        assert again == cfg
    cmv, _ = load_config("cmv-2x2")
    assert cmv.depths == (2, 5, 10, 20, math.inf) and cmv.runs == 200 and cmv.init_scale == 1e-3
    assert set(cmv.families) == {"distribution", "percentile", "null"}
    q = cmv.quick_version()
    assert q.runs < cmv.runs and all(r.draws <= 1000 for r in q.references)


BAD = [
    ({"task": {"kind": "diagonal_2x2"}, "flows": {"runs": "many"}}, r"'flows\.runs': expected an integer >= 2, got 'many'"),
    ({"task": {"kind": "diagonal_2x2"}, "flows": {"depths": [2, 0]}}, r"'flows\.depths\[1\]': expected a depth"),
    ({"task": {"kind": "diagonal_2x2"}, "flows": {"speed": 1}}, r"'flows\.speed': unknown key"),
    ({"task": {"kind": "diagonal_2x2"}, "colour": 1}, r"'colour': unknown key"),
    ({"flows": {}}, r"'task': required key is missing"),
    ({"task": {"kind": "cube"}}, r"'task\.kind': expected one of"),
    ({"task": {"kind": "random_low_rank", "m": 3, "n": 3, "rank": 1}}, r"'task\.n_observed': required"),
    ({"task": {"kind": "diagonal_2x2", "m": 3}}, r"'task\.m': not accepted for kind 'diagonal_2x2'; accepted: no other"),
    ({"task": {"kind": "custom", "values": "v.txt"}}, r"'task\.values': expected a matrix .* or a path to a \.npy/\.npz"),
    ({"task": {"kind": "custom", "values": [[1, 2], [3]]}}, r"'task\.values': expected a matrix \(non-empty array of equally"),
    ({"task": {"kind": "custom", "mask": [["a"]]}}, r"'task\.mask': expected a matrix"),
    ({"task": {"kind": "custom", "m": 3}}, r"'task\.m': not accepted for kind 'custom'; accepted: ground_truth, mask, name, values"),
    ({"task": {"kind": "diagonal_2x2"}, "references": [{"name": "a/b", "measure": "solution_set"}]},
     r"'references\[0\]\.name': 'a/b'; expected letters, digits"),
    ({"task": {"kind": "diagonal_2x2"}, "flows": {"init_scale": -1.0}}, r"'flows\.init_scale': expected a finite number > 0"),
    ({"task": {"kind": "diagonal_2x2"}, "references": [{"name": "r", "measure": "gibbs"}]}, r"'references\[0\]\.beta': required"),
    ({"task": {"kind": "diagonal_2x2"}, "references": [{"measure": "gibbs_limit"}]}, r"'references\[0\]\.name': required"),
    ({"task": {"kind": "diagonal_2x2"}, "tests": {"alpha": 1.5}}, r"'tests\.alpha': expected a finite number > 0\.0 and < 1\.0"),
    ({"task": {"kind": "diagonal_2x2"}, "output": {"figures": "yes"}}, r"'output\.figures': expected true or false"),
    ({"task": {"kind": "diagonal_2x2"}, "statistics": {"volume_rank": "max"}}, r"'statistics\.volume_rank'"),
]


@pytest.mark.parametrize("doc,match", BAD)
def test_schema_errors_name_the_key(doc, match):
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(doc)
    assert "\n" not in str(info.value)


def test_malformed_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[task\nkind = 1")
    with pytest.raises(ConfigError, match="malformed TOML"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="not a built-in"):
        load_config(str(tmp_path / "nope.toml"))


def test_non_utf8_config_is_one_line(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('name = "caf\xe9"\n[task]\nkind = "diagonal_2x2"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 11: invalid continuation byte\); TOML files must be"):
        load_config(str(p))


def test_quick_drops_references_whose_depths_it_does_not_run():
    cfg = parse_config({"task": {"kind": "diagonal_2x2"}, "flows": {"depths": [2, 5, 10]},
                        "references": [{"name": "a", "measure": "solution_set", "depths": [10]},
                                       {"name": "b", "measure": "solution_set", "depths": [5, 10]}],
                        "quick": {"depths": [2, 5]}})
    q = cfg.quick_version()
    assert [r.name for r in q.references] == ["b"] and q.references[0].depths == (5,)


def test_reference_rank_default_names_the_ground_truth_rank():
    """A 5×5 rank-2 task with 12 observations has no rank-1 completion; with the reference's rank left to its
    default (1) the error says the ground truth's rank and the key to set; with rank = 2 the config passes."""
    from analysis.runner import prepare

    raw = {"name": "r", "task": {"kind": "random_low_rank", "m": 5, "n": 5, "rank": 2, "n_observed": 12, "seed": 1},
           "flows": {"depths": [2]}, "references": [{"name": "ss", "measure": "solution_set", "method": "solution_smc"}]}
    with pytest.raises(ConfigError, match=r"ground truth has rank 2: set references\[0\]\.rank = 2"):
        prepare(parse_config(raw))
    raw["references"][0]["rank"] = 2
    cfg, _ = prepare(parse_config(raw))
    assert cfg.references[0].rank == 2
