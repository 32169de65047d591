"""Examples at the end of each command's --help (click's epilog), with no dependencies, so
the client commands can use them without the server's packages."""

from __future__ import annotations


def example(*lines: str) -> str:
    """A command's --help epilog: its examples, kept as written (click rewraps otherwise)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)
