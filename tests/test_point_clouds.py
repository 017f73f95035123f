"""Point-cloud files in, class probabilities out: readers, normalisation, invariance, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main as cli_main
from zoo.hub.checkpoint import save_pretrained
from zoo.point_clouds import normalize_cloud, predict_point_cloud, read_point_cloud
from zoo.testing import random_rotation


@pytest.fixture(scope="module")
def cloud() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(64, 3))


@pytest.fixture(scope="module")
def classifier() -> zoo.models.ZooModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        # "small" keeps (learnable) running batch-norm statistics, as a trained model does; the
        # tiny preset's stay frozen at mean 0, variance 1.
        return zoo.create_model("vn-pointnet", "small").eval()


def _write_ply(path, points: np.ndarray, fmt: str) -> None:
    header = (f"ply\nformat {fmt} 1.0\ncomment made by a test\nelement vertex {len(points)}\n"
              "property float x\nproperty float y\nproperty float z\nproperty uchar red\n"
              "element face 0\nproperty list uchar int vertex_indices\nend_header\n")
    if fmt == "ascii":
        body = "".join(f"{x} {y} {z} 7\n" for x, y, z in points.astype(np.float32)).encode()
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        rows = np.zeros(len(points), dtype=[("x", order + "f4"), ("y", order + "f4"),
                                            ("z", order + "f4"), ("red", "u1")])
        rows["x"], rows["y"], rows["z"] = points.T
        body = rows.tobytes()
    path.write_bytes(header.encode() + body)


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_reader(tmp_path, cloud, fmt):
    path = tmp_path / "cloud.ply"
    _write_ply(path, cloud, fmt)
    np.testing.assert_allclose(read_point_cloud(path), cloud.astype(np.float32), rtol=1e-6)


def test_npy_and_text_readers(tmp_path, cloud):
    np.save(tmp_path / "c.npy", cloud)
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "c.npy"), cloud)
    np.savetxt(tmp_path / "c.xyz", cloud)
    np.testing.assert_allclose(read_point_cloud(tmp_path / "c.xyz"), cloud)
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        read_point_cloud(tmp_path / "o.npy")  # never unpickles
    (tmp_path / "c.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="unsupported point cloud file"):
        read_point_cloud(tmp_path / "c.obj")
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n")
    with pytest.raises(ValueError, match="end_header"):
        read_point_cloud(tmp_path / "bad.ply")


def test_normalize_is_rotation_equivariant(cloud):
    points = torch.as_tensor(cloud)
    rotation = random_rotation(torch.Generator().manual_seed(3), torch.float64)
    normalized = normalize_cloud(points)
    assert float(normalized.norm(dim=-1).max()) == pytest.approx(1.0)
    assert float(normalized.mean(0).abs().max()) < 1e-12
    torch.testing.assert_close(normalize_cloud(points @ rotation.T), normalized @ rotation.T)


def test_prediction_is_rotation_invariant(classifier, cloud):
    model = classifier.clone(dtype=torch.float64)
    rotation = random_rotation(torch.Generator().manual_seed(4), torch.float64).numpy()
    original = predict_point_cloud(model, cloud)
    rotated = predict_point_cloud(model, cloud @ rotation.T)
    assert original["probabilities"].shape == (1, model.num_classes)
    np.testing.assert_allclose(original["probabilities"].sum(-1), 1.0)
    np.testing.assert_allclose(rotated["probabilities"], original["probabilities"],
                               rtol=1e-9, atol=1e-12)
    # A stack of clouds, through zoo.predict.
    stack = np.stack([cloud, cloud @ rotation.T])
    both = zoo.predict(model, stack)["probabilities"]
    np.testing.assert_allclose(both[0], both[1], rtol=1e-9, atol=1e-12)
    assert model.training is False and classifier.training is False


def test_bad_clouds_are_rejected(classifier):
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        predict_point_cloud(classifier, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        predict_point_cloud(classifier, np.full((5, 3), np.nan))


def test_cli_predicts_a_ply_file(tmp_path, classifier, cloud, capsys):
    folder = tmp_path / "model"
    save_pretrained(classifier, folder, extra={"classes": [f"c{i}" for i in range(
        classifier.num_classes)]})
    _write_ply(tmp_path / "cloud.ply", cloud, "binary_little_endian")
    assert cli_main(["predict", str(folder), str(tmp_path / "cloud.ply"), "--top", "3"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and rows[0]["class"].startswith("c")
    assert rows[0]["probability"] >= rows[1]["probability"] >= rows[2]["probability"]



def test_clouds_are_subsampled_to_the_trained_size(tmp_path, classifier, cloud, monkeypatch,
                                                    capsys):
    # A cloud denser than the training clouds is cut to the number the model was trained on
    # (config data.n_points), as the published 300-point models need; --n-points 0 keeps all.
    import zoo.point_clouds as point_clouds

    folder = tmp_path / "model"
    save_pretrained(classifier, folder, extra={"data": {"n_points": 16}})
    model = zoo.load(str(folder))
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    predict_point_cloud(model, cloud)
    predict_point_cloud(model, cloud, n_points=None)
    predict_point_cloud(model, cloud, n_points=40)
    zoo.predict(model, cloud)
    assert seen == [16, 64, 40, 16]
    with pytest.raises(ValueError, match="n_points"):
        predict_point_cloud(model, cloud, n_points=1)

    asked = []
    real = point_clouds.predict_point_cloud

    def spy(model, points, **options):
        asked.append(options["n_points"])
        return real(model, points, **options)

    monkeypatch.setattr(point_clouds, "predict_point_cloud", spy)
    np.save(tmp_path / "cloud.npy", cloud)
    for options in ([], ["--n-points", "0"], ["--n-points", "32"]):
        assert cli_main(["predict", str(folder), str(tmp_path / "cloud.npy"), *options]) == 0
    capsys.readouterr()
    assert asked == ["trained", None, 32]
