"""The registry, name resolution, and downloads from a real Hub-protocol server (olah, loopback).

Every download goes to a temporary cache; ``HF_ENDPOINT`` (read by ``zoo.load`` at call time) or
``endpoint=`` points at the local mirror, and huggingface_hub's own process-wide settings are only
changed in subprocesses.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from types import SimpleNamespace

import hub_server
import numpy as np
import pytest
import torch
from hub_server import (
    OlahServer,
    dead_endpoint,
    entry_kwargs,
    finish_load_process,
    flaky_proxy,
    start_load_process,
)
from toy_arch import ARCHITECTURE, example_outputs, make_model

import zoo
from zoo.hub import download as hub_download
from zoo.hub.checkpoint import file_hashes, save_pretrained
from zoo.hub.errors import (
    CheckpointError,
    CorruptFileError,
    DownloadError,
    IncompatibleVersionError,
    OfflineError,
    UnknownModelError,
)
from zoo.hub.pretrained import (
    PretrainedEntry,
    get_pretrained,
    read_index,
    register_pretrained,
    registered,
    unregister_pretrained,
)
from zoo.hub.publish import publish

PINNED = "0123456789abcdef0123456789abcdef01234567"
hub = hub_server.hub  # the module-scoped olah fixture, requested by name below


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.Tensor]:
    """A saved test model and its reference outputs."""
    model = make_model(seed=3)
    folder = save_pretrained(model, tmp_path_factory.mktemp("ckpt") / "toy", card="# toy\n")
    return folder, example_outputs(model)


@pytest.fixture(scope="module")
def entry_args(checkpoint) -> dict:
    """Registry-entry arguments for the checkpoint, pinned to a made-up commit (no server)."""
    folder, _ = checkpoint
    return entry_kwargs("zoo-test-toy", "zoo/toy", PINNED, folder)


@pytest.fixture(scope="module")
def served(hub: OlahServer, checkpoint) -> dict:
    """The checkpoint served at ``zoo/toy`` (tagged ``v1``), as registry-entry arguments."""
    folder, _ = checkpoint
    sha = hub.add_repo("zoo/toy", folder, tags=("v1",))
    return entry_kwargs("zoo-test-toy", "zoo/toy", sha, folder)


@pytest.fixture
def online(hub: OlahServer, monkeypatch: pytest.MonkeyPatch) -> OlahServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub


def _snapshot_files(cache: Path, filename: str) -> list[Path]:
    return list(cache.glob(f"models--*/snapshots/*/{filename}"))


def _leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.name.endswith(".incomplete")]


# --- registry ---------------------------------------------------------------------------------
def test_registry_list_info_aliases(entry_args):
    entry = PretrainedEntry(**entry_args, aliases=("toy-alias",))
    with registered(entry):
        assert "zoo-test-toy" in zoo.list_models()
        assert zoo.list_models("zoo-test-*") == ["zoo-test-toy"]
        assert zoo.list_models("nothing-*") == []
        info = zoo.info("toy-alias")
        assert info["name"] == "zoo-test-toy"
        assert info["metrics"] == {"energy_mae": 1.0, "forces_mae": 2.0}
        assert info["architecture"] == ARCHITECTURE
        assert set(info["sha256"]) == {"README.md", "config.json", "model.safetensors"}
        with pytest.raises(ValueError, match="already"):
            register_pretrained(entry)
        with pytest.raises(TypeError):
            entry.sha256["config.json"] = "0" * 64  # read-only, like the entry itself
    assert "zoo-test-toy" not in zoo.list_models()
    with pytest.raises(UnknownModelError):
        get_pretrained("toy-alias")


def test_registered_restores_a_replaced_entry(entry_args):
    first = register_pretrained(PretrainedEntry(**entry_args))
    try:
        second = PretrainedEntry(**{**entry_args, "metrics": {"energy_mae": 9.0}})
        with registered(second, replace=True):
            assert zoo.info("zoo-test-toy")["metrics"] == {"energy_mae": 9.0}
        assert get_pretrained("zoo-test-toy") is first
    finally:
        unregister_pretrained("zoo-test-toy")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"revision": "main"}, "pinned commit"),
        ({"name": "../evil"}, "must match"),
        ({"sha256": {"model.safetensors": "0" * 64}}, "config.json"),
        ({"sha256": {"config.json": "0" * 64, "model.safetensors": "xyz"}}, "64 lowercase hex"),
    ],
)
def test_registry_rejects_malformed_entries(entry_args, change, message):
    with pytest.raises(ValueError, match=message):
        PretrainedEntry(**{**entry_args, **change})


def test_unknown_name_suggests_registered_names(entry_args):
    with registered(PretrainedEntry(**entry_args)):
        with pytest.raises(UnknownModelError, match="zoo-test-toy"):
            zoo.load("zoo-test-tyo")


def test_registry_min_version_checked_before_any_download(entry_args, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    with registered(PretrainedEntry(**{**entry_args, "min_zoo_version": "99.0"})):
        with pytest.raises(IncompatibleVersionError, match="99.0"):
            zoo.load("zoo-test-toy", cache_dir=tmp_path)
    assert not any(tmp_path.iterdir())


# --- bundled model cards ----------------------------------------------------------------------
@pytest.mark.parametrize("how", ["module", "env"])
def test_bundled_folder_is_used_without_network(checkpoint, entry_args, tmp_path, monkeypatch, how):
    folder, reference = checkpoint
    cards = tmp_path / "model_cards"
    shutil.copytree(folder, cards / "zoo-test-toy")
    if how == "module":
        monkeypatch.setattr(hub_download, "MODEL_CARDS_DIR", cards)
    else:
        monkeypatch.setenv("ZOO_MODEL_CARDS_DIR", str(cards))
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    with registered(PretrainedEntry(**entry_args)):
        model = zoo.load("zoo-test-toy", cache_dir=tmp_path / "cache")
    assert model.zoo_info["folder"] == str(cards / "zoo-test-toy")
    assert model.zoo_info["revision"] == PINNED
    assert torch.equal(example_outputs(model), reference)


def test_bundled_folder_is_checked_against_the_registry(
    checkpoint, entry_args, tmp_path, monkeypatch
):
    folder, _ = checkpoint
    bundled = tmp_path / "zoo-test-toy"
    shutil.copytree(folder, bundled)
    (bundled / "README.md").write_text("# edited card\n")  # not what the registry pinned
    monkeypatch.setattr(hub_download, "MODEL_CARDS_DIR", tmp_path)
    with registered(PretrainedEntry(**entry_args)):
        with pytest.raises(CorruptFileError, match="README.md") as info:
            zoo.load("zoo-test-toy")
    assert not info.value.removed and (bundled / "README.md").exists()  # never delete user files


# --- downloads from the mirror ----------------------------------------------------------------
def test_download_by_name(online, served, checkpoint, tmp_path):
    _, reference = checkpoint
    with registered(PretrainedEntry(**served)):
        model = zoo.load("zoo-test-toy", cache_dir=tmp_path)
    assert torch.equal(example_outputs(model), reference)
    assert model.zoo_info["name"] == "zoo-test-toy"
    assert model.zoo_info["revision"] == served["revision"]
    assert model.zoo_info["config"]["architecture"] == ARCHITECTURE
    folder = Path(model.zoo_info["folder"])
    assert folder.is_relative_to(tmp_path) and folder.name == served["revision"]
    assert file_hashes(folder) == served["sha256"]


@pytest.mark.filterwarnings("error")  # the pinned commit, reached by sha or tag, warns nothing
@pytest.mark.parametrize("revision", ["sha", "v1"])
def test_download_by_pinned_revision_and_tag(online, served, checkpoint, tmp_path, revision):
    _, reference = checkpoint
    rev = served["revision"] if revision == "sha" else revision
    with registered(PretrainedEntry(**served)):
        model = zoo.load("zoo-test-toy", revision=rev, cache_dir=tmp_path)
    assert model.zoo_info["revision"] == served["revision"]
    assert torch.equal(example_outputs(model), reference)


def test_unpinned_revision_is_checked_against_its_config(online, hub, checkpoint, tmp_path):
    folder, _ = checkpoint
    first = hub.add_repo("zoo/moving", folder, tags=("v1",))
    newer = save_pretrained(make_model(seed=11), tmp_path / "newer", card="# v2\n")
    second = hub.add_repo("zoo/moving", newer, tags=("v2",))
    kwargs = entry_kwargs("zoo-test-moving", "zoo/moving", first, folder)
    with registered(PretrainedEntry(**kwargs)):
        with pytest.warns(UserWarning, match="not the registry's pinned commit"):
            model = zoo.load("zoo-test-moving", revision="v2", cache_dir=tmp_path / "cache")
    assert model.zoo_info["revision"] == second
    assert torch.equal(example_outputs(model), example_outputs(make_model(seed=11)))


def test_download_function_takes_an_endpoint(hub, served, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with registered(PretrainedEntry(**served)):
        folder = hub_download.download("zoo-test-toy", cache_dir=tmp_path, endpoint=hub.url)
    assert file_hashes(folder) == served["sha256"]


def test_reload_offline_from_cache(online, served, checkpoint, tmp_path, monkeypatch):
    _, reference = checkpoint
    cache = tmp_path / "cache"
    with registered(PretrainedEntry(**served)):
        zoo.load("zoo-test-toy", cache_dir=cache)
        zoo.load("zoo-test-toy", revision="v1", cache_dir=cache)  # the cache learns the tag
        monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
        for revision in (None, "v1"):
            model = zoo.load(
                "zoo-test-toy", revision=revision, cache_dir=cache, local_files_only=True
            )
            assert torch.equal(example_outputs(model), reference)
    # huggingface_hub reads HF_HUB_OFFLINE at import: check the real switch in a fresh process.
    process = start_load_process(
        served,
        "zoo-test-toy",
        {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": dead_endpoint()},
    )
    result = finish_load_process(process)
    assert torch.equal(torch.tensor(result["outputs"]), reference)


def test_offline_without_cache_says_how_to_get_it(entry_args, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", dead_endpoint())
    with registered(PretrainedEntry(**entry_args)):
        with pytest.raises(OfflineError, match="zoo download zoo-test-toy") as info:
            zoo.load("zoo-test-toy", cache_dir=tmp_path, local_files_only=True)
        assert "HF_ENDPOINT" in str(info.value)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(OfflineError):
            zoo.load("zoo-test-toy", cache_dir=tmp_path)


def test_missing_repository_is_a_download_error(online, served, tmp_path):
    # (An endpoint that refuses connections is a DownloadError too, after huggingface_hub's
    # ~20 s of retries; the mid-download crash below covers network failures faster.)
    kwargs = {**served, "name": "zoo-test-missing", "repo_id": "zoo/missing"}
    with registered(PretrainedEntry(**kwargs)):
        with pytest.raises(DownloadError, match="HF_ENDPOINT"):
            zoo.load("zoo-test-missing", cache_dir=tmp_path)


def test_server_dying_mid_download_leaves_no_partial_file(
    hub,
    served,
    checkpoint,
    tmp_path,
    monkeypatch,
):
    _, reference = checkpoint
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with flaky_proxy(hub.port) as proxy, registered(PretrainedEntry(**served)):
        monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        proxy.die_during("/model.safetensors")
        with pytest.raises(DownloadError):
            zoo.load("zoo-test-toy", cache_dir=tmp_path)
        assert proxy.killed.is_set()
        assert _snapshot_files(tmp_path, "model.safetensors") == []
        assert _leftovers(tmp_path) == []
        proxy.revive()  # the server is back
        model = zoo.load("zoo-test-toy", cache_dir=tmp_path)
    assert torch.equal(example_outputs(model), reference)
    assert file_hashes(Path(model.zoo_info["folder"])) == served["sha256"]


def test_tampered_file_is_rejected_and_evicted(hub, served, checkpoint, tmp_path, monkeypatch):
    folder, _ = checkpoint
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    data = bytearray((tampered / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the last weight
    (tampered / "model.safetensors").write_bytes(bytes(data))
    sha = hub.add_repo("zoo/tampered", tampered)
    kwargs = {**served, "name": "zoo-test-tampered", "repo_id": "zoo/tampered", "revision": sha}
    cache = tmp_path / "cache"
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with registered(PretrainedEntry(**kwargs)):
        with pytest.raises(CorruptFileError) as info:
            zoo.load("zoo-test-tampered", cache_dir=cache)
    err = info.value
    assert err.path.name == "model.safetensors" and err.removed
    assert err.expected == served["sha256"]["model.safetensors"]
    assert err.actual == hashlib.sha256(bytes(data)).hexdigest()
    assert err.expected in str(err) and err.actual in str(err)
    assert _snapshot_files(cache, "model.safetensors") == []
    bad_blobs = [p for p in cache.glob("models--*/blobs/*") if p.read_bytes() == bytes(data)]
    assert bad_blobs == []


def test_two_processes_load_into_one_empty_cache(online, served, checkpoint, tmp_path):
    _, reference = checkpoint
    cache, barrier = tmp_path / "cache", tmp_path / "barrier"
    barrier.mkdir()
    env = {"HF_ENDPOINT": online.url, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "0"}
    processes = [
        start_load_process(served, "zoo-test-toy", env, barrier=(barrier, 2)) for _ in range(2)
    ]
    results = [finish_load_process(p) for p in processes]
    for result in results:
        assert torch.equal(torch.tensor(result["outputs"]), reference)
        assert result["revision"] == served["revision"]
    assert file_hashes(Path(results[0]["folder"])) == served["sha256"]
    assert _leftovers(cache) == []


# --- publish ----------------------------------------------------------------------------------
class FakeHfApi:
    """Records the calls :func:`zoo.publish` makes (olah is read-only)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def upload_folder(self, *args, **kwargs):
        self.calls.append(("upload_folder", args, kwargs))
        return SimpleNamespace(oid="f" * 40)

    def create_tag(self, *args, **kwargs):
        self.calls.append(("create_tag", args, kwargs))


