"""Recipes: TOML text <-> PipelineConfig, overrides, and the errors users see."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from skystack.config import EnhanceConfig, PipelineConfig
from skystack.errors import ConfigError, MissingFileError
from skystack.recipe import (
    apply_overrides,
    dump_recipe,
    load_recipe,
    parse_recipe,
    section_settings,
    settings_key,
)


def test_the_default_recipe_reads_back_as_the_defaults() -> None:
    text = dump_recipe()
    assert parse_recipe(text) == PipelineConfig()
    data = tomllib.loads(text)
    assert set(data) == {"calibration", "registration", "stack", "enhance"}
    assert data["stack"]["reject"] == "winsorized"
    # process stacks linear data: the enhance defaults are the resolved ones for a stack
    assert data["enhance"]["stretch"] == "auto"
    assert "# Per-pixel outlier rejection along the frame axis." in text


def test_every_changed_setting_survives_a_round_trip() -> None:
    config = PipelineConfig(
        enhance=dataclasses.replace(
            EnhanceConfig().resolved(), stretch="ghs", ghs=(3.0, 1.0, None, 0.0, 1.0),
            curves=((0.0, 0.0), (0.5, 0.6), (1.0, 1.0)), white_balance=(1.1, 1.0, 0.9),
        ),
    )  # fmt: skip
    config = apply_overrides(config, ["stack.reject=sigma", "registration.max_fwhm=4.5"])
    again = parse_recipe(dump_recipe(config))
    assert again == config
    assert again.registration.max_fwhm == 4.5
    assert again.enhance.ghs == (3.0, 1.0, None, 0.0, 1.0)


def test_a_partial_recipe_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[stack]\nreject = "mad"\nlow = 2.5\n\n[enhance]\nsaturation = 1\n')
    config = load_recipe(path)
    assert config.stack.reject == "mad" and config.stack.low == 2.5
    assert config.enhance.saturation == 1.0 and isinstance(config.enhance.saturation, float)
    assert config.registration == PipelineConfig().registration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[stack]\nrejct = "mad"\n', r"r\.toml: unknown setting \[stack\] rejct; known: .*reject"),
        ('[stacking]\nreject = "mad"\n', r"unknown table \[stacking\]"),
        ('[stack]\nreject = "best"\n', r"\[stack\] reject = 'best' is not valid: expected one of"),
        ("[stack]\nlow = true\n", r"\[stack\] low = True is not valid: expected a number"),
        ("[enhance]\nghs = [1, 2]\n", r"\[enhance\] ghs .* expected a list of 5 values"),
        ("[stack\n", r"r\.toml: not valid TOML"),
        ('stack = "mean"\n', r"stack must be a table"),
        ('[calibration]\nmasters = "x"\n', r"unknown setting \[calibration\] masters"),
    ],
)
def test_bad_recipes_name_the_file_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "r.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_a_missing_recipe_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.toml: recipe not found"):
        load_recipe(tmp_path / "nope.toml")


def test_overrides_read_values_as_toml_or_text() -> None:
    config = apply_overrides(
        PipelineConfig(),
        ["stack.reject=linear-fit", "stack.trail_mask=false", "enhance.saturation=1.5",
         'enhance.ghs=[2, 1, "auto", 0, 1]'],
    )  # fmt: skip
    assert config.stack.reject == "linear-fit"
    assert config.stack.trail_mask is False
    assert config.enhance.saturation == 1.5
    assert config.enhance.ghs == (2.0, 1.0, None, 0.0, 1.0)
    with pytest.raises(ConfigError, match="expected SECTION.KEY=VALUE"):
        apply_overrides(PipelineConfig(), ["reject=sigma"])


def test_cache_keys_follow_results_not_speed_settings() -> None:
    base = PipelineConfig()
    faster = apply_overrides(base, ["stack.memory_bytes=1000000", "registration.jobs=2"])
    other = apply_overrides(base, ["stack.reject=sigma"])
    key = settings_key(section_settings(base, "stack"), section_settings(base, "registration"))
    assert key == settings_key(
        section_settings(faster, "stack"), section_settings(faster, "registration")
    )
    assert key != settings_key(
        section_settings(other, "stack"), section_settings(other, "registration")
    )
