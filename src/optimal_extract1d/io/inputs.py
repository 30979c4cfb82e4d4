"""The step input: open a file name or check a model, with errors that name the problem.

A file that stdatamodels reads as truncated (an HDU's data running past the
end of the file, or a size that is not a whole number of FITS blocks) is
rejected by name (it otherwise fails late, deep in numpy); the model must
then be a spectral slit model holding at least one slit.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

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
        model = _open_association(path) if path.lower().endswith(".json") else _open_file(path)
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


def _open_file(path: str) -> Any:
    """``datamodels.open(path)``; raise `.InputError` if it fails or the file is truncated.

    A FITS file shorter than its headers say is caught from the reader's own
    pass over them: astropy warns that the file "may have been truncated"
    when an HDU's data run past its end (stdatamodels reads every header), and
    a file cut inside a header is not a whole number of FITS blocks. A
    separate pass over all the headers first (``fits.open``) cost 1.3-3 ms
    a slit on a 100-slit file. The reader's other warnings are passed on,
    each once.
    """
    with open(path, "rb") as f:
        is_fits = f.read(6) == b"SIMPLE"
    size = os.path.getsize(path)
    if is_fits and size % _FITS_BLOCK:
        problem = f"{size} bytes is not a whole number of {_FITS_BLOCK}-byte FITS blocks"
        raise InputError(f"{path!r} is truncated or corrupted: {problem}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model, failure = datamodels.open(path), None
        except Exception as err:  # any reader failure means "not a readable datamodel"
            model, failure = None, err
    truncated = _truncation(caught)
    if truncated is not None:
        if model is not None:
            model.close()
        raise InputError(f"{path!r} is truncated or corrupted: {truncated}") from failure
    _pass_on(caught)
    if failure is not None:
        msg = f"cannot read {path!r} as a JWST datamodel: {type(failure).__name__}: {failure}"
        raise InputError(msg) from failure
    return model


def _truncation(caught: list) -> str | None:
    """The reader's warning that the file is truncated (its first line), if it gave one."""
    for warning in caught:
        text = str(warning.message)
        if "truncated" in text.lower():
            return text.splitlines()[0]
    return None


def _pass_on(caught: list) -> None:
    """Emit the warnings recorded while opening the file again, each (message, place) once."""
    seen = set()
    for w in caught:
        key = (w.category, str(w.message), w.filename, w.lineno)
        if key not in seen:
            seen.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _is_supported(model: Any) -> bool:
    if isinstance(model, datamodels.MultiSlitModel) or isinstance(model, SLIT_TYPES):
        return getattr(model, "data", None) is not None if isinstance(model, SLIT_TYPES) else True
    if isinstance(model, (list, tuple)) or type(model).__name__ in (
        "ModelContainer",
        "SourceModelContainer",
    ):
        return all(_is_supported(m) for m in model)
    return False
