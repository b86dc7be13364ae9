"""The packaging: one list of pins (pyproject.toml) that the Space's requirements.txt repeats exactly."""

from __future__ import annotations

import tomllib

from conftest import ROOT


def requirement_lines(path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def test_the_space_requirements_are_the_run_time_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert requirement_lines(ROOT / "requirements.txt") == project["dependencies"]


def test_the_dev_requirements_install_this_checkout_with_its_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert set(project["optional-dependencies"]) == {"train", "dev"}
    assert requirement_lines(ROOT / "requirements-dev.txt") == ["-e .[dev,train]"]


def test_every_recipe_key_is_a_setting_of_some_script(tmp_path):
    import pytest

    from train.config import read_recipe

    for recipe in sorted((ROOT / "train" / "recipes").glob("*.yaml")):
        assert read_recipe(recipe), recipe
    typo = tmp_path / "typo.yaml"
    typo.write_text((ROOT / "train" / "recipes" / "tiny.yaml").read_text() + "\nlearning_rat: 1.0e-3\n")
    with pytest.raises(ValueError, match="unknown key.*learning_rat"):
        read_recipe(typo)
