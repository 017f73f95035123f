"""Architecture registry: names, presets, helpful errors, captured constructor arguments."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo._registry import _ARCHITECTURES, get_architecture, list_presets, register_architecture
from zoo.models.base import ZooModel

ARCHITECTURES = zoo.list_architectures()


@pytest.fixture
def scratch_architecture():
    """Registers a throwaway architecture and removes it from the global registry afterwards."""
    name = "scratch-registry-test"

    class Scratch(ZooModel):
        def __init__(self, width: int = 2, depth: int = 1, note: str = "x") -> None:
            super().__init__()
            self.layer = torch.nn.Linear(width, width)

    try:
        register_architecture(
            name, presets={"tiny": {"width": 2}, "big": {"width": 8, "depth": 3}},
            default_preset="big",
        )(Scratch)
        yield name, Scratch
    finally:
        _ARCHITECTURES.pop(name, None)


def test_list_architectures_contains_equiformer() -> None:
    """The zoo's first architecture is registered on import, and patterns filter names."""
    assert "equiformer" in ARCHITECTURES
    assert ARCHITECTURES == sorted(ARCHITECTURES)
    assert zoo.list_architectures("equi*") == ["equiformer"]
    assert zoo.list_architectures("no-such-*") == []


def test_unknown_architecture_suggests_close_names() -> None:
    """A misspelt name says which architectures are close (and which exist)."""
    with pytest.raises(KeyError, match="unknown architecture") as error:
        zoo.create_model("equiformr")
    message = str(error.value)
    assert "Did you mean equiformer" in message
    assert "Known:" in message and "equiformer" in message.split("Known:")[1]


def test_unknown_architecture_without_close_names_lists_known() -> None:
    """Nothing close: no suggestion, but the known names are listed."""
    with pytest.raises(KeyError) as error:
        zoo.create_model("zzzzzz")
    assert "Did you mean" not in str(error.value)
    assert "equiformer" in str(error.value)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_unknown_preset_lists_presets(architecture: str) -> None:
    """An unknown preset names the architecture and every preset it has."""
    with pytest.raises(KeyError, match="has no preset 'gigantic'") as error:
        zoo.create_model(architecture, "gigantic")
    for preset in list_presets(architecture):
        assert repr(preset) in str(error.value)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_registers_tiny(architecture: str) -> None:
    """Every architecture has the ``tiny`` preset the test suites use."""
    assert "tiny" in list_presets(architecture)
    entry = get_architecture(architecture)
    assert entry.cls.architecture == architecture
    assert entry.default_preset is None or entry.default_preset in entry.presets


def test_registering_without_tiny_is_an_error() -> None:
    """``register_architecture`` refuses an architecture without a ``tiny`` preset."""
    with pytest.raises(ValueError, match="tiny"):
        register_architecture("scratch-no-tiny", presets={"small": {}})
    assert "scratch-no-tiny" not in zoo.list_architectures()


def test_registering_a_taken_name_for_another_class_is_an_error(scratch_architecture) -> None:
    """Names are unique: a second class under a taken name is refused."""
    name, _ = scratch_architecture

    class Other(ZooModel):
        def __init__(self) -> None:
            super().__init__()

    with pytest.raises(ValueError, match="already registered"):
        register_architecture(name, presets={"tiny": {}})(Other)


def test_kwargs_override_preset_and_are_captured(scratch_architecture) -> None:
    """Keyword arguments win over the preset; model_args holds every constructor argument."""
    name, cls = scratch_architecture
    assert zoo.list_presets(name) == ["big", "tiny"]
    default = zoo.create_model(name)  # the default preset
    assert isinstance(default, cls)
    assert default.model_args == {"width": 8, "depth": 3, "note": "x"}
    model = zoo.create_model(name, "big", depth=5, note="y")
    assert model.model_args == {"width": 8, "depth": 5, "note": "y"}
    # model_args replaces the preset entirely (a config.json is complete).
    rebuilt = zoo.create_model(name, "tiny", model_args=model.model_args)
    assert rebuilt.model_args == model.model_args
    assert json.loads(json.dumps(model.config())) == {
        "architecture": name, "model_args": {"width": 8, "depth": 5, "note": "y"}
    }


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_kwargs_override_preset_on_real_architecture(architecture: str) -> None:
    """On each registered architecture's ``tiny`` preset: an integer override is captured, the
    rest of the preset is kept, and every argument is JSON-serialisable."""
    preset = get_architecture(architecture).presets["tiny"]
    integers = [k for k, v in preset.items() if isinstance(v, int) and not isinstance(v, bool)]
    assert integers, "the tiny preset has no integer argument to override"
    key = integers[0]  # e.g. equiformer's num_layers
    model = zoo.create_model(architecture, "tiny", **{key: preset[key] + 1})
    assert model.model_args[key] == preset[key] + 1
    for other, preset_value in preset.items():
        if other != key:
            assert model.model_args[other] == json.loads(json.dumps(preset_value)), other
    assert json.loads(json.dumps(model.model_args)) == model.model_args
    plain = zoo.create_model(architecture, "tiny")
    assert plain.model_args[key] == preset[key]
    assert set(plain.model_args) == set(model.model_args)
