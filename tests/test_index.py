"""The registry as data: ``index.json`` written by ``zoo.hub.index``, read by
``zoo.hub.pretrained``; and the atomic files and folders of ``zoo.data.cache``."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from toy_arch import ARCHITECTURE, make_model

from zoo.data import cache
from zoo.hub.checkpoint import file_hashes, save_pretrained
from zoo.hub.index import (
    card_licence,
    default_description,
    record_model,
    refresh_index,
    remove_model,
)
from zoo.hub.pretrained import PretrainedEntry, read_index

CARD = "---\nlibrary_name: zoo\nlicense: apache-2.0\n---\n\n# {name}\n"


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    """A cards folder with two toy variants of one family."""
    root = tmp_path_factory.mktemp("cards")
    for seed, name in enumerate(["toy.standard", "toy.cr"]):
        save_pretrained(make_model(seed=seed), root / name, card=CARD.format(name=name),
                        extra={"name": name, "metrics": {"mse": 0.1 * (seed + 1)}})
    return root


@pytest.fixture
def fresh(cards, tmp_path):
    """A private copy of the cards folder (tests edit it)."""
    return shutil.copytree(cards, tmp_path / "cards")


def test_record_model_writes_a_full_entry(fresh):
    entry = record_model(fresh / "toy.standard", aliases=["toy"])
    assert entry.architecture == ARCHITECTURE and entry.repo_id == "zoo-models/toy.standard"
    assert entry.revision is None and entry.licence == "Apache-2.0"
    assert dict(entry.metrics) == {"mse": 0.1} and entry.aliases == ("toy",)
    [read] = read_index(fresh / "index.json")
    assert read == entry
    files = json.loads((fresh / "index.json").read_text())["models"]["toy.standard"]["files"]
    for name, record in files.items():
        assert record == {"sha256": file_hashes(fresh / "toy.standard")[name],
                          "size": (fresh / "toy.standard" / name).stat().st_size}


def test_an_alias_moves_and_cannot_shadow_a_model(fresh):
    record_model(fresh / "toy.standard", aliases=["toy"])
    record_model(fresh / "toy.cr", aliases=["toy"])
    entries = {e.name: e for e in read_index(fresh / "index.json")}
    assert entries["toy.cr"].aliases == ("toy",) and entries["toy.standard"].aliases == ()
    with pytest.raises(ValueError, match="names of published models"):
        record_model(fresh / "toy.cr", aliases=["toy.standard"])
    with pytest.raises(ValueError, match="is an alias"):
        record_model(fresh / "toy.cr", name="toy")


def test_kept_fields_and_revision_follow_the_files(fresh):
    pinned = "a" * 40
    record_model(fresh / "toy.cr", revision=pinned, dataset="toy data", paper="Toy et al.",
                 description="by hand", aliases=["toy"])
    again = record_model(fresh / "toy.cr")  # same files: everything kept, revision included
    assert (again.revision, again.dataset, again.paper, again.description) == (
        pinned, "toy data", "Toy et al.", "by hand")
    assert again.aliases == ("toy",)
    (fresh / "toy.cr" / "README.md").write_text(CARD.format(name="toy.cr") + "\nEdited.\n")
    edited = record_model(fresh / "toy.cr")
    assert edited.revision is None  # the Hub commit no longer holds these files
    assert edited.sha256["README.md"] == file_hashes(fresh / "toy.cr")["README.md"]


def test_refresh_and_remove(fresh):
    record_model(fresh / "toy.standard", aliases=["toy"])
    record_model(fresh / "toy.cr")
    (fresh / "toy.cr" / "README.md").write_text("---\nlicense: mit\n---\n# changed\n")
    assert refresh_index(fresh) == ["toy.cr", "toy.standard"]
    entries = {e.name: e for e in read_index(fresh / "index.json")}
    assert dict(entries["toy.cr"].sha256) == file_hashes(fresh / "toy.cr")
    assert entries["toy.cr"].licence == "Apache-2.0"  # kept: the index says what was published
    assert remove_model(fresh / "index.json", "toy.standard")
    assert [e.name for e in read_index(fresh / "index.json")] == ["toy.cr"]
    assert not json.loads((fresh / "index.json").read_text())["aliases"]
    assert not remove_model(fresh / "index.json", "toy.standard")


def test_index_rejects_newer_formats_and_dangling_aliases(tmp_path):
    path = tmp_path / "index.json"
    path.write_text(json.dumps({"format_version": 2, "models": {}}))
    with pytest.raises(ValueError, match="newer zoo"):
        read_index(path)
    path.write_text(json.dumps({"format_version": 1, "models": {}, "aliases": {"a": "b"}}))
    with pytest.raises(ValueError, match="alias 'a'"):
        read_index(path)


def test_entry_record_round_trip_and_size_checks():
    entry = PretrainedEntry(
        name="x.y", architecture="a", repo_id="o/x.y", revision=None,
        sha256={"config.json": "0" * 64, "model.safetensors": "1" * 64},
        sizes={"config.json": 10, "model.safetensors": 20}, dataset="d", licence="MIT",
        aliases=("x",), metrics={"m": 1.0},
    )
    assert PretrainedEntry.from_record("x.y", entry.to_record(), ("x",)) == entry
    with pytest.raises(ValueError, match="sizes must cover"):
        PretrainedEntry(**{**entry.to_dict(), "sizes": {"config.json": 10}})
    with pytest.raises(ValueError, match="count of bytes"):
        PretrainedEntry(**{**entry.to_dict(), "sizes": {"config.json": -1,
                                                         "model.safetensors": 2}})


def test_description_and_licence_helpers(tmp_path):
    config = {"relaxation": {"method": "cr"}, "training": {"epochs": 40, "seed": 1}}
    assert default_description(config) == "constraint-relaxation (CR) training, 40 epochs, seed 1"
    assert default_description({}) == "standard (no relaxation) training"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: mit\n")
    assert card_licence(tmp_path) is None
    (tmp_path / "README.md").write_text("---\nlicense: other-thing\n---\n")
    assert card_licence(tmp_path) == "other-thing"


# --- zoo.data.cache -------------------------------------------------------------------------
def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "f.json"
    cache.atomic_write_json(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    with pytest.raises(KeyboardInterrupt), cache.atomic_writer(path, "w") as out:
        out.write("half")
        raise KeyboardInterrupt
    assert json.loads(path.read_text()) == {"a": 2, "b": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temporary left
    cache.atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_atomic_folder_swaps_or_keeps(tmp_path):
    folder = tmp_path / "data-v1"
    with cache.atomic_folder(folder) as tmp:
        cache.write_manifest(tmp, {"name": "data-v1"})
    assert cache.read_manifest(folder) == {"name": "data-v1"}
    with pytest.raises(RuntimeError), cache.atomic_folder(folder) as tmp:
        cache.write_manifest(tmp, {"name": "half"})
        raise RuntimeError("interrupted")
    assert cache.read_manifest(folder) == {"name": "data-v1"}
    with cache.atomic_folder(folder) as tmp:
        (tmp / "x").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-v1"]


def test_replace_folder_accepts_a_sound_winner(tmp_path, monkeypatch):
    source, folder = tmp_path / "new", tmp_path / "target"
    source.mkdir()
    real_replace = os.replace

    def racing_replace(src, dst):
        if str(src) == str(source):  # another process got there first
            folder.mkdir()
            (folder / "winner").write_text("")
            (folder / "more").write_text("")  # non-empty: the rename fails
        return real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", racing_replace)
    cache.replace_folder(source, folder, accept_existing=lambda f: (f / "winner").exists())
    assert (folder / "winner").exists()
    shutil.rmtree(folder)  # the losing source is still there: try again, nothing to accept
    with pytest.raises(OSError):
        cache.replace_folder(source, folder, accept_existing=lambda f: False)


def test_cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "env"))
    assert cache.cache_dir("x") == tmp_path / "env" / "x"
    assert cache.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv("ZOO_CACHE_DIR", " ")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "zoo"


def test_one_download_error_for_the_hub_and_the_data():
    import zoo.data
    import zoo.data.fetch
    import zoo.data.rmd17_download
    from zoo.errors import ZooError
    from zoo.hub.errors import DownloadError

    assert zoo.data.DownloadError is zoo.data.rmd17_download.DownloadError is DownloadError
    assert zoo.data.fetch.DownloadError is DownloadError
    assert issubclass(DownloadError, ZooError) and issubclass(DownloadError, OSError)


def test_record_command_sets_the_description_and_keeps_it_after(fresh):
    """``python -m zoo.hub.index record FOLDER --description TEXT``; a later record keeps it."""
    from zoo.hub.index import main

    assert main(["record", str(fresh / "toy.standard"), "--description", "a toy, 1 epoch"]) == 0
    assert main(["record", str(fresh / "toy.standard")]) == 0
    [entry] = read_index(fresh / "index.json")
    assert entry.description == "a toy, 1 epoch"
