"""The flux's bound when the PSF's wings are learnt from the slit, in the tabulated cells.

Run by hand (about a minute)::

    python benchmarks/halo_bound.py
    python benchmarks/halo_bound.py --output benchmarks/results/halo_bound.md
    python benchmarks/halo_bound.py --fitted-sky smooth0,smooth3,bins24

The defaults benchmark (``benchmarks/defaults.py``) scores every method
against an oracle that knows the true profile. In its tabulated-PSF cells no
method given only the data can: the wings' share of the flux, its change
with the wavelength and the wings' law must be learnt from the slit, and the
flux of every column moves with them. This script computes, on the same
slits (the same seed, S/N levels and PSFs as ``defaults.py``), the
Cramér–Rao bound of each column's flux when those PSF parameters are unknown
too, over the bound with them known (the oracle's variance, the quantity
``defaults.py`` divides by):

* *share*: the wings' flux share, one value for the slit;
* *share + slope*: and its linear change with the wavelength;
* *share + slope + law*: and a continuous wing law, a share ``tail`` of
  the wings falling as x**-2 and the rest as x**-3 (the halo family's
  ``tail``, `optimal_extract1d.psf.halo.CoreHalo1D`).

The truth is a Gaussian core plus wings of half width 1.5 core FWHM (a
Moffat of index 1.5, as ``scripts/make_example_psf.py``, or a Lorentzian),
stretched to the benchmark's widths (``defaults.tabulated_psf``). The
derivatives of every column's profile (and the nod copies') with respect to
these parameters are finite differences of the simulated profiles; every
column's own flux and nod copies' fluxes are free; the PSF parameters, and
where the scene has a sky the oracle's (a constant and a slope across the
slit, smooth along the dispersion: ``defaults.oracle``), are shared by all
columns: the bound's variance of a column's flux is the oracle's plus
``u I^-1 u^T``, ``I`` the PSF parameters' information left after every
column's own parameters and the sky, ``u`` how the column's flux estimate
leans on them (the oracle's own variance has the sky's share of that term).
The trace and the widths are taken as known (both are fitted as a few
smooth terms over the slit and cost far less). The correlated-noise cell is
left out: its oracle weighs with a variance that is not the noise's.

A tail on its bound (a pure law) makes the last column a local figure: it
is the price of a continuous law, which the defaults do not pay where a
pure law describes the slit (they choose between the two laws, then weigh
a tail at the focused cost).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import defaults as D  # noqa: E402
from numpy.polynomial.legendre import legvander  # noqa: E402

from optimal_extract1d.core.horne import polynomial_basis  # noqa: E402

#: Finite-difference steps of the PSF parameters (share, its change over the band, tail).
STEP = 1e-3
PARAMETER_SETS = {
    "share": ("share",),
    "share + slope": ("share", "slope"),
    "share + slope + law": ("share", "slope", "tail"),
}
SNR_LEVELS = (10.0, 30.0, 100.0)
#: The wings' law of each tabulated PSF of the defaults benchmark: the share ``tail`` in x**-2.
LAW = {"tabulated": 0.0, "tabulated-x2": 1.0}


def wing_psf(directory: Path, tail: float, *, share=0.0, slope=0.0, tag: str):
    """The benchmark's tabulated PSF with its wings moved (`defaults.wing_psf`), as a table.

    ``share`` is added to the wings' share at every wavelength, ``slope`` x
    (wavelength - 0.6) / 4.7 too; ``tail`` of the wings fall as x**-2, the
    rest as x**-3.
    """
    path = D.wing_psf(directory, tail=tail, share=share, slope=slope, name=tag)
    return D.tabulated_psf(directory, path)[0]


def _cell(scene, snr, n_slits, seed, psf):
    level = D.SNR_LEVELS.index(snr)
    return D.simulate_cell(scene, snr, n_slits, rng=np.random.default_rng([seed, level]), psf=psf)


def _signal_derivative(sim, moved, step, scales) -> np.ndarray:
    """d(expected image)/d(parameter) per unit flux of each column, shape (n_cross, n_disp)."""
    d = (moved.true_profile - sim.true_profile) / step
    for scale, mine, theirs in zip(scales, sim.nod_profiles, moved.nod_profiles, strict=True):
        d = d - scale * (theirs - mine) / step
    return d


def _sky(sim, form: str) -> np.ndarray:
    """A sky fitted with the fluxes, ``(n_disp, n_cross, m)``.

    A constant and a slope across the slit, times Legendre polynomials up to
    degree ``d`` along the dispersion (``form = "smooth<d>"``; the oracle's,
    `ORACLE_SKY`, as `defaults.oracle` fits it) or an indicator of each of ``n``
    equal bins (``"bins<n>"``, a sky free in every bin, as the bins learn the
    halo's share).
    """
    n_cross, n_disp = sim.data.shape
    across = polynomial_basis(n_cross, 1)  # (n_cross, 2)
    if form.startswith("smooth"):
        along = legvander(np.linspace(-1.0, 1.0, n_disp), int(form[len("smooth") :]))
    elif form.startswith("bins"):
        n_bins = int(form[len("bins") :])
        along = np.eye(n_bins)[np.minimum(np.arange(n_disp) * n_bins // n_disp, n_bins - 1)]
    else:
        raise ValueError(f"unknown sky form {form!r}: smooth<degree> or bins<number>")
    return np.einsum("ik,jl->jikl", across, along).reshape(n_disp, n_cross, -1)


#: The oracle's sky (`defaults.oracle`), as a `_sky` form.
ORACLE_SKY = f"smooth{D.ORACLE_SKY_DEGREE}"


def _columns(sim):
    """Every column's fluxes (source and nod copies) as the oracle fits them: the design
    ``(n_disp, n_cross, k)``, the pixels' weights and every column's inverse information."""
    good = np.isfinite(sim.data) & (sim.true_variance > 0)
    weight = np.where(good, 1.0 / np.where(good, sim.true_variance, 1.0), 0.0).T
    parts = [sim.true_profile.T[..., None]] + [p.T[..., None] for p in sim.nod_profiles]
    design = np.concatenate(parts, axis=2)
    return design, weight, np.linalg.inv(np.einsum("jik,ji,jil->jkl", design, weight, design))


def _moved_cells(scene, snr, cell, moves, *, n_slits, seed, directory) -> dict:
    """The cell drawn again with each PSF parameter moved: name -> (cell, step).

    ``moves``: name -> (`wing_psf` arguments, step). The same slits are drawn
    (checked), and the unmoved file gives the truth's profiles (checked).
    """
    tail = LAW[scene.psf]
    same = _cell(scene, snr, n_slits, seed, wing_psf(directory, tag="same", tail=tail))
    for a, b in zip(cell.sims, same.sims, strict=True):  # the moves start from the truth
        assert np.allclose(a.true_profile, b.true_profile, rtol=0, atol=1e-9)
    moved = {}
    for name, (kwargs, step) in moves.items():
        other = _cell(scene, snr, n_slits, seed, wing_psf(directory, tag=name, **kwargs))
        for a, b in zip(cell.sims, other.sims, strict=True):
            assert np.array_equal(a.center, b.center), "the moved cell drew other slits"
        moved[name] = (other, step)
    return moved


def _psf_columns(sim, i, moved, names, scales) -> np.ndarray:
    """d(image)/d(PSF parameter) of slit ``i`` for each of ``names``, ``(n_disp, n_cross, p)``."""
    return np.stack(
        [
            _signal_derivative(sim, moved[n][0].sims[i], moved[n][1], scales).T * sim.flux[:, None]
            for n in names
        ],
        axis=2,
    )  # (n_disp, n_cross, p)


def _with_global(a_inv, design, weight, g) -> np.ndarray:
    """Every column's flux variance with the parameters ``g`` (shared by all columns) free too."""
    if g.shape[2] == 0:
        return a_inv[:, 0, 0]
    b = np.einsum("jik,ji,jil->jkl", design, weight, g)
    c = np.einsum("jik,ji,jil->jkl", g, weight, g)
    info = np.sum(c - np.swapaxes(b, 1, 2) @ a_inv @ b, axis=0)
    lean = (a_inv @ b)[:, 0, :]  # (n_disp, p)
    return a_inv[:, 0, 0] + np.einsum("jp,pq,jq->j", lean, np.linalg.inv(info), lean)


def bound_ratios(scene, snr, *, n_slits, seed, directory) -> dict[str, float]:
    """Sum over the slits' columns of the bound's flux variance over the oracle's, per set."""
    tail = LAW[scene.psf]
    base_psf = D.tabulated_psfs(directory)[scene.psf][0]
    cell = _cell(scene, snr, n_slits, seed, base_psf)
    toward = -STEP if tail == 1.0 else STEP  # the tail's step stays inside [0, 1]
    moves = {
        "share": (dict(tail=tail, share=STEP), STEP),
        "slope": (dict(tail=tail, slope=STEP), STEP),
        "tail": (dict(tail=tail + toward), toward),
    }
    moved = _moved_cells(scene, snr, cell, moves, n_slits=n_slits, seed=seed, directory=directory)
    scales = np.asarray(D.THREE_SHUTTER["nod_scale"] if scene.nods else (), float)
    sums = dict.fromkeys(PARAMETER_SETS, 0.0)
    oracle_sum = 0.0
    for i, sim in enumerate(cell.sims):
        design, weight, a_inv = _columns(sim)
        sky = _sky(sim, ORACLE_SKY) if scene.sky else np.zeros((*design.shape[:2], 0))
        oracle_sum += float(np.sum(_with_global(a_inv, design, weight, sky)))
        for label, names in PARAMETER_SETS.items():
            g = np.concatenate([sky, _psf_columns(sim, i, moved, names, scales)], axis=2)
            sums[label] += float(np.sum(_with_global(a_inv, design, weight, g)))
    return {label: total / oracle_sum for label, total in sums.items()}


def fitted_sky_ratios(scene, snr, forms, *, n_slits, seed, directory) -> dict[str, float]:
    """The bound with the share and its slope unknown and a sky of each form (`_sky`)
    fitted, over the oracle's without it: what keeping a sky the slit may not have costs."""
    tail = LAW[scene.psf]
    cell = _cell(scene, snr, n_slits, seed, D.tabulated_psfs(directory)[scene.psf][0])
    moves = {
        "share": (dict(tail=tail, share=STEP), STEP),
        "slope": (dict(tail=tail, slope=STEP), STEP),
    }
    moved = _moved_cells(scene, snr, cell, moves, n_slits=n_slits, seed=seed, directory=directory)
    scales = np.asarray(D.THREE_SHUTTER["nod_scale"] if scene.nods else (), float)
    totals, oracle_sum = dict.fromkeys(forms, 0.0), 0.0
    for i, sim in enumerate(cell.sims):
        design, weight, a_inv = _columns(sim)
        oracle_sum += float(np.sum(a_inv[:, 0, 0]))
        g = _psf_columns(sim, i, moved, ("share", "slope"), scales)
        for form in forms:
            both = np.concatenate([_sky(sim, form), g], axis=2)
            totals[form] += float(np.sum(_with_global(a_inv, design, weight, both)))
    return {form: total / oracle_sum for form, total in totals.items()}


def tabulated_scenes():
    """The defaults benchmark's tabulated-PSF scenes with independent noise."""
    return [s for s in D.SCENES if s.psf in LAW and not s.correlated]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-slits", type=int, default=30, help="slits per cell")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--fitted-sky",
        metavar="FORMS",
        help="instead: the cell with no sky, a sky of these forms fitted beside the share "
        "and its slope (comma-separated: smooth<degree>, bins<number>; e.g. smooth0,bins24)",
    )
    args = parser.parse_args(argv)
    if args.fitted_sky:
        forms = args.fitted_sky.split(",")
        scene = next(s for s in tabulated_scenes() if not s.sky and not s.nods)
        print(f"| scene | S/N | {' | '.join(f'bound/oracle, sky {f} fitted' for f in forms)} |")
        print("|---|---|" + "---|" * len(forms))
        with tempfile.TemporaryDirectory() as tmp:
            for snr in SNR_LEVELS:
                ratios = fitted_sky_ratios(
                    scene, snr, forms, n_slits=args.n_slits, seed=args.seed, directory=Path(tmp)
                )
                cells = " | ".join(f"{ratios[f]:.3f}" for f in forms)
                print(f"| {scene.label} | {snr:g} | {cells} |", flush=True)
        return 0
    lines = [
        "| scene | S/N | "
        + " | ".join(f"bound/oracle, {k} unknown" for k in PARAMETER_SETS)
        + " |",
        "|---|---|" + "---|" * len(PARAMETER_SETS),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for scene in tabulated_scenes():
            for snr in SNR_LEVELS:
                ratios = bound_ratios(
                    scene, snr, n_slits=args.n_slits, seed=args.seed, directory=Path(tmp)
                )
                cells = " | ".join(f"{ratios[k]:.3f}" for k in PARAMETER_SETS)
                lines.append(f"| {scene.label} | {snr:g} | {cells} |")
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print()
    print(table)
    if args.output:
        header = (
            "# Flux bound with the PSF's wings learnt from the slit\n\n"
            f"Command: `python benchmarks/halo_bound.py --n-slits {args.n_slits} "
            f"--seed {args.seed}`. The Cramér–Rao bound of every column's flux with the\n"
            "listed PSF parameters unknown (shared by the slit's columns), over the\n"
            "oracle's (`defaults.py`'s var/oracle denominator), summed over the cell's\n"
            "columns; see the script's docstring.\n\n"
        )
        args.output.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