def test_publish_uploads_tags_and_records_the_registry_entry(checkpoint, tmp_path, capsys):
    folder, _ = checkpoint
    api = FakeHfApi()
    index = tmp_path / "index.json"
    sha = publish(folder, "zoo/toy", revision_tag="v1", private=True, api=api, index=index)
    assert sha == "f" * 40
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder", "create_tag"]
    _, args, kwargs = api.calls[0]
    assert args == ("zoo/toy",) and kwargs["exist_ok"] is True and kwargs["private"] is True
    _, _, kwargs = api.calls[1]
    assert kwargs["repo_id"] == "zoo/toy" and Path(kwargs["folder_path"]) == folder
    assert sorted(kwargs["allow_patterns"]) == ["README.md", "config.json", "model.safetensors"]
    _, args, kwargs = api.calls[2]
    assert args == ("zoo/toy",) and kwargs["tag"] == "v1" and kwargs["revision"] == sha
    assert sha in capsys.readouterr().out
    # The registry entry is data: pinned to the uploaded commit, every file hashed and sized.
    [entry] = read_index(index)
    assert entry.repo_id == "zoo/toy" and entry.revision == sha
    assert dict(entry.sha256) == file_hashes(folder)
    assert dict(entry.sizes) == {f: (folder / f).stat().st_size for f in entry.sha256}
    assert entry.architecture == ARCHITECTURE


