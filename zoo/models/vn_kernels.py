"""Low-level Vector Neuron functions: VN products, the LeakyReLU, kNN graphs, and fused
batch-norm + LeakyReLU kernels.

The tail of a VN block (norms, batch norm of the norms, LeakyReLU along learned directions,
and for edge convolutions a gather and a mean over the neighbours) is a long chain of cheap
elementwise operations on tensors of ``rows x C x 3`` numbers; in plain autograd each step
writes and keeps a full-size tensor, which on a CPU costs far more than the matrix products.
:func:`vn_batchnorm_leaky_relu` (:func:`vn_batchnorm` without the LeakyReLU) and
:func:`vn_edge_mean` run that chain chunk by chunk inside a custom autograd function and
recompute it once in the backward pass instead of storing it: a few MB live at a time, several
times faster. Both equal their plain versions (:func:`vn_leaky_relu` after
:class:`~zoo.models.vn_layers.VNBatchNorm`, and :func:`vn_edge_activations` then a mean) to
rounding, values and gradients alike, including the batch-statistics terms and the
running-statistics update of ``nn.BatchNorm1d``.

Layouts. A VN feature of ``C`` vectors is *channel-major* ``[..., C, 3]`` (the layout of the
relaxation sites' flattened inputs and outputs, and of the public functions by default) or
*component-major* ``[..., 3, C]`` (``component_major=True``), the layout the networks run in:
there a VN linear map is one matrix product ``v @ W^T`` over ``3 x rows`` rows and the fused
kernels read their chunks in place, where the channel-major layout costs a transposing copy (a
strided loop several times slower than a plain copy) on each side of every product and kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

EPS = 1e-6
"""The reference code's epsilon in norms and in the LeakyReLU projection."""

_CHUNK_ELEMENTS = 1 << 16
"""Scalars per chunk on a CPU (times 3 for the vectors), chosen by timing: below it Python
overhead dominates, above it the working set leaves the cache."""
_CHUNK_ELEMENTS_ACCELERATOR = 1 << 24
"""On GPUs the cost is kernel launches, not cache: far fewer, larger chunks."""


# --------------------------------------------------------------------------- plain functions


def vn_matmul(
    weight: torch.Tensor, v: torch.Tensor, shared_tail: int = 0, component_major: bool = False
) -> torch.Tensor:
    """``y_o = sum_c W_oc v_c`` on vector features ``[..., C, 3]`` -> ``[..., C_out, 3]``, or
    ``[..., 3, C]`` -> ``[..., 3, C_out]`` with ``component_major`` (one matrix product, no copy).

    ``shared_tail``: number of trailing channels of ``v`` equal for every element of the set
    axis (dim ``-3``); their contribution is computed once per set and broadcast.
    """
    if not component_major:
        # The component-major product on a contiguous copy (two transposing copies in all, one
        # fewer than einsum): bitwise what the networks compute on the same features.
        v = v.transpose(-1, -2).contiguous()
        return vn_matmul(weight, v, shared_tail, True).transpose(-1, -2)
    if shared_tail <= 0:
        return torch.matmul(v, weight.t())
    head, tail = torch.split(v, [v.shape[-1] - shared_tail, shared_tail], dim=-1)
    out = torch.matmul(head, weight[:, : head.shape[-1]].t())
    return out + torch.matmul(tail.narrow(-3, 0, 1), weight[:, head.shape[-1] :].t())


def vn_leaky_relu(
    p: torch.Tensor, d: torch.Tensor, negative_slope: float, component_major: bool = False
) -> torch.Tensor:
    """VN LeakyReLU of features ``p`` ``[..., C, 3]`` along directions ``d`` (``C`` or 1
    channels): where ``<p, d> < 0`` the component along ``d`` is removed, then a fraction
    ``negative_slope`` of the input is mixed back in. Written
    ``p - (1 - a) min(<p, d>, 0) / (|d|^2 + eps) d``, the reference's masked form.
    ``component_major``: ``p`` and ``d`` are ``[..., 3, C]``."""
    axis = -2 if component_major else -1
    dot = (p * d).sum(axis, keepdim=True)
    dsq = (d * d).sum(axis, keepdim=True)
    return p - torch.clamp(dot, max=0.0) * (1.0 - negative_slope) / (dsq + EPS) * d


