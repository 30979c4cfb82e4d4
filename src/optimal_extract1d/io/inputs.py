"""The step input: open a file name or check a model, with errors that name the problem.

A file is checked against its own FITS headers before stdatamodels reads it
(a truncated file otherwise fails late, deep in numpy), then must be a
spectral slit model holding at least one slit.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from astropy.io import fits
from stdatamodels.jwst import datamodels

from ..errors import InputError
from .slits import SLIT_TYPES, iter_slits

__all__ = ["check_exists", "input_label", "open_input"]

_FITS_BLOCK = 2880  # bytes; a FITS file is a whole number of blocks


def open_input(input_data: Any) -> Any:
    """Open a file name or check a model; raise `.InputError` naming the problem.

    Parameters
    ----------
    input_data : str, os.PathLike or datamodel
        The step input.

    Returns
    -------
    datamodel
        ImageModel, SlitModel, MultiSlitModel or ModelContainer.

    Raises
    ------
    InputError
        If the file does not exist, is truncated, cannot be read as a JWST
        datamodel or holds no slit data.
    """
    model = input_data
    if isinstance(input_data, (str, os.PathLike)):
        path = os.fspath(input_data)
        check_exists(path)
        _check_fits_size(path)
        try:
            model = (
                _open_association(path) if path.lower().endswith(".json") else datamodels.open(path)
            )
        except Exception as err:  # any reader failure means "not a readable datamodel"
            msg = f"cannot read {path!r} as a JWST datamodel: {type(err).__name__}: {err}"
            raise InputError(msg) from err
    label = input_label(model)
    if not _is_supported(model):
        msg = (
            f"{label}: a {type(model).__name__} is not a spectral slit model; "
            "expected an s2d ImageModel, SlitModel, MultiSlitModel or a ModelContainer of them"
        )
        raise InputError(msg)
    if not any(True for _ in iter_slits(model)):
        msg = f"{label}: the {type(model).__name__} contains no slits"
        raise InputError(msg)
    return model


def _open_association(path: str) -> Any:
    """The science members of an association, as a ModelContainer."""
    from jwst.datamodels import ModelContainer

    return ModelContainer(path)


def check_exists(path: str) -> None:
    """Raise `.InputError` naming ``path`` if no such file exists.

    Parameters
    ----------
    path : str
        The input file name.

    Raises
    ------
    InputError
        If the file does not exist.
    """
    if not os.path.exists(path):
        msg = f"input file {path!r} does not exist"
        raise InputError(msg)


def input_label(model: Any) -> str:
    """The input's file name(s) for messages, else its type name."""
    if isinstance(model, (list, tuple)) or type(model).__name__ in (
        "ModelContainer",
        "SourceModelContainer",
    ):
        return ", ".join(input_label(m) for m in model) or type(model).__name__
    return getattr(getattr(model, "meta", None), "filename", None) or type(model).__name__


def _check_fits_size(path: str) -> None:
    """Raise `.InputError` if a FITS file is shorter than its headers say (truncated)."""
    with open(path, "rb") as f:
        if f.read(6) != b"SIMPLE":
            return  # not FITS: datamodels.open decides
    size = os.path.getsize(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, lazy_load_hdus=False, memmap=False) as hdul:
                spans = [h.fileinfo() for h in hdul]
                expected = max(i["datLoc"] + i["datSpan"] for i in spans)
        except Exception as err:  # any reader failure: the FITS structure is broken
            msg = f"cannot read {path!r} as FITS: {type(err).__name__}: {err}"
            raise InputError(msg) from err
    if size < expected:
        problem = f"{size} bytes, but its FITS headers describe {expected}"
    elif size % _FITS_BLOCK:
        problem = f"{size} bytes is not a whole number of {_FITS_BLOCK}-byte FITS blocks"
    else:
        return
    hint = f" ({str(caught[0].message).splitlines()[0]})" if caught else ""
    msg = f"{path!r} is truncated or corrupted: {problem}{hint}"
    raise InputError(msg)


def _is_supported(model: Any) -> bool:
    if isinstance(model, datamodels.MultiSlitModel) or isinstance(model, SLIT_TYPES):
        return getattr(model, "data", None) is not None if isinstance(model, SLIT_TYPES) else True
    if isinstance(model, (list, tuple)) or type(model).__name__ in (
        "ModelContainer",
        "SourceModelContainer",
    ):
        return all(_is_supported(m) for m in model)
    return False
