"""Put a generated section into a model card between HTML-comment markers (replacing an earlier
one), and write files atomically: shared by the scripts that add measured sections to a card."""

from __future__ import annotations

import os
import re
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a crash leaves the old file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def put_section(readme: Path, start: str, end: str, block: str, before: str) -> None:
    """Replace the ``start``...``end`` block of ``readme`` with ``block``, or insert ``block``
    before the first occurrence of ``before`` (a heading line, e.g. ``"\\n## Training\\n"``)."""
    text = readme.read_text()
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end) + "\n", lambda _: block, text,
                      flags=re.S)
    elif before in text:
        text = text.replace(before, f"\n{block}{before}", 1)
    else:
        raise ValueError(f"{readme} has no {before.strip()!r} heading to put the section before")
    write_atomically(readme, text)