@torch.no_grad()
def knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, N, k]`` of the ``k`` nearest rows of ``x`` ``[B, N, F]`` within each
    cloud, the point itself included (Euclidean distance)."""
    if x.shape[1] < k:
        raise ValueError(f"need at least k={k} points per cloud, got {x.shape[1]}")
    # |x_j|^2 - 2 <x_i, x_j> orders each row like the distance (|x_i|^2 is constant per row).
    score = torch.baddbmm((x * x).sum(-1).unsqueeze(1), x, x.transpose(1, 2), alpha=-2.0)
    return score.topk(k, dim=-1, largest=False).indices


def gather_neighbours(v: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``v[b, idx[b, i, j]]``: features ``[B, N, *F]`` of the neighbours, ``[B, N, k, *F]``."""
    batch, points = v.shape[:2]
    rows = (idx + torch.arange(batch, device=idx.device).view(-1, 1, 1) * points).reshape(-1)
    flat = v.reshape(batch * points, -1).index_select(0, rows)
    return flat.view(*idx.shape, *v.shape[2:])


def vn_edge_activations(
    pa, pb, da, db, idx, batchnorm, negative_slope, component_major: bool = False
) -> torch.Tensor:
    """Plain autograd edge tail: activated edge features ``[B, N, k, C, 3]`` (channel-major;
    ``[B, N, k, 3, C]`` with ``component_major``), before pooling. Inputs as
    :func:`vn_edge_mean`; ``batchnorm`` a ``VNBatchNorm``."""
    p = gather_neighbours(pa, idx) + pb.unsqueeze(2)
    d = gather_neighbours(da, idx) + db.unsqueeze(2)
    if component_major:
        p = batchnorm(p, component_major=True)
        return vn_leaky_relu(p, d, negative_slope, component_major=True)
    p = batchnorm(p.transpose(-1, -2))
    return vn_leaky_relu(p, d.transpose(-1, -2), negative_slope)


# --------------------------------------------------------------------------- fused kernels


