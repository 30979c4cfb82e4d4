"""Build a real s2d from the CEERS 933 cutouts in ../shared (see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SHARED_DATA

NOD_FILES = sorted(SHARED_DATA.glob("jw01345062001_03101_0000?_nrs2_phot.138.1345_933.fits"))
# Redshift 4.23 emission lines seen by eye: [OIII] 5007 and H-alpha (microns).
CEERS_LINES_UM = (2.62, 3.43)

requires_ceers = pytest.mark.skipif(len(NOD_FILES) != 3, reason="../shared CEERS data absent")


def nod_subtracted_cals(outdir: Path) -> list[Path]:
    """Each nod minus the mean of the other two, as a MultiSlitModel cal file."""
    from stdatamodels.jwst import datamodels

    slits = [datamodels.SlitModel(str(f)) for f in NOD_FILES]
    paths = []
    for i, slit in enumerate(slits):
        others = [s for j, s in enumerate(slits) if j != i]
        model = datamodels.MultiSlitModel()
        model.update(slit)
        sub = slit.copy()
        sub.data = slit.data - 0.5 * (others[0].data + others[1].data)
        model.slits.append(sub)
        path = outdir / NOD_FILES[i].name.replace("_phot.138.1345_933.fits", "_cal.fits")
        model.meta.filename = path.name
        model.save(path)
        paths.append(path)
    return paths


def spec3_association(outdir: Path) -> Path:
    """A Spec3 association of the three nod-subtracted cal files; return its path."""
    from jwst.associations import asn_from_list
    from jwst.associations.lib.rules_level3_base import DMS_Level3_Base

    cals = nod_subtracted_cals(outdir)
    asn = asn_from_list.asn_from_list(
        [p.name for p in cals],
        rule=DMS_Level3_Base,
        product_name="jw01345-o062_{source_id}_nirspec_clear-prism",
    )
    _, serialized = asn.dump(format="json")
    path = outdir / "ceers933_spec3_asn.json"
    path.write_text(serialized)
    return path


def build_ceers_s2d(outdir: Path) -> Path:
    """Run jwst's ResampleSpecStep on the nod-subtracted exposures; return the s2d path."""
    from jwst.datamodels import ModelContainer
    from jwst.resample import ResampleSpecStep
    from stdatamodels.jwst import datamodels

    old = os.environ.get("STPIPE_DISABLE_CRDS_STEPPARS")
    os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = "True"
    try:
        cals = [datamodels.open(str(p)) for p in nod_subtracted_cals(outdir)]
        result = ResampleSpecStep.call(ModelContainer(cals))
    finally:
        if old is None:
            os.environ.pop("STPIPE_DISABLE_CRDS_STEPPARS")
        else:
            os.environ["STPIPE_DISABLE_CRDS_STEPPARS"] = old
    path = outdir / "ceers933_s2d.fits"
    result.save(path)
    return path
