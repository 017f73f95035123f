"""Write the registry of published models, ``index.json`` (read by :mod:`zoo.hub.pretrained`).

:func:`record_model` is the one way an entry gets there: it hashes a checkpoint folder (sha256
and size of every file), reads architecture, metrics and oldest zoo version from its
``config.json`` and the licence from its card, keeps what the index already says about the model
(repository, revision, dataset, description, paper, aliases) unless told otherwise, and rewrites
the file atomically. ``zoo publish`` calls it with the pinned Hub commit; the training scripts
(``training/run_family.py``, ``training/publish_md17.py``, through
:func:`zoo.train.compare.publish_family`) call it for every variant they write.

From a shell::

    python -m zoo.hub.index record model_cards/egnn-nbody.cr      # (re)record one folder
    python -m zoo.hub.index refresh model_cards                    # re-hash every bundled model
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.data.cache import atomic_write_json
from zoo.hub.checkpoint import CARD_NAME, CONFIG_NAME, file_hashes
from zoo.hub.pretrained import (
    INDEX_FORMAT_VERSION,
    INDEX_NAME,
    PretrainedEntry,
    check_index_format,
)

#: Hub organisation of the zoo's own models (``repo_id`` of a new entry).
DEFAULT_ORGANISATION = "zoo-models"

_METHOD_LABELS = {
    "none": "standard (no relaxation)",
    "cr": "constraint-relaxation (CR)",
    "ace": "ACE",
    "recm": "RECM-style",
}
# Hugging Face card licence identifiers -> how the registry spells them.
_LICENCES = {"mit": "MIT", "apache-2.0": "Apache-2.0", "cc-by-4.0": "CC-BY-4.0",
             "cc0-1.0": "CC0-1.0", "bsd-3-clause": "BSD-3-Clause"}
_FRONT_MATTER_LICENSE = re.compile(r"^license:\s*(\S+)\s*$", re.MULTILINE)


def _empty() -> dict[str, Any]:
    return {"format_version": INDEX_FORMAT_VERSION, "models": {}, "aliases": {}}


def read_index_data(path: str | Path) -> dict[str, Any]:
    """The raw content of an ``index.json`` (an empty index when the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return _empty()
    data = json.loads(path.read_text())
    check_index_format(data, path)
    return {**_empty(), **data}


def write_index_data(path: str | Path, data: dict[str, Any]) -> None:
    """Write an ``index.json`` atomically, keys sorted (stable diffs)."""
    atomic_write_json(path, data, sort_keys=True)


def default_description(config: dict[str, Any]) -> str:
    """One line for listings from a checkpoint's config: method, epochs and seed."""
    method = (config.get("relaxation") or {}).get("method", "none")
    training = config.get("training") or {}
    parts = [f"{_METHOD_LABELS.get(method, method)} training"]
    if training.get("epochs") is not None:
        parts.append(f"{training['epochs']} epochs")
    if training.get("seed") is not None:
        parts.append(f"seed {training['seed']}")
    return ", ".join(parts)


def card_licence(folder: str | Path) -> str | None:
    """The licence named in a model card's front matter (``license: mit`` -> ``"MIT"``)."""
    card = Path(folder) / CARD_NAME
    if not card.is_file():
        return None
    text = card.read_text()
    if not text.startswith("---\n"):
        return None
    front = text[4:text.find("\n---", 4)]
    match = _FRONT_MATTER_LICENSE.search(front)
    if match is None:
        return None
    return _LICENCES.get(match.group(1).lower(), match.group(1))


def record_model(
    folder: str | Path,
    *,
    index: str | Path | None = None,
    name: str | None = None,
    repo_id: str | None = None,
    revision: str | None = None,
    aliases: Sequence[str] | None = None,
    dataset: str | None = None,
    licence: str | None = None,
    description: str | None = None,
    paper: str | None = None,
) -> PretrainedEntry:
    """Add or update the registry entry of a checkpoint folder in ``index.json``.

    Parameters
    ----------
    folder
        The checkpoint folder, as published (every plain file of it is hashed).
    index
        The ``index.json`` to update; ``None``: the one beside ``folder``
        (``<folder>/../index.json``, e.g. ``model_cards/index.json``).
    name
        Registry name; ``None``: the config's ``name``, else the folder's name.
    repo_id
        Hub repository; ``None``: the index's, else ``zoo-models/<name>``.
    revision
        Pinned Hub commit of exactly these files (``zoo publish`` passes it); ``None`` keeps the
        index's revision while the files are unchanged, and drops it (bundled only) otherwise.
    aliases
        Other names of this model (they are taken from any model that had them); ``None``
        keeps the current ones.
    dataset, licence, description, paper
        ``None`` keeps the index's value; for a new entry: the config's ``dataset``, the card's
        licence, :func:`default_description` and no paper.

    Returns
    -------
    PretrainedEntry
        The entry as written (validated like any registry entry).

    Raises
    ------
    ValueError
        A malformed entry, or an alias that is the name of another model.
    """
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    name = name or config.get("name") or folder.resolve().name
    path = Path(index) if index is not None else folder.parent / INDEX_NAME
    data = read_index_data(path)
    old = data["models"].get(name, {})
    hashes = file_hashes(folder)
    sizes = {f: (folder / f).stat().st_size for f in hashes}
    unchanged = {f: r.get("sha256") for f, r in old.get("files", {}).items()} == hashes
    if name in data["aliases"]:
        raise ValueError(f"{name!r} is an alias of {data['aliases'][name]!r}, not free as a name")
    if aliases is not None:
        clash = sorted(a for a in aliases if a in data["models"] and a != name)
        if clash:
            raise ValueError(f"{clash} are names of published models, not free for aliases; "
                             "remove them first (remove_model)")
        data["aliases"] = {a: t for a, t in data["aliases"].items() if t != name}
        data["aliases"].update(dict.fromkeys(aliases, name))
    entry = PretrainedEntry(
        name=name,
        architecture=config["architecture"],
        repo_id=repo_id or old.get("repo_id") or f"{DEFAULT_ORGANISATION}/{name}",
        revision=revision or (old.get("revision") if unchanged else None),
        sha256=hashes,
        sizes=sizes,
        dataset=dataset or old.get("dataset") or config.get("dataset", ""),
        licence=licence or old.get("licence") or card_licence(folder) or "unknown",
        min_zoo_version=config.get("min_zoo_version", "0.1.0"),
        metrics=config.get("metrics") or {},
        description=description or old.get("description") or default_description(config),
        paper=paper if paper is not None else old.get("paper"),
        aliases=tuple(sorted(a for a, t in data["aliases"].items() if t == name)),
    )
    data["models"][name] = entry.to_record()
    write_index_data(path, data)
    return entry


def remove_model(index: str | Path, name: str) -> bool:
    """Drop a model (or an alias) and its aliases from ``index.json``; whether it was there."""
    data = read_index_data(index)
    found = data["models"].pop(name, None) is not None or name in data["aliases"]
    data["aliases"] = {a: t for a, t in data["aliases"].items() if name not in (a, t)}
    if found:
        write_index_data(index, data)
    return found


def refresh_index(cards: str | Path) -> list[str]:
    """Re-record every model of ``<cards>/index.json`` from its folder in ``cards``.

    For after an edit of bundled cards: the checksums follow the files; everything else the
    index says is kept. Returns the names re-recorded (models without a folder are left as
    they are: they live on the Hub only).
    """
    cards = Path(cards)
    path = cards / INDEX_NAME
    names = sorted(read_index_data(path)["models"])
    done = []
    for name in names:
        if (cards / name / CONFIG_NAME).is_file():
            record_model(cards / name, index=path, name=name)
            done.append(name)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.hub.index {record,refresh}``."""
    parser = argparse.ArgumentParser(prog="python -m zoo.hub.index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="add or update one checkpoint folder's entry")
    p.add_argument("folder", type=Path)
    p.add_argument("--index", type=Path, help="default: FOLDER/../index.json")
    p.add_argument("--alias", action="append", dest="aliases",
                   help="another name of the model (repeatable; replaces its aliases)")
    p.add_argument("--description", help="one line for `zoo list` (default: keep the index's)")
    p = sub.add_parser("refresh", help="re-hash every model of CARDS/index.json")
    p.add_argument("cards", type=Path, nargs="?", default=None,
                   help="folder of the model folders and index.json (default: the bundled one)")
    args = parser.parse_args(argv)
    if args.command == "record":
        entry = record_model(args.folder, index=args.index, aliases=args.aliases,
                             description=args.description)
        print(f"recorded {entry.name} ({len(entry.sha256)} files)")
    else:
        from zoo.resources import model_cards_dir

        cards = args.cards or model_cards_dir()
        print(f"re-recorded {', '.join(refresh_index(cards)) or 'nothing'} in {cards}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
