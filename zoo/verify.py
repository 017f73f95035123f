"""Re-measure a published model: equivariance, and the card's test metrics where data exists."""

from __future__ import annotations

from typing import Any

import torch


def verify(model, *, data_root: str | None = None, batch_size: int = 32) -> dict[str, Any]:
    """Equivariance errors (float32, float64) and, where the data exists, the test metrics.

    Parameters
    ----------
    model
        A model returned by :func:`zoo.load` (its ``zoo_info`` holds the config).
    data_root
        Where to find the data (default :func:`zoo.data.data_root`).
    batch_size
        Evaluation batch size.

    Returns
    -------
    dict
        ``{"equivariance_error": {...}, "metrics": {...} or None, "card_metrics": {...},
        "metrics_match": bool or None, "skipped": reason or None}``.
    """
    from zoo.testing import equivariance_error

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
    data = config.get("data")
    if not data or data.get("dataset", "rmd17") != "rmd17":
        result["skipped"] = "the config names no dataset this version can evaluate"
        return result
    from zoo.data import load_rmd17
    from zoo.train.export import evaluate
    from zoo.train.molecules import rows_to_data

    try:
        test = load_rmd17(
            data["molecule"], "test", root=data_root, seed=data.get("split_seed", 0),
            n_train=data.get("n_train", 950), n_val=data.get("n_val", 50),
            max_frames=data.get("max_test_frames"),
        )
    except FileNotFoundError as err:
        result["skipped"] = str(err)
        return result
    dtype = next(model.parameters()).dtype
    measured = evaluate(model.eval(), rows_to_data(test, dtype), batch_size)
    result["metrics"] = measured
    card = config.get("metrics") or {}
    # "Within rounding": the card rounds to 4 decimals; allow float32 summation-order noise.
    result["metrics_match"] = all(
        abs(measured[k] - card[k]) <= 1e-3 + 1e-4 * abs(card[k]) for k in card
    )
    return result
