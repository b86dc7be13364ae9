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


def test_the_space_gets_the_run_time_library_and_nothing_of_training():
    """The sync's include patterns, applied to the tracked files as `hf upload` applies them."""
    import re
    import subprocess

    from huggingface_hub.utils import filter_repo_objects

    workflow = (ROOT / ".github" / "workflows" / "sync-space.yml").read_text()
    include, exclude = re.findall(r'--include "([^"]+)"', workflow), re.findall(r'--exclude "([^"]+)"', workflow)
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    tracked = [path for path in listed if (ROOT / path).is_file()]  # the working tree, as the checkout has it
    uploaded = set(filter_repo_objects(tracked, allow_patterns=include, ignore_patterns=exclude))
    assert {"app.py", "README.md", "requirements.txt", "inspector/model.py", "inspector/images/load.py"} <= uploaded
    assert not [path for path in uploaded if path.startswith(("train/", "tests/", "benchmarks/", "docs/", ".ci/"))]
    # ...and the library it uploads never imports the training or publishing code it leaves behind.
    library = [path for path in uploaded if path.endswith(".py")]
    importing = [path for path in library if re.search(r"^\s*(from|import) train\b", (ROOT / path).read_text(), re.M)]
    assert not importing, importing
