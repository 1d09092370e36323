"""Bias files: JSON/YAML round trip with validation, CortexControl and samna importers, shipped sets."""

from __future__ import annotations

import json

import pytest

from drivers.dynapse1.bias_files import BiasFileError, BiasSet, import_cortexcontrol, import_samna_json, load_bias_file
from drivers.dynapse1.bias_table import CORE_BIASES
from drivers.dynapse1.board_api import BiasValue
from drivers.resources import resource_path

SHIPPED = ["silent", "libcaer_low_power", "ug_default", "samna_recommended", "ctxctl_test"]


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_round_trip(tmp_path, suffix):
    original = BiasSet("t", "test", {"IF_DC_P": BiasValue(2, 40), "IF_TAU1_N": BiasValue(4, 80, high=False)}, {(1, 3): {"IF_DC_P": BiasValue(7, 0, enabled=False)}})
    path = tmp_path / f"set{suffix}"
    original.save(path)
    loaded = BiasSet.load(path)
    assert loaded == original
    mapping = loaded.to_board_mapping()
    assert len(mapping) == 16 * 25
    assert mapping[(0, 0, "IF_DC_P")] == BiasValue(2, 40) and mapping[(1, 3, "IF_DC_P")] == BiasValue(7, 0, enabled=False)
    assert mapping[(2, 2, "R2R_P")] == BiasValue(7, 0)  # unnamed → silent


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"defaults": {"IF_NOPE": {"coarse": 1, "fine": 1}}}, "unknown bias"),
        ({"defaults": {"IF_DC_P": {"coarse": 8, "fine": 1}}}, "coarse value 8"),
        ({"defaults": {"IF_DC_P": {"coarse": 1}}}, "'fine'"),
        ({"cores": {"4/0": {}}}, "chip and core 0..3"),
        ({"format": "other"}, "not a NeuroLab bias file"),
    ],
)
def test_bad_files_are_rejected_with_the_entry_named(tmp_path, patch, message):
    data = {"format": "neurolab-biases", "version": 1, "defaults": {}, **patch}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BiasFileError, match=message):
        BiasSet.load(path)


def test_cortexcontrol_script_is_parsed_not_executed():
    script = """
import os  # never run
os.system("echo pwned")
model.get_bias_groups()[5].set_bias("IF_DC_P", 30, 2)   # chip 1 core 1, fine 30, ctxctl coarse 2
bias_groups[0].set_bias('IF_TAU1_N', 95, 5)
"""
    biases = import_cortexcontrol(script)
    assert biases.cores == {(1, 1): {"IF_DC_P": BiasValue(5, 30)}, (0, 0): {"IF_TAU1_N": BiasValue(2, 95)}}
    with pytest.raises(BiasFileError, match="line 1"):
        import_cortexcontrol('groups[0].set_bias("IF_DC_P", 300, 2)')
    with pytest.raises(BiasFileError, match="unknown bias"):
        import_cortexcontrol('groups[0].set_bias("NOPE", 3, 2)')


def test_samna_json_import():
    config = {
        "chips": [
            {"cores": [{"parameterGroup": {"paramMap": [{"paramName": "IF_DC_P", "coarseValue": 2, "fineValue": 30, "type": "P"}]}}]},
            {"cores": [{}, {"parameterGroup": {"paramMap": {"IF_THR_N": {"paramName": "IF_THR_N", "coarseValue": 5, "fineValue": 80}}}}]},
        ]
    }
    biases = import_samna_json(json.dumps(config))
    assert biases.cores == {(0, 0): {"IF_DC_P": BiasValue(5, 30)}, (1, 1): {"IF_THR_N": BiasValue(2, 80)}}
    with pytest.raises(BiasFileError, match="no parameters"):
        import_samna_json("{}")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_sets_load_and_name_their_source(name):
    biases = load_bias_file(resource_path("biases", f"{name}.json"))
    assert biases.name == name and "§7" in biases.source
    assert set(biases.defaults) == set(CORE_BIASES)


def test_shipped_low_power_set_matches_libcaer():
    biases = BiasSet.load(resource_path("biases", "libcaer_low_power.json"))
    assert biases.defaults["IF_DC_P"] == BiasValue(1, 30)
    assert biases.defaults["IF_TAU1_N"] == BiasValue(7, 5, high=False)
    samna = BiasSet.load(resource_path("biases", "samna_recommended.json"))
    assert samna.defaults["IF_THR_N"] == BiasValue(2, 80)  # samna 5/80 → libcaer 2/80


def test_published_sets_are_one_source_for_emulator_and_gui():
    from drivers.dynapse1.bias_files import published_bias_set, published_bias_set_names
    from drivers.dynapse1.bias_sets import bias_set

    names = published_bias_set_names()
    assert {"silent", "libcaer_low_power", "ug_default", "samna_recommended", "ctxctl_test"} <= set(names)
    for name in names:
        shipped = published_bias_set(name)
        assert {k: (v.coarse, v.fine, v.high) for k, v in shipped.defaults.items()} == {
            k: v for k, v in bias_set(name).items() if k in shipped.defaults
        }
    with pytest.raises(KeyError, match="unknown bias set 'nope'"):
        published_bias_set("nope")
