"""The README's settings table is the one `scripts/settings-doc` writes from `Settings`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from routing_points.settings import Settings
from routing_points.settings_doc import (
    END,
    START,
    readme_table,
    settings_table,
    write_readme,
)

README = Path(__file__).parent.parent / "README.md"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_has_a_description(name: str) -> None:
    assert Settings.model_fields[name].description, f"give {name} a description= in settings.py"


def test_the_readme_table_is_the_generated_one() -> None:
    assert readme_table(README) == settings_table(), (
        "README.md's settings table is stale: run scripts/settings-doc"
    )


def test_every_setting_has_a_row() -> None:
    table = settings_table()
    for name in Settings.model_fields:
        assert f"| `ROUTING_POINTS_{name.upper()}` |" in table


def test_writing_replaces_only_the_table(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{START}\n| stale |\n{END}\n\nAfter.\n", encoding="utf-8")
    assert write_readme(readme) is True
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"# Title\n\n{START}\n| variable | default | meaning |\n")
    assert text.endswith(f"{END}\n\nAfter.\n")
    assert write_readme(readme) is False
    shutil.copy(readme, tmp_path / "again.md")
    assert readme_table(tmp_path / "again.md") == settings_table()
