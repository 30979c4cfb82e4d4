import pytest

from optimal_extract1d.errors import ParameterError
from optimal_extract1d.params import ExtractParams, check_region, check_slice


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"extraction_region": (5, 1, 2, 3)}, "empty or negative"),
        ({"extraction_region": (1, 2, 3)}, "needs 4 values"),
        ({"slice_width": 0}, "slice_width must be >= 1"),
        ({"bkg_order": -2}, "bkg_order must be 'auto' or >= -1"),
        ({"kernel": "boxcar"}, "kernel must be one of"),
        ({"kernel": "psf"}, "kernel='psf' needs psf_file"),
        ({"variance_source": "magic"}, "variance_source must be one of"),
        ({"drizzle_scale": 0.0}, "drizzle_scale must be > 0"),
    ],
)
def test_invalid_values_are_rejected_with_the_value_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        ExtractParams(**kwargs)


def test_region_outside_the_slit_is_rejected():
    params = ExtractParams(extraction_region=(0, 0, 400, 10))
    with pytest.raises(ParameterError, match="outside slit 'S1' of 400 x 31 pixels"):
        check_region(params, (31, 400), "S1")
    check_region(ExtractParams(extraction_region=(0, 0, 399, 30)), (31, 400), "S1")


def test_slice_is_checked_against_the_dispersion_range_of_the_region():
    region = (0, 100, 40, 119)  # dispersion along y: rows 100..119
    with pytest.raises(ParameterError, match="slice_width 30 is wider than slit 'LRS'.*20 disp"):
        check_slice(ExtractParams(extraction_region=region), (400, 41), "LRS", disp_axis=2)
    check_slice(
        ExtractParams(slice_width=20, extraction_region=region), (400, 41), "LRS", disp_axis=2
    )
    with pytest.raises(ParameterError, match="slice_column 99 is outside.*pixels 100..119"):
        params = ExtractParams(slice_width=5, slice_column=99, extraction_region=region)
        check_slice(params, (400, 41), "LRS", disp_axis=2)
    check_slice(ExtractParams(slice_column=399), (41, 400), "MOS", disp_axis=1)
