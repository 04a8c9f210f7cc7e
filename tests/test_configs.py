"""Every shipped config parses (LightningCLI --print_config): a renamed option cannot rot a config silently."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from legato_pl.cli import run

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("legato_pl.models.")
    assert printed["data"]["class_path"].startswith("legato_pl.data.")


def test_there_are_configs():
    assert len(CONFIGS) >= 4