def test_publish_refuses_a_bad_folder_before_any_call(checkpoint, tmp_path):
    folder, _ = checkpoint
    extra = tmp_path / "extra"
    shutil.copytree(folder, extra)
    (extra / "notes.txt").write_text("not part of a checkpoint")
    api = FakeHfApi()
    with pytest.raises(CheckpointError, match="notes.txt"):
        publish(extra, "zoo/toy", api=api)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(folder, corrupt)
    with open(corrupt / "model.safetensors", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CorruptFileError):
        publish(corrupt, "zoo/toy", api=api)
    assert api.calls == []


def test_an_architecture_without_weights_says_so_and_how_to_train_it():
    with pytest.raises(UnknownModelError, match="no published weights") as info:
        get_pretrained("smoke-equiv")
    message = str(info.value)
    assert info.value.architecture_without_weights
    # Recipes are found by the architecture they train, not by their file names.
    assert "zoo train rsteer-smoke-rotation.equiv" in message
    assert "zoo.create_model('smoke-equiv')" in message
    assert "equiformer-md17-aspirin.standard" in message  # lists what is published


def test_an_architecture_name_points_to_its_published_models():
    # `zoo.load("equiformer")` / `zoo predict vn-pointnet ...`: the architecture is there, with
    # published weights under model names; say which, plain names first.
    with pytest.raises(UnknownModelError, match="is an architecture, not a published") as info:
        get_pretrained("equiformer")
    assert not info.value.architecture_without_weights
    names = [model for model, _ in info.value.architecture_models]
    assert set(names) == {n for n in zoo.list_models() if get_pretrained(n).architecture
                          == "equiformer"}
    message = str(info.value)
    assert ("equiformer-md17-aspirin.standard (also equiformer-md17-aspirin)" in message)
    assert "zoo.load('equiformer-md17-aspirin')" in message
    assert "no published weights" not in message
    assert "`zoo predict equiformer-md17-aspirin ...`" in message
    # zoo predict takes molecules and point clouds only: no such hint for N-body models.
    with pytest.raises(UnknownModelError, match="zoo.load\\('egnn-nbody'\\)") as info:
        get_pretrained("egnn")
    assert "zoo predict" not in str(info.value)
    # A near-miss name is still an unknown model with suggestions, not an architecture.
    with pytest.raises(UnknownModelError, match="unknown model 'vn-pointnt'"):
        get_pretrained("vn-pointnt")


def test_zoo_predict_names_an_architecture_without_weights(tmp_path, capsys):
    from zoo.cli import main

    cloud = tmp_path / "cloud.npy"
    np.save(cloud, np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    assert main(["predict", "smoke-rsteer", str(cloud)]) != 0
    err = capsys.readouterr().err
    assert "'smoke-rsteer' is an architecture with no published weights" in err
    assert "zoo train rsteer-smoke-rotation" in err
    assert main(["predict", "vn-pointnet", str(cloud)]) != 0
    err = capsys.readouterr().err
    assert "'vn-pointnet' is an architecture, not a published model" in err
    assert "`zoo predict vn-pointnet-modelnet40 ...`" in err
