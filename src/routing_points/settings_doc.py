"""The README's settings table, written from `Settings` itself.

`scripts/settings-doc` writes it between two marker comments in README.md, and a test
fails when the README's copy differs, so a setting cannot be added undocumented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from routing_points.settings import Settings

START = "<!-- settings-table:start (scripts/settings-doc writes this table) -->"
END = "<!-- settings-table:end -->"
_MIB = 1024 * 1024


class UndocumentedSetting(ValueError):
    """A setting without a `description=`."""


def _default(name: str, info: FieldInfo) -> str:
    value: Any = info.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and name.endswith("_bytes") and value and value % _MIB == 0:
        return f"{value // _MIB} MiB"
    if isinstance(value, str):
        return f"`{value}`"
    return str(value)


def settings_table() -> str:
    """The Markdown table: one row per setting, in the order `Settings` declares them."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        if not info.description:
            raise UndocumentedSetting(f"setting {name} has no description= in settings.py")
        variable = f"{prefix}{name}".upper()
        meaning = info.description.replace("|", "\\|")
        rows.append(f"| `{variable}` | {_default(name, info)} | {meaning} |")
    return "\n".join(rows) + "\n"


def readme_table(readme: Path) -> str:
    """The table as the README has it now, between the markers."""
    text = readme.read_text(encoding="utf-8")
    _, start, rest = text.partition(START + "\n")
    table, end, _ = rest.partition(END)
    if not start or not end:
        raise ValueError(f"{readme} has no {START} ... {END} section")
    return table


def write_readme(readme: Path) -> bool:
    """Rewrite the README's table; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    old = readme_table(readme)
    before, _, rest = text.partition(START + "\n")
    _, _, after = rest.partition(END)
    new = settings_table()
    if new == old:
        return False
    readme.write_text(f"{before}{START}\n{new}{END}{after}", encoding="utf-8")
    return True


def main() -> None:
    readme = Path("README.md")
    print(f"{readme} updated" if write_readme(readme) else f"{readme} already up to date")


if __name__ == "__main__":
    main()
