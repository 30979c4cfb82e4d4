"""`OptimalExtract1dStep`: the stpipe shell around `.pipeline.extraction.extract`.

This is the only module (with `.spec3`) that knows stpipe. It never asks
CRDS for anything: parameters come from the mode defaults shipped in
``reference_files/`` (lowest layer), then any parameter file, then the
user's values.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from astropy.io import fits
from configobj.validate import Validator
from jwst.stpipe import Step
from stpipe import config_parser
from stpipe.exceptions import ValidationError

from .errors import InputError, ParameterError
from .io import calinputs, diagnostics, inputs, slits, x1d
from .io.defaults import load_mode_defaults, mode_record
from .params import CalParams, ExtractParams
from .pipeline import calpath, extraction

__all__ = ["OptimalExtract1dStep", "SpecValueError", "spec_errors_explained"]

log = logging.getLogger(__name__)


class SpecValueError(ParameterError, ValidationError):
    """A parameter value the step's spec refuses, with what the parameter accepts.

    Both a `.ParameterError` (a ValueError) and stpipe's ``ValidationError``,
    so ``strun`` prints it with the usage as it does for stpipe's own message.
    """


@contextmanager
def spec_errors_explained(explain: Callable[[Exception], str]) -> Iterator[None]:
    """Raise stpipe's ``ValidationError`` from the block again as a `SpecValueError`.

    Its message is ``explain(err)`` (`.OptimalExtract1dStep.explain_invalid`:
    what each bad value should be); a `SpecValueError` passes unchanged.
    """
    try:
        yield
    except ValidationError as err:
        if isinstance(err, SpecValueError):
            raise
        raise SpecValueError(explain(err)) from err


@contextmanager
def _long_lived_out_of_gc() -> Iterator[Callable[[], None]]:
    """Keep long-lived objects out of the cyclic garbage collector's scans for the block.

    Yields a function to call once more long-lived objects exist (the opened
    input model). A step run creates few objects but lives beside many: the
    imported packages and an opened multi-slit model (its ASDF tree, headers
    and WCS models, hundreds of thousands of objects), none of them garbage
    while the step runs. Every full collection that reading the file, the
    extraction and the x1d's tables trigger scans them all, about 0.15 s each
    for a 100-slit file: about 6 ms per slit of the step's run in all
    (benchmarks/results/speed.md). `gc.freeze` moves
    them to the permanent generation; `gc.unfreeze` returns them to the
    oldest generation after the block, so nothing is leaked. A process that
    froze objects itself (a pre-fork server) is left as it is.
    """
    if gc.get_freeze_count():
        yield lambda: None
        return
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        gc.unfreeze()


class OptimalExtract1dStep(Step):
    """Horne (1986) optimal extraction of resampled (s2d) slit spectra.

    Input: an s2d ``ImageModel``, ``SlitModel``, ``MultiSlitModel``, a
    ``ModelContainer`` of those, or a file name. Output: an x1d
    ``MultiSpecModel`` with one spectrum per slit (per source).

    Unresampled cal exposures (``*_cal.fits``, SlitModel cut-outs, an
    association or a ModelContainer of them) take the cal path
    (`.pipeline.calpath`): one spectrum per source, combined from the
    native pixels of all exposures (``input_level``).
    """

    class_alias = "optimal_extract_1d"

    spec = """
    extraction_region = int_list(min=4, max=4, default=None)  # x1, y1, x2, y2 (inclusive, slit pixels); None = whole slit
    slice_width = integer(default=30, min=1)  # columns coadded into the kernel slice
    slice_column = integer(default=None, min=0)  # center column of the slice; None = column with most signal
    kernel = option("auto", "gaussian", "moffat", "empirical", "psf", default="auto")  # PSF template; auto = Gaussian or Moffat (or the profiles of psf_file when given), chosen per slit; empirical = Horne's data-driven profile; psf = the profiles of psf_file
    psf_file = string(default=None)  # jwst SpecPsfModel file of cross-dispersion PSFs per wavelength (kernel = psf, or a candidate of kernel = auto)
    bkg_order = pass(default="auto")  # Polynomial1D background degree fitted with the PSF; -1 = none; auto = none, constant or slope, chosen per slit
    bkg_smooth_order = pass(default="auto")  # background along the dispersion: N = Legendre degree N, -1 = independent columns; auto = chosen per slit among independent columns (none where the slice chose no background) and smooth degrees 0-15
    variance_source = option("auto", "var", "wht", "err", default="auto")  # auto: VAR_* > 1/(WHT s^4) > ERR^2
    drizzle_scale = float(default=1.0, min=0)  # s in Var = 1/(WHT s^4)
    input_unit = option("auto", "MJy/sr", "MJy", "DN/s", default="auto")  # unit of the data; auto = BUNIT, or as jwst's extract_1d decides when BUNIT says DN/s after photom (MJy for NIRSpec point sources, else MJy/sr)
    fit_fwhm = pass(default="auto")  # True, False or auto: fit the kernel FWHM in bins and model FWHM(wavelength); auto = where the data show it varies
    fwhm_order = integer(default=2, min=0)  # polynomial degree of FWHM(wavelength)
    fit_trace = pass(default="auto")  # True, False or auto: fit the kernel center in bins and model center(dispersion pixel); auto = where the data show it moves
    trace_order = integer(default=2, min=0)  # polynomial degree of center(dispersion pixel)
    n_bins = integer(default=None, min=1)  # bins for the FWHM/trace fits; None = from the signal
    reject_sigma = float(default=5.0, min=0)  # outlier threshold of Horne's iteration (sigma)
    max_iter = integer(default=5, min=0)  # passes of variance re-estimation + rejection; 0 = none
    model_nods = boolean(default=True)  # fit negative nod copies of the trace with the source
    source_positions = float_list(default=None)  # cross-dispersion pixel positions of the sources; None = detect
    detect_threshold = float(default=5.0, min=0)  # S/N a further source or nod copy needs (coadded profile)
    error_scale = option("none", "residual", default="residual")  # s2d: raise errors to the residual scatter (pixel correlations included), never lower them; cal: the spectrum's scatter
    save_profile = boolean(default=False)  # save the 2-D profile of every slit (suffix profile)
    save_scene_model = boolean(default=False)  # save the model of every slit (suffix scene_model)
    save_residual_image = boolean(default=False)  # save data - model of every slit (suffix residual)
    save_plots = boolean(default=False)  # save a PNG summary of every slit (suffix plot)
    input_level = option("auto", "s2d", "cal", default="auto")  # auto: cal when the slits are unresampled (WCS with slit_frame), else s2d
    cal_background = option("auto", "nod", "subtracted", "none", default="auto")  # cal path: nod = fit the common sky of raw nods; subtracted = spec2 nod-subtracted; none = already removed
    cal_wavelengths = float_list(default=None)  # cal path: output wavelengths (microns, increasing); None = the detector columns along the trace
    save_exposure_spectra = boolean(default=False)  # cal path: also write each exposure's spectrum (<name>_exp<i>)
    """  # noqa: E501

    reference_file_types: ClassVar[list[str]] = []

    def process(self, input_data: Any):
        """Extract every slit of ``input_data``; return the x1d ``MultiSpecModel``."""
        with _long_lived_out_of_gc() as freeze:
            model = inputs.open_input(input_data)
            try:
                freeze()  # the opened model too
                result = self._extract(model)
            finally:
                if isinstance(input_data, (str, os.PathLike)):
                    model.close()
        result.meta.cal_step.extract_1d = "COMPLETE"
        return result

    def _extract(self, model: Any) -> Any:
        """The x1d of an opened input model (and the diagnostics asked for)."""
        params = ExtractParams.from_object(self)
        used = _plain(dataclasses.asdict(params))
        meta = slits.meta_source(model).meta
        record = mode_record(meta.exposure.type, meta.instrument.grating, used)
        request = diagnostics.DiagnosticsRequest.from_object(self)
        cal = CalParams.from_object(self)
        if _is_cal(model, cal):
            run = calpath.extract_cal(model, params, cal)
            record["input_level"] = "cal"
            if request.any:
                log.warning("Diagnostic files are written for s2d input only; none saved")
        else:
            run = extraction.extract(model, params, keep_slits=request.any)
        record["parameters"] = {**used, **_plain(dataclasses.asdict(cal))}
        record["skipped_slits"] = [dataclasses.asdict(s) for s in run.skipped]
        result = x1d.build_x1d(run.spectra, slits.meta_source(model), record)
        if record.get("input_level") != "cal":
            diagnostics.save(model, run, request, output_path=self.make_output_path)
        return result

    @classmethod
    def validated_parameters(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Check parameter values (strings allowed) against the spec; return them typed.

        Parameters
        ----------
        values : dict
            Parameter name -> value, e.g. ``{"bkg_order": "1"}`` from a command line.

        Returns
        -------
        dict
            The same names with values converted by the spec.

        Raises
        ------
        ParameterError
            If a name is not a parameter of the step or a value does not fit its spec.
        """
        # strings are read as a parameter file would read them ("1,2,3,4" is a list)
        text = {k: v for k, v in values.items() if isinstance(v, str)}
        parsed = config_parser.ConfigObj([f"{k} = {v}" for k, v in text.items()])
        try:
            step = cls(**{**values, **parsed})
        except ValidationError as err:
            msg = f"invalid optimal_extract_1d parameter: {cls.explain_invalid(err)}"
            raise ParameterError(msg) from err
        ExtractParams.from_object(step)  # the checks the spec cannot express ("auto" or a number)
        return {name: getattr(step, name) for name in values}

    @classmethod
    def own_parameter_names(cls) -> tuple[str, ...]:
        """Names of this step's own parameters (its spec without stpipe's ``output_dir``, ...)."""
        common = Step.load_spec_file()
        return tuple(name for name in cls.load_spec_file() if name not in common)

    @classmethod
    def run_parameters(cls, input_path: str | os.PathLike, values: dict[str, Any]) -> dict:
        """The parameters ``Step.call(input_path, **values)`` would run with.

        Built by stpipe's own layers, as a run builds them: the mode defaults
        for the file, then ``values``; nothing is extracted.

        Parameters
        ----------
        input_path : str or os.PathLike
            The input file.
        values : dict
            Parameter name -> value set by the user (strings allowed).

        Returns
        -------
        dict
            Every parameter of `own_parameter_names` -> its value.

        Raises
        ------
        InputError
            If the file does not exist.
        ParameterError
            If a name or value is not accepted.
        """
        user = cls.validated_parameters(values)
        config, _ = cls.build_config(os.fspath(input_path), **user)
        step = cls.from_config_section(config)
        read = dataclasses.asdict(ExtractParams.from_object(step))  # as the run reads them
        return {name: read.get(name, getattr(step, name)) for name in cls.own_parameter_names()}

    @classmethod
    def input_mode_keys(cls, input_path: str | os.PathLike) -> dict[str, Any]:
        """``meta.exposure.type`` and ``meta.instrument.grating`` of a file (the mode's keys)."""
        _check_input_exists(input_path)
        return _mode_keys(input_path)

    @classmethod
    def from_config_section(cls, config, parent=None, name=None, config_file=None):
        """Build the step from its configuration (``strun``, ``Step.call``).

        stpipe's validation error for a bad value ("the value ... is
        unacceptable", "is too short") is raised again as a `SpecValueError`
        whose message also says what the parameter accepts.
        """
        with spec_errors_explained(cls.explain_invalid):
            return super().from_config_section(
                config, parent=parent, name=name, config_file=config_file
            )

    @classmethod
    def explain_invalid(cls, err: Exception) -> str:
        """The message of stpipe's validation error, saying what each bad value should be.

        Parameters
        ----------
        err : Exception
            A ``stpipe.exceptions.ValidationError``: one line per problem.

        Returns
        -------
        str
            The same lines; a line about a parameter of this step gains
            ``"<name> must be <allowed values or form> — <its spec comment>"``.
        """
        spec = cls.load_spec_file()
        lines = []
        for line in str(err).splitlines():
            match = re.match(r"Config parameter '(?:steps/extract_1d/)?(\w+)': ", line)
            name = match.group(1) if match else None
            form = _expected_form(name, spec[name]) if name in spec else None
            if form:
                comment = (spec.inline_comments.get(name) or "").lstrip("# ").strip()
                line = f"{line.rstrip('.')}: {name} must be {form}"
                line += f" — {comment}" if comment else ""
            lines.append(line)
        return "\n".join(lines)

    @classmethod
    def build_config(cls, input, **kwargs):  # noqa: A002
        """The configuration layers of stpipe; a file name that does not exist fails first.

        ``Step.call`` builds the configuration (mode defaults, parameter
        file, keywords) before the run logs its parameters; a missing input
        file is reported here, before any of that, as an `.InputError`.
        The first ASDF file read (the mode defaults) loads ASDF's extensions,
        whose objects trigger full collections: the imported packages are
        kept out of their scans (``_long_lived_out_of_gc``).
        """
        _check_input_exists(input)
        with _long_lived_out_of_gc():
            return super().build_config(input, **kwargs)

    @staticmethod
    def get_stpipe_loggers():
        """Loggers stpipe configures: jwst's, plus this package's."""
        return (*Step.get_stpipe_loggers(), "optimal_extract1d")

    def default_suffix(self) -> str:
        """Outputs are x1d products: ``name_x1d.fits``."""
        return "x1d"

    @classmethod
    def get_config_from_reference(cls, dataset, disable=None, crds_observatory=None):
        """Mode defaults from the package's ``reference_files/``; CRDS is never queried.

        Parameters
        ----------
        dataset : str, datamodel or dict
            The input, or its CRDS parameters (flattened metadata).
        disable : bool, optional
            Ignored: the shipped defaults need no server.
        crds_observatory : str, optional
            Ignored.

        Returns
        -------
        configobj.ConfigObj
            The mode's recommended parameter values.
        """
        _check_input_exists(dataset)  # strun: before the mode-defaults line and the run
        if isinstance(dataset, dict):
            meta = dataset
        else:
            try:
                meta, _ = cls._get_crds_parameters(dataset)
            except (OSError, TypeError, ValueError):
                meta = {}
        return cls._get_config_from_parameters(meta, crds_observatory)

    @classmethod
    def _get_crds_parameters(cls, dataset):
        """The metadata the mode defaults need (EXP_TYPE, GRATING), read cheaply.

        stpipe calls this before ``process()`` for every run; jwst's version
        parses the whole ASDF tree (every slit's WCS), which for a 100-slit
        s2d costs seconds. A FITS file's primary header or a model's ``meta``
        holds all the mode needs. stpipe only tolerates OSError, TypeError and
        ValueError here; any other reader failure (a truncated or foreign
        file) becomes an `.InputError` (a ValueError): stpipe carries on without
        mode defaults and ``process()`` reports the problem with the file.
        """
        try:
            return _mode_keys(dataset), "jwst"
        except (OSError, TypeError, ValueError):
            raise
        except Exception as err:  # any other reader failure: "cannot read the metadata"
            msg = f"cannot read the metadata of {dataset!r}: {type(err).__name__}: {err}"
            raise InputError(msg) from err

    @classmethod
    def _get_config_from_parameters(cls, crds_parameters, crds_observatory):
        defaults = load_mode_defaults(
            crds_parameters.get("meta.exposure.type"),
            crds_parameters.get("meta.instrument.grating"),
        )
        log.info("Using %s mode defaults from %s", defaults.mode, defaults.path.name)
        config = config_parser.ConfigObj()
        config.update(defaults.parameters)
        return config


