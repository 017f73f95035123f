"""rMD17 only: download the full revised MD17 archive and convert it to extended XYZ.

The download helpers every dataset shares (digests, mirrors, atomic copies) are in
:mod:`zoo.data.fetch`.

The archive ``rmd17.tar.bz2`` (1,066,301,513 bytes, CC0) is published on figshare, doi
10.6084/m9.figshare.12672038 (v3, file id 23950376), and mirrored on the Materials Cloud
Archive. The authors publish no checksum next to the file; the constants below come from public
code that downloads it:

* sha256 ``cddeea2ec2c4b22a9de16a9a65a3eeedac5b29da9c99c20bbff0153912bf922b``, md5
  ``cb1a927628d96f2e966025da4fb63d18`` and the size were recorded by a public dataset recipe
  that downloaded and verified the complete figshare v3 archive.
* The sha256 prefix ``cddeea2ec2c4`` (12 hex digits) is published independently by load-atoms
  (``jla-gardner/load-atoms``, ``src/load_atoms/database/importers/rmd17.py``).
* The same md5 is pinned by other public rMD17 loaders, for both the figshare URL and the
  Materials Cloud mirror (so the mirror serves the same bytes).

Size, sha256 and md5 are all verified by default (each can be skipped by passing ``None``).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from ase.data import chemical_symbols
from ase.units import kcal, mol

from zoo.data.cache import atomic_writer
from zoo.data.fetch import (
    DownloadError,
    copy_atomically,
    fetch_first,
    file_digests,
    verify_digests,
)
from zoo.data.paths import data_root
from zoo.data.rmd17 import MOLECULES

__all__ = [
    "DownloadError",
    "KCAL_PER_MOL_IN_EV",
    "RMD17_MD5",
    "RMD17_SHA256",
    "RMD17_SIZE",
    "RMD17_URL",
    "RMD17_URLS",
    "download_rmd17",
]

RMD17_URL = "https://figshare.com/ndownloader/files/23950376"
# Same bytes (same md5) on the Materials Cloud Archive; tried when figshare fails.
RMD17_MIRROR_URL = (
    "https://archive.materialscloud.org/records/pfffs-fff86/files/rmd17.tar.bz2?download=1"
)
RMD17_URLS: tuple[str, ...] = (RMD17_URL, RMD17_MIRROR_URL)
RMD17_SHA256 = "cddeea2ec2c4b22a9de16a9a65a3eeedac5b29da9c99c20bbff0153912bf922b"
RMD17_MD5 = "cb1a927628d96f2e966025da4fb63d18"
RMD17_SIZE = 1_066_301_513
ARCHIVE_NAME = "rmd17.tar.bz2"

KCAL_PER_MOL_IN_EV = kcal / mol
"""1 kcal/mol in eV (about 0.0433641), the unit of energies in the rMD17 npz files."""


def _check_molecules(molecules: Iterable[str] | None) -> list[str]:
    if molecules is None:
        return list(MOLECULES)
    if isinstance(molecules, str):
        molecules = [molecules]
    chosen = list(dict.fromkeys(molecules))
    unknown = [m for m in chosen if m not in MOLECULES]
    if unknown:
        raise ValueError(f"unknown rMD17 molecule(s) {unknown}; expected some of {MOLECULES}")
    return chosen


def _safe_member_path(member: tarfile.TarInfo, root: Path) -> Path:
    """Return where a member may be written, refusing anything that could escape ``root``."""
    name = member.name
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or name.startswith(("/", "\\")) or ":" in pure.parts[0]:
        raise DownloadError(f"refusing archive member with an absolute path: {name!r}")
    if ".." in pure.parts or "\\" in name:
        raise DownloadError(f"refusing archive member that escapes the target folder: {name!r}")
    if not (member.isfile() or member.isdir()):
        raise DownloadError(f"refusing archive member that is not a plain file or folder: {name!r}")
    path = (root / Path(*pure.parts)).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DownloadError(f"refusing archive member outside the target folder: {name!r}")
    return path


def _extract(archive: Path, root: Path, molecules: Sequence[str]) -> None:
    """Extract the npz files of ``molecules`` and the small side files (splits, readme).

    Every member is checked before anything is written for it; file contents are copied by
    hand (never ``extractall``) so that links, devices and odd modes cannot be created.
    """
    wanted = {f"rmd17_{m}.npz" for m in molecules}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            path = _safe_member_path(member, root)
            if member.isdir():
                continue
            pure = PurePosixPath(member.name)
            if pure.suffix == ".npz" and pure.name not in wanted:
                continue  # other molecules: ~100 MB each, only extracted when asked for
            src = tar.extractfile(member)
            if src is None:
                raise DownloadError(f"cannot read archive member {member.name!r}")
            with src:
                copy_atomically(src, path)


def _write_extxyz(npz_path: Path, dest: Path) -> None:
    """Convert one rMD17 npz (kcal/mol, kcal/mol/Å) into extended XYZ in eV and eV/Å."""
    with np.load(npz_path, allow_pickle=False) as npz:
        z = np.asarray(npz["nuclear_charges"], dtype=np.int64).reshape(-1)
        coords = np.asarray(npz["coords"], dtype=np.float64)
        energies = np.asarray(npz["energies"], dtype=np.float64).reshape(-1) * KCAL_PER_MOL_IN_EV
        forces = np.asarray(npz["forces"], dtype=np.float64) * KCAL_PER_MOL_IN_EV
        old = npz["old_indices"].reshape(-1) if "old_indices" in npz.files else None
    n_frames, n_atoms = len(energies), len(z)
    if coords.shape != (n_frames, n_atoms, 3) or forces.shape != coords.shape:
        raise DownloadError(
            f"{npz_path}: inconsistent shapes: z {z.shape}, coords {coords.shape}, "
            f"energies {energies.shape}, forces {forces.shape}"
        )
    if np.any((z < 1) | (z >= len(chemical_symbols))):
        raise DownloadError(f"{npz_path}: invalid nuclear charges {z.tolist()}")
    if not all(np.isfinite(a).all() for a in (coords, energies, forces)):
        raise DownloadError(f"{npz_path}: non-finite coordinates, energies or forces")

    # One %-format per frame instead of per value: 100k frames convert in seconds.
    atom_fmt = "".join(f"{chemical_symbols[int(n)]:<2s}" + " %15.10f" * 6 + "\n" for n in z)
    header = 'Properties=species:S:1:pos:R:3:forces:R:3 energy={!r}{} pbc="F F F"\n'
    block = np.concatenate([coords, forces], axis=2).reshape(n_frames, -1)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(dest, "w", encoding="ascii") as out:
        for i in range(n_frames):
            extra = f" old_index={int(old[i])}" if old is not None else ""
            out.write(f"{n_atoms}\n")
            out.write(header.format(float(energies[i]), extra))
            out.write(atom_fmt % tuple(block[i]))


def download_rmd17(
    root: str | os.PathLike[str] | None = None,
    molecules: Iterable[str] | None = None,
    *,
    url: str | Sequence[str] = RMD17_URLS,
    expected_sha256: str | None = RMD17_SHA256,
    expected_md5: str | None = RMD17_MD5,
    expected_size: int | None = RMD17_SIZE,
    force: bool = False,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download the full rMD17 archive and write ``<root>/rmd17/<molecule>/all.xyz``.

    The archive is streamed to a temporary file in ``<root>/rmd17/`` (with a progress bar),
    verified, and only then renamed to ``<root>/rmd17/rmd17.tar.bz2``, so an interrupted,
    truncated or corrupted download never leaves a file that looks valid. Members are checked
    before extraction (absolute paths, ``..``, links and devices are refused). Each molecule's
    ``rmd17/npz_data/rmd17_<molecule>.npz`` (``nuclear_charges``, ``coords`` in Å, ``energies``
    in kcal/mol, ``forces`` in kcal/mol/Å) is converted to extended XYZ in eV and eV/Å
    (1 kcal/mol = ``ase.units.kcal / ase.units.mol`` eV, about 0.0433641 eV), keeping the
    original MD17 frame index as ``old_index``. The archive's ``rmd17/splits/`` (the authors'
    index files) and readme are extracted alongside.

    The ``train.xyz``/``test.xyz`` files of the project's shared data are curated subsets of
    these 100,000-frame trajectories (1,000 to 1,800 frames each, in the same atom order);
    :func:`zoo.data.load_rmd17` uses them when present and falls back to ``all.xyz``.

    Parameters
    ----------
    root
        Data root; defaults to :func:`zoo.data.data_root`. Output goes to ``<root>/rmd17/``.
    molecules
        Molecules to convert (default: all of :data:`zoo.data.MOLECULES`).
    url
        Download URL, or several tried in turn (default: figshare, then Materials Cloud).
    expected_sha256, expected_md5, expected_size
        Verification of the archive; ``None`` skips that check. The defaults are those of the
        published archive (see the module docstring for where they come from).
    force
        Re-download and re-convert even when the outputs exist.
    progress
        Show a tqdm progress bar while downloading.
    timeout
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        ``<root>/rmd17``.

    Raises
    ------
    DownloadError
        When no URL gives a verified archive, or the archive holds unsafe or missing members.
    ValueError
        For an unknown molecule.
    """
    chosen = _check_molecules(molecules)
    root_path = Path(root).expanduser() if root is not None else data_root()
    dest = root_path / "rmd17"
    outputs = {m: dest / m / "all.xyz" for m in chosen}
    if not force and all(p.exists() for p in outputs.values()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)

    archive = dest / ARCHIVE_NAME
    checks = {
        "expected_sha256": expected_sha256,
        "expected_md5": expected_md5,
        "expected_size": expected_size,
    }
    if archive.exists() and not force:
        try:
            verify_digests(*file_digests(archive), **checks)  # type: ignore[arg-type]
        except DownloadError:
            archive.unlink()  # stale or corrupt leftover from elsewhere: fetch it again
    if force or not archive.exists():
        urls = [url] if isinstance(url, str) else list(url)
        fetch_first(urls, archive, what="the rMD17 archive", progress=progress,
                    timeout=timeout, **checks)

    _extract(archive, root_path, chosen)
    for molecule, out in outputs.items():
        npz = dest / "npz_data" / f"rmd17_{molecule}.npz"
        if not npz.exists():
            raise DownloadError(f"the archive {archive} has no member rmd17/npz_data/{npz.name}")
        _write_extxyz(npz, out)
    return dest
