"""The Taylor activation-step ops (ops/jet.py): opcheck, and the fused kernels against their torch-ops twins.

Every op under torch.library.opcheck on every device; the forward kernels and the first layer's
backward kernel equal ops/jet_composite.py's twins, for empty, single and multi-chunk batches and
any number of threads.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines.taylor.slots import layout_for
from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.layout import JetLayout

from conftest import DEVICES


# Slot layouts the cases run on, for t = 3 tangents: the full Hessian's pairs, a collapsed slot over every
# tangent (the Laplacian's), over a subset (a partial Laplacian), both at once, and first-order only.
LAYOUTS = {
    "pairs": JetLayout(3, pairs=((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))),
    "collapsed": JetLayout(3, collapsed=(0, 1, 2)),
    "subset": JetLayout(3, collapsed=(2, 0)),
    "both": JetLayout(3, pairs=((1, 2), (0, 0)), collapsed=(1,)),
    "first-order": JetLayout(3),
}
FUNCTIONS = {"pairs": ("tanh", []), "collapsed": ("softplus", [2.0, 20.0]), "subset": ("gelu", []),
             "both": ("silu", []), "first-order": ("sigmoid", [])}
OPS = ("jet_activation", "jet_activation_backward", "jet_activation_first", "jet_activation_first_backward")
JET_OP_CASES = [f"{op}-{layout}" for op in OPS for layout in LAYOUTS]
# The cases with a torch-ops twin in ops/jet_composite.py (jet_activation_backward has none of its own).
TWIN_CASES = [case for case in JET_OP_CASES if not case.startswith("jet_activation_backward-")]


def _lists(layout: JetLayout) -> tuple[list[int], list[int], list[int]]:
    return layout.pair_i, layout.pair_j, list(layout.collapsed)


def _jet_op_sample(case: str, device: str) -> tuple:
    """(op, args) for one case of JET_OP_CASES, its tensors on ``device``."""
    op_name, layout_name = case.rsplit("-", 1) if not case.endswith("first-order") else (case[:-12], "first-order")
    layout, (function, params) = LAYOUTS[layout_name], FUNCTIONS[layout_name]
    torch.manual_seed(0)
    n, m, t = 3, 4, layout.num_tangents
    slots = layout.num_slots

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)

    ops = torch.ops.hoderiv_ext
    lists = _lists(layout)
    if op_name == "jet_activation":
        return ops.jet_activation.default, (randn(n, slots, m), randn(m), function, params, t, *lists)
    if op_name == "jet_activation_backward":
        return ops.jet_activation_backward.default, (randn(n, slots, m), randn(n, slots, m), randn(m), function,
                                                     params, t, *lists)
    if op_name == "jet_activation_first":
        return ops.jet_activation_first.default, (randn(n, m), randn(m, t), function, params, *lists)
    return ops.jet_activation_first_backward.default, (randn(n, slots, m), randn(n, m), randn(m, t), function,
                                                       params, *lists)


def _typed(op, args: tuple) -> tuple:
    """The raw op arguments as the twins take them: (..., function, params, JetLayout)."""
    *rest, pair_i, pair_j, collapsed = args
    if op in (torch.ops.hoderiv_ext.jet_activation.default, torch.ops.hoderiv_ext.jet_activation_backward.default):
        *tensors, function, params, t = rest
    else:
        *tensors, function, params = rest
        t = tensors[-1].shape[1]
    return (*tensors, function, params, JetLayout(t, tuple(zip(pair_i, pair_j)), tuple(collapsed)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", JET_OP_CASES)
def test_opcheck_jet_ops(case, device):
    op, args = _jet_op_sample(case, device)
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", TWIN_CASES)
def test_fused_kernels_match_jet_composite_twins(case, device):
    ops = torch.ops.hoderiv_ext
    op, args = _jet_op_sample(case, device)
    got = op(*args)
    twin = {
        ops.jet_activation.default: jet_composite.activation_step,
        ops.jet_activation_first.default: jet_composite.first_activation_step,
        ops.jet_activation_first_backward.default: jet_composite.first_activation_step_backward,
    }[op]
    torch.testing.assert_close(got, twin(*_typed(op, args)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("collapsed", [True, False])
@pytest.mark.parametrize("n", [0, 1, 4000])
def test_first_layer_backward_kernel_any_batch(n, collapsed, device):
    """Empty, single and multi-chunk batches (the kernels sum per-chunk partials) against the reference;
    the result does not depend on the number of threads."""
    d, m = 3, 5
    layout = layout_for(parse_hessian_request("laplacian" if collapsed else [2, 0], d), d)
    grad = torch.randn(n, 1 + d + layout.num_second, m, dtype=torch.float64, device=device)
    pre = torch.randn(n, m, dtype=torch.float64, device=device)
    weight = torch.randn(m, d, dtype=torch.float64, device=device)
    args = (grad, pre, weight, "gelu", [], *_lists(layout))
    op = torch.ops.hoderiv_ext.jet_activation_first_backward.default
    grad_a, grad_weight = op(*args)
    expected_a, expected_weight = jet_composite.first_activation_step_backward(*_typed(op, args))
    torch.testing.assert_close(grad_a, expected_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_weight, expected_weight, rtol=1e-11, atol=1e-11)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = op(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], grad_a) and torch.equal(single[1], grad_weight)