def _is_cal(model: Any, cal: CalParams) -> bool:
    """Whether to take the cal path: asked for, or ``auto`` and the slits are unresampled."""
    if cal.input_level == "auto":
        return calinputs.is_cal_input(model)
    return cal.input_level == "cal"


def _check_input_exists(dataset: Any) -> None:
    """Raise `.InputError` if ``dataset`` is a file name that does not exist."""
    if isinstance(dataset, (str, os.PathLike)):
        inputs.check_exists(os.fspath(dataset))


_BOUNDS = {"min": ">= {}", "max": "<= {}"}
_FORMS = {"integer": "an integer", "float": "a number", "string": "a string"}


def _expected_form(name: str, check: str) -> str | None:
    """What a spec check accepts, in words ("one of 'a', 'b'"); None for ``pass``."""
    try:
        kind, args, kwargs, default = Validator()._parse_with_caching(check)
    except Exception:  # an unparsable check: keep stpipe's message as it is
        return None
    low, high = kwargs.get("min"), kwargs.get("max")
    if kind == "option":
        form = "one of " + ", ".join(repr(a) for a in args)
    elif kind in _FORMS:
        bounds = [_BOUNDS[k].format(v) for k, v in kwargs.items() if k in _BOUNDS]
        form = _FORMS[kind] + (" " + " and ".join(bounds) if bounds else "")
    elif kind == "boolean":
        form = "True or False"
    elif kind in ("int_list", "float_list"):
        what = "integers" if kind == "int_list" else "numbers"
        count = f"exactly {low} " if low is not None and low == high else ""
        example = ",".join(str(i + 1) for i in range(int(low or 2)))
        form = f"a list of {count}{what} (--{name}={example} on a command line)"
    else:
        return None
    return form + (" or None" if default == "None" else "")


