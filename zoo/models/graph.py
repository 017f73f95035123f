"""Graph construction and scatter operations in pure torch.

No torch-cluster, torch-scatter or pyg-lib: radius graphs are built per graph with dense
distance blocks, which is exact and fast for molecules of up to a few hundred atoms.
"""

from __future__ import annotations

import torch


def radius_graph(
    pos: torch.Tensor, batch: torch.Tensor | None, cutoff: float, chunk_pairs: int = 4_000_000
) -> torch.Tensor:
    """Edges between distinct atoms of the same graph closer than ``cutoff``.

    Parameters
    ----------
    pos
        ``[N, 3]`` positions.
    batch
        ``[N]`` graph index of every atom, sorted (as in a PyG ``Batch``); ``None`` for one graph.
    cutoff
        Radius (same unit as ``pos``).
    chunk_pairs
        Candidate pairs handled at once (bounds memory for large batches).

    Returns
    -------
    torch.Tensor
        ``[2, E]`` long tensor ``(source, target)``; edges come in both directions.
    """
    n = pos.shape[0]
    device = pos.device
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=device)
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError("radius_graph needs atoms sorted by graph (as in a PyG Batch)")
    counts = torch.bincount(batch)
    starts = torch.cumsum(counts, 0) - counts
    # Every atom i is paired with every atom of its own graph: pairs per atom = its graph size.
    per_atom = counts[batch]
    source = torch.repeat_interleave(torch.arange(n, device=device), per_atom)
    first_pair = torch.cumsum(per_atom, 0) - per_atom
    local = torch.arange(source.numel(), device=device) - torch.repeat_interleave(
        first_pair, per_atom
    )
    target = starts[batch[source]] + local
    keep_parts = []
    cutoff_sq = cutoff * cutoff
    with torch.no_grad():
        for begin in range(0, source.numel(), chunk_pairs):
            s, t = source[begin : begin + chunk_pairs], target[begin : begin + chunk_pairs]
            dist_sq = (pos[s] - pos[t]).pow(2).sum(-1)
            keep_parts.append((dist_sq < cutoff_sq) & (s != t))
    keep = torch.cat(keep_parts)
    return torch.stack([source[keep], target[keep]])


def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """``out[index[e]] += src[e]`` along the first dimension."""
    out = torch.zeros((size, *src.shape[1:]), dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


def scatter_softmax(
    logits: torch.Tensor, index: torch.Tensor, size: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax of ``logits`` ``[E, H]`` over the edges sharing a target ``index``.

    With ``weights`` ``[E]`` (a smooth cutoff envelope), edges enter the normalisation as
    ``w * exp(logit)``, so an edge fades in and out continuously at the cutoff.
    """
    expand = index.unsqueeze(-1).expand_as(logits)
    maximum = torch.full((size, logits.shape[1]), -torch.inf, dtype=logits.dtype,
                         device=logits.device)
    maximum = maximum.scatter_reduce(0, expand, logits.detach(), reduce="amax")
    exp = torch.exp(logits - maximum[index])
    if weights is not None:
        exp = exp * weights.unsqueeze(-1)
    denominator = scatter_sum(exp, index, size)
    return exp / denominator[index].clamp_min(torch.finfo(logits.dtype).tiny)
