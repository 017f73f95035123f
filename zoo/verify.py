"""Re-measure a published model: equivariance, and the card's test metrics where data exists."""

from __future__ import annotations

from typing import Any

import torch


def verify(
    model, *, data_root: str | None = None, batch_size: int = 32, metrics: bool = True
) -> dict[str, Any]:
    """Equivariance errors (float32, float64) and, where the data exists, the test metrics.

    Parameters
    ----------
    model
        A model returned by :func:`zoo.load` (its ``zoo_info`` holds the config).
    data_root
        Where to find the data (default :func:`zoo.data.data_root`).
    batch_size
        Evaluation batch size.
    metrics
        Re-measure the card's test metrics; ``False`` checks equivariance only.

    Returns
    -------
    dict
        ``{"equivariance_error": {...}, "metrics": {...} or None, "card_metrics": {...},
        "metrics_match": bool or None, "skipped": reason or None}``. ``"metrics"`` is
        ``None`` when nothing was measured, ``"skipped"`` then says why: a caller must not
        read that as a match.
    """
    from zoo.equivariance import equivariance_error

    config = getattr(model, "zoo_info", {}).get("config", {})
    result: dict[str, Any] = {
        "equivariance_error": {
            "float64": equivariance_error(model, dtype=torch.float64),
            "float32": equivariance_error(model, dtype=torch.float32),
        },
        "card_metrics": config.get("metrics"),
        "metrics": None,
        "metrics_match": None,
        "skipped": None,
    }
    if not metrics:
        result["skipped"] = "not asked for (equivariance only)"
        return result
    data = config.get("data")
    if not data:
        result["skipped"] = "the config names no dataset this version can evaluate"
        return result
    from zoo.tasks import get_task

    try:
        task = get_task(data.get("dataset", "rmd17"))
    except ValueError as err:
        result["skipped"] = str(err)
        return result
    dtype = next(model.parameters()).dtype
    try:
        test = task.load_test(data, data_root, dtype)
    except FileNotFoundError as err:
        result["skipped"] = str(err)
        return result
    measured = task.evaluate(model.eval(), test, batch_size)
    result["metrics"] = measured
    card = config.get("metrics") or {}
    # "Within rounding": cards keep at least 4 significant digits; allow float32
    # summation-order noise, relative to the value (N-body MSEs are ~1e-3, MD17 MAEs ~10).
    result["metrics_match"] = all(
        abs(measured[k] - card[k]) <= 2e-4 * abs(card[k]) + 1e-12 for k in card
    )
    return result