def _mode_keys(dataset: Any) -> dict[str, Any]:
    """``meta.exposure.type`` and ``meta.instrument.grating`` of a file, model or container."""
    if isinstance(dataset, (str, os.PathLike)):
        path = os.fspath(dataset)
        if not path.lower().endswith((".fits", ".fits.gz")):
            return dict(Step._get_crds_parameters(path)[0])  # associations, ASDF files
        header = fits.getheader(path, 0)
        return {
            "meta.exposure.type": header.get("EXP_TYPE"),
            "meta.instrument.grating": header.get("GRATING"),
        }
    if isinstance(dataset, (list, tuple)) or type(dataset).__name__ in (
        "ModelContainer",
        "SourceModelContainer",
    ):
        if len(dataset) == 0:
            msg = "the input is an empty list of models"
            raise ValueError(msg)
        return _mode_keys(dataset[0])
    meta = getattr(dataset, "meta", None)
    if meta is None:
        msg = f"cannot read the metadata of a {type(dataset).__name__}"
        raise TypeError(msg)
    return {
        "meta.exposure.type": meta.exposure.type,
        "meta.instrument.grating": meta.instrument.grating,
    }


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters as ASDF-serializable plain values."""
    return {
        k: (
            list(v)
            if isinstance(v, tuple)
            else v
            if isinstance(v, (int, float, str, bool, type(None)))
            else repr(v)
        )
        for k, v in values.items()
    }
