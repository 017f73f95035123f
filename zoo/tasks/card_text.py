"""What the benchmarks' card sections share: the sections themselves, citations, method names.

Each benchmark's ``card.py`` fills a :class:`CardSections`; :func:`zoo.train.card.render_card`
puts it between the parts every card has (front matter, title, training, fine-tuning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from zoo.train.recipe_schema import Recipe

# The relaxation papers, cited by every card whose model they trained.
CR_BIBTEX = """@inproceedings{pertigkiozoglou2024improving,
  title={Improving Equivariant Model Training via Constraint Relaxation},
  author={Pertigkiozoglou, Stefanos and Chatzipantazis, Evangelos and Trivedi, Shubhendu
          and Daniilidis, Kostas}, booktitle={NeurIPS}, year={2024}}"""
ACE_BIBTEX = """@article{manolache2025learning,
  title={Learning (Approximately) Equivariant Networks via Constrained Optimization},
  author={Manolache, Andrei and Chamon, Luiz F. O. and Niepert, Mathias},
  journal={arXiv}, year={2025}}"""

METHOD_NAMES = {
    "none": "standard (equivariant throughout)",
    "cr": "constraint relaxation (CR)",
    "ace": "adaptive constrained equivariance (ACE)",
    "recm": "RECM-style recurrent level modulation",
}

STANDARD_SENTENCE = (
    "**standard training**: exactly SE(3)-equivariant throughout (no relaxation branches, "
    "nothing to project)."
)
_RELAXED_SENTENCE = (
    "**{name}** and then projected back to an exactly SE(3)-equivariant model."
)


def training_sentence(method: str) -> str:
    """How an SE(3) model was trained, as the end of its card's first sentence."""
    if method == "none":
        return STANDARD_SENTENCE
    return _RELAXED_SENTENCE.format(name=METHOD_NAMES[method])


def model_phrase(recipe: Recipe, model: nn.Module, names: dict[str, str]) -> str:
    """``EGNN (`nbody` preset, 12,345 parameters)``: how a card's summary opens (``names``: the
    display names of the benchmark's architectures)."""
    arch = recipe.model.architecture
    n_params = sum(p.numel() for p in model.parameters())
    return f"{names.get(arch, arch)} (`{recipe.model.preset}` preset, {n_params:,} parameters)"


def before_projection(relaxed: dict | None, measured: str) -> str:
    """The results' line on the relaxed model before projection (empty for unrelaxed runs)."""
    if not relaxed:
        return ""
    return (f"\nBefore projection (the relaxed model as trained, levels as the controller left "
            f"them): {measured}.\n")


def bibtex(*entries: str) -> str:
    """A card's citation block."""
    return "```bibtex\n" + "\n".join(entries) + "\n```"


@dataclass
class CardSections:
    """The benchmark-specific parts of a model card.

    Attributes
    ----------
    task, dataset
        ``(type, name)`` of the Hugging Face ``model-index`` task and dataset.
    metrics
        ``(type, name, value)`` of every test metric in the ``model-index``.
    tags
        Tags beside ``equivariant`` and the relaxation tags.
    summary
        The first paragraph: what the model is and how it was trained.
    intended_use, data, results, equivariance
        The bodies of those sections.
    citations
        The citation section's body (usually :func:`bibtex`).
    hub_dataset
        Whether ``dataset`` is a Hub dataset (``datasets:`` in the front matter); not for the
        user's own files.
    base_model
        The Hub repository a fine-tuned model came from (``base_model:``), if any.
    load_note
        Appended to the "Load it with" line.
    show_parent
        Add a "Parent model" section naming the model it was fine-tuned from (where it was).
    results_title
        The results section's heading.
    energy_model
        Whether ``zoo finetune`` takes the model (the fine-tuning section says how).
    """

    task: tuple[str, str]
    dataset: tuple[str, str]
    metrics: list[tuple[str, str, float]]
    tags: list[str]
    summary: str
    intended_use: str
    data: str
    results: str
    equivariance: str
    citations: str
    hub_dataset: bool = True
    base_model: str | None = None
    load_note: str = ""
    show_parent: bool = False
    results_title: str = "Results (test split, held out)"
    energy_model: bool = False


def earlier_stages(info: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs before this one (a fine-tuned model's parent and its own parents), oldest
    first, from the training record of an export (``zoo.train.parent.training_lineage``)."""
    return list((info.get("parent") or {}).get("lineage") or [])


def total_epochs(info: dict[str, Any]) -> int:
    """Epochs of this run and of every earlier stage it was fine-tuned from."""
    return info["epochs"] + sum(s.get("epochs") or 0 for s in earlier_stages(info))


def epochs_text(info: dict[str, Any]) -> str:
    """``"60 epochs"``, or ``"575 + 60 epochs"`` for a run that continued an earlier stage."""
    earlier = [str(s.get("epochs") or "?") for s in earlier_stages(info)]
    return " + ".join([*earlier, str(info["epochs"])]) + " epochs"
