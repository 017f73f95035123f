"""Publish the rMD17 Equiformer family of one molecule from finished runs.

1. every run's export becomes a variant folder in model_cards/, all cards with the side-by-side
   comparison, and the plain name becomes an alias of the best variant (test force MAE);
2. for aspirin, 1 ps of NVE MD with the best model measures the energy drift, which goes into its
   card; for ethanol, the fine-tuning comparison (training/finetune_ethanol.py) goes into its card;
3. every variant is recorded in model_cards/index.json (sha256 and size of every file).

    python training/publish_md17.py aspirin
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.hub.index import record_model  # noqa: E402
from zoo.train.compare import publish_family  # noqa: E402

MD_SECTION = """## Molecular dynamics (energy conservation)

{duration:g} ps of NVE dynamics of aspirin (velocity Verlet, 0.5 fs, 300 K Maxwell-Boltzmann
start, {dtype}) with this model through `zoo.ase.ZooCalculator`: total-energy change
{change:.2f} meV over the run, fluctuation (std) {fluct:.2f} meV, linear drift
{drift:.3f} meV/atom/ps; wall time {wall:.0f} s on this CPU.
Reproduce: `python examples/md_aspirin.py {name} --dtype {dtype}`.

"""




FINETUNE_RESULTS = ROOT / "benchmarks" / "results" / "finetune_ethanol.json"
FINETUNE_PLOT = "finetune_ethanol.png"


def finetune_section(results: dict) -> str:
    """The aspirin -> ethanol fine-tuning comparison, from training/finetune_ethanol.py."""
    rows = sorted(results["results"], key=lambda r: (r["n_train"], r["setting"]))
    table = "\n".join(
        f"| {r['n_train']} | {r['epochs']} | {r['setting']} | {r['energy_mae']:.2f} "
        f"| {r['forces_mae']:.2f} |" for r in rows
    )
    return f"""## Fine-tuning from aspirin with relaxation re-enabled

Starting from the published `equiformer-md17-aspirin` (`zoo.load(name, relaxed=True)` in spirit:
fresh CR branches, MLP form, lambda 0.01, triangle schedule, projected at the end) vs fine-tuning
equivariant throughout vs training from scratch, with the same epochs for every setting of a
size, evaluated on the 1000 ethanol test frames.

| ethanol frames | epochs | setting | test energy MAE (meV) | test force MAE (meV/Å) |
|---|---|---|---|---|
{table}

![test force MAE against training frames]({FINETUNE_PLOT})

Reproduce: `{results['command']}`.

"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("molecule")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--output", type=Path, default=ROOT / "model_cards")
    parser.add_argument("--md-steps", type=int, default=2000, help="0.5 fs steps (2000 = 1 ps)")
    args = parser.parse_args()
    plain = f"equiformer-md17-{args.molecule}"
    runs = sorted(p for p in args.runs.glob(f"{plain}.*") if (p / "export").is_dir())
    summary = publish_family(plain, runs, args.output)
    print(json.dumps(summary, indent=2))
    best = args.output / summary["best"]  # what the plain name (an alias) loads

    if args.molecule == "aspirin":
        md_json = best / ".md.json"
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "md_aspirin.py"), str(best),
             "--dtype", "float64", "--steps", str(args.md_steps), "--output", str(md_json)],
            check=True,
        )
        md = json.loads(md_json.read_text())
        md_json.unlink()
        section = MD_SECTION.format(
            duration=md["duration_ps"], dtype=md["dtype"], change=md["total_energy_change_mev"],
            fluct=md["total_energy_fluctuation_mev"], drift=md["drift_mev_per_atom_per_ps"],
            wall=md["wall_time_s"], name=plain,
        )
        card_path = best / "README.md"
        card = card_path.read_text()
        marker = "## Training"
        card_path.write_text(card.replace(marker, section + marker, 1))

    if args.molecule == "ethanol" and FINETUNE_RESULTS.exists():
        import shutil

        shutil.copy(FINETUNE_RESULTS.with_suffix(".png"), best / FINETUNE_PLOT)
        card_path = best / "README.md"
        card = card_path.read_text()
        section = finetune_section(json.loads(FINETUNE_RESULTS.read_text()))
        card_path.write_text(card.replace("## Training", section + "## Training", 1))

    # The cards of the best variant changed above: record every variant again (new checksums),
    # with the dataset as the rMD17 entries name it.
    for name in summary["variants"]:
        config = json.loads((args.output / name / "config.json").read_text())
        entry = record_model(
            args.output / name,
            dataset=f"rMD17 {args.molecule}, {config['data']['n_train']} training frames",
        )
        print(f"recorded {entry.name} in {args.output / 'index.json'}")


if __name__ == "__main__":
    main()
