"""Tests of zoo.models.graph: radius graphs and scatter softmax against brute-force references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from zoo.models.graph import radius_graph, scatter_softmax, scatter_sum

CUTOFF = 2.0


def _brute_force_edges(pos: np.ndarray, batch: np.ndarray, cutoff: float) -> set[tuple[int, int]]:
    """Every ordered pair of distinct atoms of one graph closer than ``cutoff``."""
    edges = set()
    for i, j in itertools.permutations(range(len(pos)), 2):
        if batch[i] == batch[j] and np.linalg.norm(pos[i] - pos[j]) < cutoff:
            edges.add((i, j))
    return edges


def _random_batch(seed: int, sizes: list[int], spread: float = 1.6):
    """Positions of molecules of the given sizes, and the sorted graph index of every atom."""
    rng = np.random.default_rng(seed)
    pos = np.concatenate([rng.normal(scale=spread, size=(n, 3)) for n in sizes])
    batch = np.repeat(np.arange(len(sizes)), sizes)
    return pos, batch


def _as_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(s), int(t)) for s, t in edge_index.T}


# Molecules of different sizes, including 1-atom graphs (PyG graphs have >= 1 atom).
SIZES = [
    [5, 1, 9, 3],
    [1],
    [12, 7, 1, 1, 20],
    [2, 30],
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sizes", SIZES, ids=lambda s: "-".join(map(str, s)))
def test_radius_graph_matches_brute_force(seed: int, sizes: list[int]) -> None:
    pos, batch = _random_batch(seed, sizes)
    edge_index = radius_graph(torch.as_tensor(pos), torch.as_tensor(batch), CUTOFF)
    assert edge_index.dtype == torch.long and edge_index.shape[0] == 2
    found = _as_set(edge_index)
    assert len(found) == edge_index.shape[1], "duplicate edges"
    assert found == _brute_force_edges(pos, batch, CUTOFF)
    assert all((j, i) in found for i, j in found), "edges must come in both directions"
    assert all(i != j for i, j in found), "no self loops"
    assert all(batch[i] == batch[j] for i, j in found), "no edges between graphs"


def test_radius_graph_chunked_equals_unchunked() -> None:
    pos, batch = _random_batch(7, [11, 4, 1, 16])
    args = (torch.as_tensor(pos), torch.as_tensor(batch), CUTOFF)
    assert _as_set(radius_graph(*args, chunk_pairs=13)) == _as_set(radius_graph(*args))


def test_radius_graph_graph_without_neighbours() -> None:
    # Graph 0: atoms 10 Å apart (no edge); graph 1: a close pair; graph 2: a single atom.
    pos = torch.tensor(
        [[0.0, 0, 0], [10.0, 0, 0], [0.0, 10, 0], [0.0, 0, 0], [0.5, 0, 0], [3.0, 3, 3]],
        dtype=torch.float64,
    )
    batch = torch.tensor([0, 0, 0, 1, 1, 2])
    assert _as_set(radius_graph(pos, batch, CUTOFF)) == {(3, 4), (4, 3)}
    # Nothing at all within the cutoff.
    lonely = radius_graph(pos[:3], batch[:3], CUTOFF)
    assert lonely.shape == (2, 0) and lonely.dtype == torch.long


def test_radius_graph_single_atom_and_empty() -> None:
    one = radius_graph(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long), CUTOFF)
    assert one.shape == (2, 0)
    none = radius_graph(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), CUTOFF)
    assert none.shape == (2, 0)


def test_radius_graph_batch_none_is_one_graph() -> None:
    pos, _ = _random_batch(3, [15])
    found = _as_set(radius_graph(torch.as_tensor(pos), None, CUTOFF))
    assert found == _brute_force_edges(pos, np.zeros(15, dtype=int), CUTOFF)


def test_radius_graph_cutoff_is_strict() -> None:
    pos = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [0.0, 1.999, 0]], dtype=torch.float64)
    found = _as_set(radius_graph(pos, None, 2.0))
    assert found == {(0, 2), (2, 0)}


def test_radius_graph_rejects_unsorted_batch() -> None:
    pos = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="sorted"):
        radius_graph(pos, torch.tensor([0, 1, 0, 1]), CUTOFF)


# --------------------------------------------------------------------------- scatter softmax


def _groups(seed: int, n_edges: int, n_targets: int, heads: int):
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n_targets, (n_edges,), generator=generator)
    logits = torch.randn(n_edges, heads, generator=generator, dtype=torch.float64) * 3
    weights = torch.rand(n_edges, generator=generator, dtype=torch.float64)
    return index, logits, weights


@pytest.mark.parametrize("seed", range(3))
def test_scatter_softmax_matches_per_group_softmax(seed: int) -> None:
    index, logits, _ = _groups(seed, n_edges=60, n_targets=9, heads=3)
    alpha = scatter_softmax(logits, index, 12)  # targets 9..11 receive no edge
    sums = scatter_sum(alpha, index, 12)
    present = torch.unique(index)
    torch.testing.assert_close(sums[present], torch.ones(len(present), 3, dtype=torch.float64))
    for target in present:
        members = index == target
        expected = torch.softmax(logits[members], dim=0)
        torch.testing.assert_close(alpha[members], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_scatter_softmax_with_envelope_weights(seed: int) -> None:
    index, logits, weights = _groups(seed, n_edges=50, n_targets=7, heads=2)
    weights[::5] = 0.0  # edges at the cutoff: must get exactly zero attention
    alpha = scatter_softmax(logits, index, 7, weights=weights)
    assert (alpha[::5] == 0).all()
    for target in torch.unique(index):
        members = index == target
        numerator = weights[members, None] * torch.exp(logits[members])
        if float(numerator.sum()) == 0.0:
            assert (alpha[members] == 0).all()
            continue
        torch.testing.assert_close(alpha[members], numerator / numerator.sum(0),
                                   rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(alpha[members].sum(0), torch.ones(2, dtype=torch.float64))


def test_scatter_softmax_all_weights_zero_gives_zero_not_nan() -> None:
    logits = torch.randn(4, 2, dtype=torch.float64)
    alpha = scatter_softmax(logits, torch.zeros(4, dtype=torch.long), 1,
                            weights=torch.zeros(4, dtype=torch.float64))
    assert torch.isfinite(alpha).all() and (alpha == 0).all()


def test_scatter_softmax_large_logits_are_stable() -> None:
    logits = torch.tensor([[1000.0], [999.0], [-1000.0]], dtype=torch.float64)
    alpha = scatter_softmax(logits, torch.zeros(3, dtype=torch.long), 1)
    expected = torch.softmax(logits, dim=0)
    torch.testing.assert_close(alpha, expected)


def test_scatter_softmax_gradcheck() -> None:
    index, logits, weights = _groups(0, n_edges=12, n_targets=4, heads=2)
    logits.requires_grad_(True)
    weights = (weights + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, w: scatter_softmax(a, index, 4, weights=w), (logits, weights)
    )
