import warnings

import numpy as np
import pytest
from stdatamodels.jwst import datamodels

from optimal_extract1d.cli.main import main


def test_simulate_writes_a_readable_s2d(tmp_path, capsys):
    out = tmp_path / "cli_s2d.fits"
    assert main(["simulate", str(out), "--n-slits", "3", "--seed", "1", "--nods"]) == 0
    assert "3 slits" in capsys.readouterr().out
    with datamodels.open(out) as model:
        assert len(model.slits) == 3
        assert model.meta.exposure.type == "NRS_MSASPEC"
        assert np.nanmin(model.slits[0].data) < 0  # negative nod copies present


def test_demo_recovers_the_injected_flux(tmp_path, capsys):
    assert main(["demo", "--outdir", str(tmp_path), "--n-slits", "4", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "demo_x1d.fits").exists() and (tmp_path / "demo_summary.png").exists()
    median_ratio = float(out.split("median F/F_true over 4 slits: ")[1].split(";")[0])
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    snr = np.array([float(r[1]) for r in rows])
    # The median of n values scatters 1.2533 sigma / sqrt(n): per slit over its 400
    # columns (sigma = 1 / S/N), then over the 4 slits. 5 of those.
    per_slit = 1.2533 / (snr * np.sqrt(400))
    tolerance = 5 * 1.2533 * np.sqrt(np.mean(per_slit**2)) / np.sqrt(len(snr))
    assert len(rows) == 4 and abs(median_ratio - 1) < tolerance
    specutils = pytest.importorskip("specutils")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "SRCTYPE is missing", an unrecognized unit
        spectra = specutils.SpectrumList.read(tmp_path / "demo_x1d.fits", format="JWST x1d multi")
    assert len(spectra) == 4 and all(s.flux.unit == "Jy" for s in spectra)