def _chunks(rows: int, per_row: int, device: torch.device):
    budget = _CHUNK_ELEMENTS if device.type == "cpu" else _CHUNK_ELEMENTS_ACCELERATOR
    size = max(1, budget // max(1, per_row))
    for start in range(0, rows, size):
        yield start, min(rows, start + size)


def _sum3(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum_i a_i b_i`` over the component axis (dim 2); three fused multiply-adds, much
    faster than a reduction over a size-3 axis."""
    out = a.select(2, 0) * b.select(2, 0)
    out.addcmul_(a.select(2, 1), b.select(2, 1))
    return out.addcmul_(a.select(2, 2), b.select(2, 2))


class _Tail:
    """Batch norm of the norms and LeakyReLU of one chunk: ``out = s p - c d``.

    ``p``, ``d``: component-major vectors ``[R, k, 3, C]`` (``k = 1`` for point features;
    ``d`` may have one channel, or be ``None``: batch norm only, ``out = s p``); the scalars
    ``s``, ``c``, ... are ``[R, k, C]``.
    """

    def __init__(self, p, d, scale, shift, slope):
        self.p, self.d = p, d
        self.abs_p = _sum3(p, p).sqrt_()
        self.norm = self.abs_p + EPS
        self.s = torch.addcmul(shift, self.norm, scale).div_(self.norm)  # BN(norm) / norm
        if d is None:
            return
        self.pd = _sum3(p, d)
        self.inv_dsq = _sum3(d, d).add_(EPS).reciprocal_()
        dot = self.s * self.pd
        self.negative = dot < 0
        self.c = dot.clamp_(max=0.0).mul_(self.inv_dsq).mul_(1.0 - slope)

    def output(self, out: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.mul(self.p, self.s.unsqueeze(2), out=out)
        if self.d is None:
            return out
        return out.addcmul_(self.d, self.c.unsqueeze(2), value=-1.0)

    def grad_s(self, go, slope):
        """dL/ds, and the LeakyReLU terms reused by :meth:`grad_inputs`."""
        if self.d is None:
            return _sum3(go, self.p), None, None
        g_c = -_sum3(go, self.d)
        g_dot = g_c * self.negative * self.inv_dsq * (1.0 - slope)
        return _sum3(go, self.p).addcmul_(g_dot, self.pd), g_c, g_dot

    def grad_inputs(self, go, g_s, g_c, g_dot, g_norm_bn):
        """dL/dp and dL/dd given dL/dnorm through the batch norm."""
        g_norm = g_norm_bn.sub_(g_s * self.s / self.norm)  # s = BN(norm) / norm
        abs_p = torch.where(self.abs_p > 0, self.abs_p, torch.ones_like(self.abs_p))
        g_p = self.p * (g_norm / abs_p).unsqueeze(2)
        if self.d is None:
            return g_p.addcmul_(go, self.s.unsqueeze(2)), None
        g_pd = g_dot * self.s
        g_dsq2 = g_c * self.c * self.inv_dsq * -2.0  # dc/d|d|^2 = -c / (|d|^2 + eps)
        g_p.addcmul_(go, self.s.unsqueeze(2)).addcmul_(self.d, g_pd.unsqueeze(2))
        g_d = torch.addcmul(self.d * g_dsq2.unsqueeze(2), self.p, g_pd.unsqueeze(2))
        return g_p, g_d.addcmul_(go, self.c.unsqueeze(2), value=-1.0)


class _BatchNormSpec:
    """What the kernels need from an ``nn.BatchNorm1d``: affine terms and statistics."""

    def __init__(self, weight, bias, mean, var, eps, batch_stats):
        self.mean, self.batch_stats = mean, batch_stats
        self.invstd = torch.rsqrt(var + eps)
        self.scale = self.invstd * weight
        self.shift = bias - mean * self.scale


def _coupling(p, spec, a, b):
    """The batch statistics' term of dL/dp for vectors ``p`` ``[R, k, 3, C]``:
    ``p (a + b xhat) / |p|`` with per-channel ``a``, ``b`` from sums over every row."""
    abs_p = _sum3(p, p).sqrt_()
    coef = (abs_p + EPS).sub_(spec.mean).mul_(spec.invstd).mul_(b).add_(a)  # a + b xhat
    coef.div_(torch.where(abs_p > 0, abs_p, torch.ones_like(abs_p)))
    return p * coef.unsqueeze(2)


def _backward(spec, n_rows, per_row, count, state_of, grad_out_of, scatter, add, slope):
    """The backward pass shared by both kernels; returns dL/dweight, dL/dbias.

    One pass over the chunks computes every term but the coupling of all rows through batch
    statistics (sums over every row); a second, lighter one ``add``-s that term to dL/dp (see
    :func:`_coupling`), instead of recomputing the whole tail twice.
    """
    chunks = list(_chunks(n_rows, per_row, spec.mean.device))
    sum_gz = sum_gzx = 0
    for r0, r1 in chunks:
        t = state_of(r0, r1)
        go = grad_out_of(r0, r1)
        g_s, g_c, g_dot = t.grad_s(go, slope)
        g_z = g_s / t.norm  # dL/dBN(norm)
        xhat = (t.norm - spec.mean) * spec.invstd
        sum_gz = sum_gz + g_z.flatten(0, -2).sum(0)
        sum_gzx = sum_gzx + (g_z * xhat).flatten(0, -2).sum(0)
        scatter(r0, r1, *t.grad_inputs(go, g_s, g_c, g_dot, g_z.mul_(spec.scale)))
    if spec.batch_stats:
        a, b = spec.scale * sum_gz / -count, spec.scale * sum_gzx / -count
        for r0, r1 in chunks:
            add(r0, r1, lambda p: _coupling(p, spec, a, b))
    return sum_gzx, sum_gz


def _rows(v: torch.Tensor | None, r0: int, r1: int) -> torch.Tensor | None:
    """Rows ``r0:r1`` of component-major ``[M, 3, C]`` as ``[R, 1, 3, C]``, a view: the edge
    layout with one neighbour."""
    return None if v is None else v[r0:r1].unsqueeze(1)


class _VNPointTail(torch.autograd.Function):
    """The tail on component-major rows: ``p`` ``[M, 3, C]``, ``d`` ``[M, 3, C or 1]`` or
    ``None`` (batch norm only)."""

    @staticmethod
    def forward(ctx, p, d, weight, bias, mean, var, batch_stats, eps, slope):
        spec = _BatchNormSpec(weight, bias, mean, var, eps, batch_stats)
        out = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        for r0, r1 in _chunks(p.shape[0], p.shape[-1], p.device):
            t = _Tail(_rows(p, r0, r1), _rows(d, r0, r1), spec.scale, spec.shift, slope)
            t.output(out=_rows(out, r0, r1))
        ctx.save_for_backward(p, d, weight, bias, mean, var)
        ctx.args = (batch_stats, eps, slope)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        p, d, weight, bias, mean, var = ctx.saved_tensors
        batch_stats, eps, slope = ctx.args
        spec = _BatchNormSpec(weight, bias, mean, var, eps, batch_stats)
        g_p = torch.empty(p.shape, dtype=p.dtype, device=p.device)
        g_d = None if d is None else torch.empty(d.shape, dtype=d.dtype, device=d.device)
        shared = d is not None and d.shape[-1] == 1 and p.shape[-1] != 1

        def scatter(r0, r1, gp, gd):
            g_p[r0:r1] = gp.squeeze(1)
            if gd is not None:
                g_d[r0:r1] = gd.squeeze(1).sum(-1, keepdim=True) if shared else gd.squeeze(1)

        def add(r0, r1, coupling):
            g_p[r0:r1] += coupling(_rows(p, r0, r1)).squeeze(1)

        g_w, g_b = _backward(
            spec, p.shape[0], p.shape[-1], p.shape[0],
            lambda r0, r1: _Tail(_rows(p, r0, r1), _rows(d, r0, r1),
                                 spec.scale, spec.shift, slope),
            lambda r0, r1: _rows(grad_out, r0, r1), scatter, add, slope,
        )
        return g_p, g_d, g_w, g_b, None, None, None, None, None


class _VNEdgeMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pa, pb, da, db, rows, weight, bias, mean, var, batch_stats, eps, slope):
        spec = _BatchNormSpec(weight, bias, mean, var, eps, batch_stats)
        k, channels = rows.shape[1], pb.shape[-1]
        out = torch.empty(pb.shape, dtype=pb.dtype, device=pb.device)  # viewed as [B, N, 3, C]
        for r0, r1 in _chunks(pb.shape[0], k * channels, pb.device):
            p = _edge_vectors(pa, pb, rows, r0, r1)
            d = _edge_vectors(da, db, rows, r0, r1)
            torch.sum(_Tail(p, d, spec.scale, spec.shift, slope).output(), 1, out=out[r0:r1])
        ctx.save_for_backward(pa, pb, da, db, rows, weight, bias, mean, var)
        ctx.args = (batch_stats, eps, slope)
        return out.div_(k)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        pa, pb, da, db, rows, weight, bias, mean, var = ctx.saved_tensors
        batch_stats, eps, slope = ctx.args
        spec = _BatchNormSpec(weight, bias, mean, var, eps, batch_stats)
        n_rows, k, channels = pb.shape[0], rows.shape[1], pb.shape[-1]
        grad_edge = (grad_out / k).unsqueeze(1)  # each edge's share of its point's mean
        g_pa, g_da = torch.zeros_like(pa), torch.zeros_like(da)
        g_pb, g_db = torch.empty_like(pb), torch.empty_like(db)

        def state(r0, r1):
            p = _edge_vectors(pa, pb, rows, r0, r1)
            d = _edge_vectors(da, db, rows, r0, r1)
            return _Tail(p, d, spec.scale, spec.shift, slope)

        def scatter(r0, r1, gp, gd):
            index = rows[r0:r1].reshape(-1)
            g_pa.index_add_(0, index, gp.flatten(0, 1))
            g_da.index_add_(0, index, gd.flatten(0, 1))
            torch.sum(gp, 1, out=g_pb[r0:r1])
            torch.sum(gd, 1, out=g_db[r0:r1])

        def add(r0, r1, coupling):
            gp = coupling(_edge_vectors(pa, pb, rows, r0, r1))
            g_pa.index_add_(0, rows[r0:r1].reshape(-1), gp.flatten(0, 1))
            g_pb[r0:r1] += gp.sum(1)

        g_w, g_b = _backward(
            spec, n_rows, k * channels, n_rows * k, state,
            lambda r0, r1: grad_edge[r0:r1], scatter, add, slope,
        )
        return g_pa, g_pb, g_da, g_db, None, g_w, g_b, None, None, None, None, None


def _edge_vectors(nb, ctr, rows, r0, r1):
    """``nb[rows] + ctr`` for the points ``r0:r1``: ``[R, k, 3, C]``."""
    k = rows.shape[1]
    edges = nb.index_select(0, rows[r0:r1].reshape(-1)).view(r1 - r0, k, *nb.shape[1:])
    return edges.add_(ctr[r0:r1].unsqueeze(1))


@torch.no_grad()
def _norm_stats(norms_of, n_rows: int, per_row: int, device: torch.device):
    """Mean and biased variance per channel of the norms (Chan's pairwise merge of chunks)."""
    count, mean, m2 = 0, 0.0, 0.0
    for r0, r1 in _chunks(n_rows, per_row, device):
        norm = norms_of(r0, r1)
        norm = norm.reshape(-1, norm.shape[-1])
        n, chunk_mean = norm.shape[0], norm.mean(0)
        chunk_m2 = (norm - chunk_mean).square_().sum(0)
        delta, total = chunk_mean - mean, count + n
        mean = mean + delta * (n / total)
        m2 = m2 + chunk_m2 + delta.square() * (count * n / total)
        count = total
    return mean, m2 / count, count


def _statistics(bn: nn.BatchNorm1d, norms_of, n_rows: int, per_row: int, device):
    """(mean, var, batch_stats) as ``nn.BatchNorm1d`` uses them, updating running stats."""
    # Batch statistics in training mode, or where there are no running buffers at all.
    if not bn.training and bn.running_mean is not None:
        return bn.running_mean, bn.running_var, False
    mean, var, count = _norm_stats(norms_of, n_rows, per_row, device)
    if bn.training and bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked += 1
            momentum = bn.momentum
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
            unbiased = var * (count / max(count - 1, 1))
            bn.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    return mean, var, True


def vn_batchnorm_leaky_relu(
    p: torch.Tensor,
    d: torch.Tensor | None,
    bn: nn.BatchNorm1d,
    negative_slope: float,
    component_major: bool = False,
) -> torch.Tensor:
    """Fused ``vn_leaky_relu(VNBatchNorm(p), d)`` for ``p`` ``[..., C, 3]`` and directions
    ``d`` ``[..., C or 1, 3]`` (``[..., 3, C]`` and ``[..., 3, C or 1]`` with
    ``component_major``); ``bn`` normalises the norms of ``p`` (see :mod:`this module
    <zoo.models.vn_kernels>`)."""
    if not component_major:
        d = None if d is None else d.transpose(-1, -2)
        out = vn_batchnorm_leaky_relu(p.transpose(-1, -2), d, bn, negative_slope, True)
        return out.transpose(-1, -2)
    shape = p.shape
    p = p.reshape(-1, *shape[-2:])
    d = None if d is None else d.reshape(-1, *d.shape[-2:])
    p_rows = p.detach()

    def norms(r0, r1):
        rows = _rows(p_rows, r0, r1)
        return _sum3(rows, rows).sqrt_().add_(EPS)

    mean, var, batch_stats = _statistics(bn, norms, p.shape[0], p.shape[-1], p.device)
    out = _VNPointTail.apply(
        p, d, bn.weight, bn.bias, mean, var, batch_stats, bn.eps, negative_slope
    )
    return out.view(shape)


def vn_batchnorm(
    p: torch.Tensor, bn: nn.BatchNorm1d, component_major: bool = False
) -> torch.Tensor:
    """Fused :class:`~zoo.models.vn_layers.VNBatchNorm` of ``p`` ``[..., C, 3]`` (``[..., 3, C]``
    with ``component_major``): the kernel of :func:`vn_batchnorm_leaky_relu` without the
    LeakyReLU."""
    return vn_batchnorm_leaky_relu(p, None, bn, 0.0, component_major)


def vn_edge_mean(
    pa: torch.Tensor,
    pb: torch.Tensor,
    da: torch.Tensor,
    db: torch.Tensor,
    idx: torch.Tensor,
    bn: nn.BatchNorm1d,
    negative_slope: float,
) -> torch.Tensor:
    """Fused edge tail of a VN-DGCNN layer, mean-pooled over the neighbours.

    Parameters
    ----------
    pa, pb
        Neighbour and centre parts of the feature map, ``[B, N, 3, C]`` (component-major,
        contiguous): the pre-activation of edge ``(i, j)`` is ``pa[j] + pb[i]``.
    da, db
        The same for the direction map.
    idx
        ``[B, N, k]`` neighbour indices within each cloud.
    bn
        Batch norm of the edge norms (training: batch statistics, and its running statistics
        are updated as ``nn.BatchNorm1d`` would; eval: its running statistics).
    negative_slope
        Of the VN LeakyReLU.

    Returns
    -------
    torch.Tensor
        ``[B, N, 3, C]``: ``vn_edge_activations(...).mean(2)``, transposed.
    """
    batch, points, k = idx.shape
    shape = pb.shape
    rows = (idx + torch.arange(batch, device=idx.device).view(-1, 1, 1) * points).reshape(-1, k)
    # Contiguous rows (a per-point copy where the parts are views of one product): gathering
    # rows of a strided tensor is several times slower than copying contiguous ones.
    flat = [t.reshape(batch * points, 3, shape[-1]).contiguous() for t in (pa, pb, da, db)]
    pa_rows, pb_rows = flat[0].detach(), flat[1].detach()

    def norms(r0, r1):
        p = _edge_vectors(pa_rows, pb_rows, rows, r0, r1)
        return _sum3(p, p).sqrt_().add_(EPS)

    mean, var, batch_stats = _statistics(bn, norms, batch * points, k * shape[-1], pb.device)
    out = _VNEdgeMean.apply(
        *flat, rows, bn.weight, bn.bias, mean, var, batch_stats, bn.eps, negative_slope
    )
    return out.view(shape)
