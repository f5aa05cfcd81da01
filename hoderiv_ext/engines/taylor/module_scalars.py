"""The Python numbers a module holds: what a trace of its forward may bake in as constants.

The traced programs' cache (:mod:`hoderiv_ext.engines.taylor.traced.capture`) and the recognition of
user-defined activation modules (:mod:`hoderiv_ext.engines.taylor.traced_activation`) compare them
between calls, so that ``module.w0 = 30.0`` is seen.
"""

from __future__ import annotations

from torch import nn

SCALARS = (int, float, bool, str, complex, type(None))

_MODULE_STATE = frozenset(nn.Module().__dict__) - {"training"}  # what every module holds: not f's own numbers


def module_scalars(module: nn.Module) -> tuple:
    """(name, value) of every scalar attribute of ``module`` but nn.Module's own bookkeeping (training kept)."""
    return tuple((key, value) for key, value in module.__dict__.items()
                 if key not in _MODULE_STATE and isinstance(value, SCALARS))
