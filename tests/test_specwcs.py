"""The x1d spectrum WCS matches jwst's create_spectral_wcs."""

import numpy as np
import pytest
from jwst.extract_1d.spec_wcs import create_spectral_wcs

from optimal_extract1d.io.specwcs import spectral_wcs


@pytest.mark.parametrize("direction", [1, -1])
def test_same_transform_and_inverse_as_jwst(direction):
    wavelength = np.linspace(0.6, 5.3, 200)[::direction] ** 1.1
    ours, theirs = spectral_wcs(150.1, 2.2, wavelength), create_spectral_wcs(150.1, 2.2, wavelength)
    pixels = np.array([0.0, 17.5, 199.0])
    np.testing.assert_allclose(ours(pixels), theirs(pixels))
    np.testing.assert_allclose(ours.invert(*ours(pixels)), pixels, atol=1e-9)
    assert ours.output_frame.axes_names == theirs.output_frame.axes_names
    assert ours.available_frames == theirs.available_frames


def test_non_monotonic_wavelengths_have_no_inverse(caplog):
    wcs = spectral_wcs(0.0, 0.0, np.array([1.0, 2.0, 1.5, 3.0]))
    assert "not strictly monotonic" in caplog.text
    with pytest.raises(NotImplementedError):
        _ = wcs.forward_transform.inverse
