"""Registers the fake kernels of every op and the Python autograd formulas, once, when the extension is loaded.

The forward ops elementwise_derivatives, jet_activation, jet_activation_first,
jet_bilaplacian_extra and jet_univariate have C++ autograd kernels, registered by the extension itself (csrc/ops/autograd.cpp);
every other op's formula is in :mod:`hoderiv_ext.ops.formulas`.
"""

from __future__ import annotations

import torch

from hoderiv_ext.ops.fake import FAKE_KERNELS
from hoderiv_ext.ops.formulas import FORMULAS
from hoderiv_ext.ops.library import extension_loaded

NAMESPACE = "hoderiv_ext"


def register_all() -> None:
    for name, kernel in FAKE_KERNELS.items():
        torch.library.register_fake(f"{NAMESPACE}::{name}", kernel)
    for name, (backward, setup_context) in FORMULAS.items():
        torch.library.register_autograd(f"{NAMESPACE}::{name}", backward, setup_context=setup_context)


if extension_loaded():
    register_all()
