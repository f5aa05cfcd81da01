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


JET_OP_CASES = [
    "jet_activation-pairs-tanh",
    "jet_activation-collapsed-softplus",
    "jet_activation_backward-pairs-gelu",
    "jet_activation_first-pairs-silu",
    "jet_activation_first-collapsed-tanh",
    "jet_activation_first_backward-pairs-silu",
    "jet_activation_first_backward-collapsed-tanh",
]
# The cases with a torch-ops twin in ops/jet_composite.py (jet_activation_backward has none of its own).
TWIN_CASES = [case for case in JET_OP_CASES if not case.startswith("jet_activation_backward-")]


def _jet_op_samples(device: str) -> dict[str, tuple]:
    """(op, args) for every case of JET_OP_CASES, its tensors on ``device``.

    "pairs": the full Hessian's pair slots for d = 2; "collapsed": one collapsed slot (the Laplacian's).
    """
    torch.manual_seed(0)
    n, m, d = 3, 4, 2
    layout = layout_for(parse_hessian_request("full", d), d)
    pair_i, pair_j = torch.tensor(layout.pair_i, device=device), torch.tensor(layout.pair_j, device=device)
    slots = 1 + d + layout.num_second
    jet = torch.randn(n, slots, m, dtype=torch.float64, device=device, requires_grad=True)
    bias = torch.randn(m, dtype=torch.float64, device=device, requires_grad=True)
    grad = torch.randn(n, slots, m, dtype=torch.float64, device=device, requires_grad=True)
    pre = torch.randn(n, m, dtype=torch.float64, device=device, requires_grad=True)
    weight = torch.randn(m, d, dtype=torch.float64, device=device, requires_grad=True)
    collapsed_jet = torch.randn(n, 2 + d, m, dtype=torch.float64, device=device, requires_grad=True)
    # the first layer's output jet's gradient
    first_grad = torch.randn(n, slots, m, dtype=torch.float64, device=device, requires_grad=True)
    collapsed_grad = torch.randn(n, 2 + d, m, dtype=torch.float64, device=device, requires_grad=True)
    empty = torch.empty(0, dtype=torch.int64, device=device)
    ops = torch.ops.hoderiv_ext
    samples = {
        "jet_activation-pairs-tanh": (ops.jet_activation.default, (jet, bias, "tanh", [], pair_i, pair_j, d, False)),
        "jet_activation-collapsed-softplus":
            (ops.jet_activation.default, (collapsed_jet, None, "softplus", [2.0, 20.0], empty, empty, d, True)),
        "jet_activation_backward-pairs-gelu":
            (ops.jet_activation_backward.default, (grad, jet, bias, "gelu", [], pair_i, pair_j, d, False)),
        "jet_activation_first-pairs-silu":
            (ops.jet_activation_first.default, (pre, weight, "silu", [], pair_i, pair_j, False)),
        "jet_activation_first-collapsed-tanh":
            (ops.jet_activation_first.default, (pre, weight, "tanh", [], empty, empty, True)),
        "jet_activation_first_backward-pairs-silu":
            (ops.jet_activation_first_backward.default, (first_grad, pre, weight, "silu", [], pair_i, pair_j, False)),
        "jet_activation_first_backward-collapsed-tanh":
            (ops.jet_activation_first_backward.default, (collapsed_grad, pre, weight, "tanh", [], empty, empty, True)),
    }
    assert list(samples) == JET_OP_CASES
    return samples


def _typed(args: tuple) -> tuple:
    """The raw op arguments (..., function, params, pair_i, pair_j, [num_tangents,] collapsed) as the twins take them."""
    *tensors, function, params, pair_i, pair_j = args[: len(args) - (2 if isinstance(args[-2], int) else 1)]
    num_tangents = args[-2] if isinstance(args[-2], int) else tensors[-1].shape[1]
    collapsed = tuple(range(num_tangents)) if args[-1] else ()
    layout = JetLayout(num_tangents, tuple(zip(pair_i.tolist(), pair_j.tolist())), collapsed)
    return (*tensors, function, params, layout)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", JET_OP_CASES)
def test_opcheck_jet_ops(case, device):
    op, args = _jet_op_samples(device)[case]
    torch.library.opcheck(op, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", TWIN_CASES)
def test_fused_kernels_match_jet_composite_twins(case, device):
    ops = torch.ops.hoderiv_ext
    op, args = _jet_op_samples(device)[case]
    got = op(*args)
    twin = {
        ops.jet_activation.default: jet_composite.activation_step,
        ops.jet_activation_first.default: jet_composite.first_activation_step,
        ops.jet_activation_first_backward.default: jet_composite.first_activation_step_backward,
    }[op]
    torch.testing.assert_close(got, twin(*_typed(args)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("collapsed", [True, False])
@pytest.mark.parametrize("n", [0, 1, 4000])
def test_first_layer_backward_kernel_any_batch(n, collapsed, device):
    """Empty, single and multi-chunk batches (the kernels sum per-chunk partials) against the reference;
    the result does not depend on the number of threads."""
    d, m = 3, 5
    layout = layout_for(parse_hessian_request("laplacian" if collapsed else [2, 0], d), d)
    pair_i = torch.tensor(layout.pair_i, dtype=torch.int64, device=device)
    pair_j = torch.tensor(layout.pair_j, dtype=torch.int64, device=device)
    grad = torch.randn(n, 1 + d + layout.num_second, m, dtype=torch.float64, device=device)
    pre = torch.randn(n, m, dtype=torch.float64, device=device)
    weight = torch.randn(m, d, dtype=torch.float64, device=device)
    args = (grad, pre, weight, "gelu", [], pair_i, pair_j, collapsed)
    grad_a, grad_weight = torch.ops.hoderiv_ext.jet_activation_first_backward(*args)
    expected_a, expected_weight = jet_composite.first_activation_step_backward(*_typed(args))
    torch.testing.assert_close(grad_a, expected_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_weight, expected_weight, rtol=1e-11, atol=1e-11)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = torch.ops.hoderiv_ext.jet_activation_first_backward(*args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single[0], grad_a) and torch.equal(single[1], grad_weight)
