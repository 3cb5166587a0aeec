"""The tables of the docs that tests hold against the code they describe."""

from __future__ import annotations

from pathlib import Path


def table_after(path: Path, marker: str) -> list[list[str]]:
    """The rows of the markdown table in path that follows the `<!-- marker: ...` comment."""
    text = path.read_text()
    start = text.index(f"<!-- {marker}:")
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and the rule
