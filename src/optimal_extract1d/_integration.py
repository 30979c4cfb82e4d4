"""The ``stpipe.steps`` entry point: how ``strun`` finds our step by alias."""

__all__ = ["get_steps"]


def get_steps():
    """Return ``(class path, alias, is_pipeline)`` for every step this package provides.

    Returns
    -------
    list of tuple (str, str, bool)
        Step and pipeline classes registered with stpipe.
    """
    return [
        ("optimal_extract1d.step.OptimalExtract1dStep", "optimal_extract_1d", False),
        ("optimal_extract1d.spec3.OptimalSpec3Pipeline", "calwebb_spec3_optimal", True),
    ]
