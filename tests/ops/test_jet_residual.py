"""jet_activation's residual argument: the step's jet plus a residual jet (a skip connection h + phi(v)).

The kernel's sum equals the step plus the residual added in torch (bit for bit: the same one addition per
entry) for every slot layout; opcheck with a residual; gradients with respect to any subset of (jet, bias,
residual) equal the twin's, gradcheck and gradgradcheck in float64; bad residuals are refused naming the
argument; empty and non-contiguous residuals work.
"""

from __future__ import annotations

import pytest
import torch

from hoderiv_ext.ops import jet as jet_ops
from hoderiv_ext.ops import jet_composite
from hoderiv_ext.ops.layout import JetLayout

from conftest import DEVICES

LAYOUTS = {
    "pairs": JetLayout(3, pairs=((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))),
    "collapsed": JetLayout(3, collapsed=(0, 1, 2)),
    "both": JetLayout(3, pairs=((1, 2), (0, 0)), collapsed=(1,)),
    "first-order": JetLayout(3),
}
FUNCTION, PARAMS = "softplus", [1.5, 20.0]


def _randn(*shape: int, device: str, requires_grad: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, device=device, requires_grad=requires_grad)


def _raw(jet, bias, residual, layout: JetLayout = LAYOUTS["both"]):
    return torch.ops.hoderiv_ext.jet_activation(jet, bias, FUNCTION, PARAMS, layout.num_tangents, layout.pair_i,
                                                layout.pair_j, list(layout.collapsed), residual)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", list(LAYOUTS))
def test_residual_is_added_to_the_step_bit_for_bit(name, dtype, device):
    torch.manual_seed(0)
    layout = LAYOUTS[name]
    n, m = 37, 9  # odd width: the vector loops' remainders run
    jet = _randn(n, layout.num_slots, m, device=device, dtype=dtype)
    bias = _randn(m, device=device, dtype=dtype)
    residual = _randn(n, layout.num_slots, m, device=device, dtype=dtype)
    step = jet_ops.jet_activation(jet, bias, FUNCTION, PARAMS, layout)
    got = jet_ops.jet_activation(jet, bias, FUNCTION, PARAMS, layout, residual)
    assert torch.equal(got, step + residual)
    twin = jet_composite.activation_step(jet, bias, FUNCTION, PARAMS, layout) + residual
    torch.testing.assert_close(got, twin, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_residual_may_be_a_view_or_the_input_jet_itself(device):
    layout = LAYOUTS["collapsed"]
    torch.manual_seed(1)
    jet = _randn(6, layout.num_slots, 5, device=device)
    wide = _randn(6, layout.num_slots, 10, device=device)
    strided = wide[:, :, ::2]  # not contiguous
    step = jet_ops.jet_activation(jet, None, FUNCTION, PARAMS, layout)
    assert torch.equal(jet_ops.jet_activation(jet, None, FUNCTION, PARAMS, layout, strided), step + strided)
    assert torch.equal(jet_ops.jet_activation(jet, None, FUNCTION, PARAMS, layout, jet), step + jet)


@pytest.mark.parametrize("device", DEVICES)
def test_residual_of_an_empty_batch(device):
    layout = LAYOUTS["pairs"]
    jet = _randn(0, layout.num_slots, 4, device=device)
    out = jet_ops.jet_activation(jet, None, FUNCTION, PARAMS, layout, torch.zeros_like(jet))
    assert out.shape == jet.shape


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["pairs", "both"])
def test_opcheck_with_a_residual(name, device):
    layout = LAYOUTS[name]
    torch.manual_seed(2)
    args = (_randn(3, layout.num_slots, 4, device=device, requires_grad=True),
            _randn(4, device=device, requires_grad=True), FUNCTION, PARAMS, layout.num_tangents, layout.pair_i,
            layout.pair_j, list(layout.collapsed), _randn(3, layout.num_slots, 4, device=device, requires_grad=True))
    torch.library.opcheck(torch.ops.hoderiv_ext.jet_activation.default, args)


CASES = ["residual", "jet+residual", "bias+residual", "jet+bias+residual", "jet,no-bias,residual", "jet"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES)
def test_gradients_of_any_subset_equal_the_twins(case, device):
    """Regression for the autograd kernel's input positions: the residual's gradient is the output's, whether
    or not a bias is given and whichever inputs need grad."""
    layout = LAYOUTS["both"]
    torch.manual_seed(3)
    wants = case.split(",")[0].split("+") if "," not in case else ["jet", "residual"]
    jet = _randn(5, layout.num_slots, 3, device=device, requires_grad="jet" in wants)
    bias = None if "no-bias" in case else _randn(3, device=device, requires_grad="bias" in wants)
    residual = _randn(5, layout.num_slots, 3, device=device, requires_grad="residual" in wants)
    cotangent = _randn(5, layout.num_slots, 3, device=device)
    inputs = [t for t in (jet, bias, residual) if t is not None and t.requires_grad]
    grads = torch.autograd.grad(_raw(jet, bias, residual, layout), inputs, cotangent)
    twins = [t.detach().requires_grad_(t.requires_grad) if t is not None else None for t in (jet, bias, residual)]
    twin = jet_composite.activation_step(twins[0], twins[1], FUNCTION, PARAMS, layout) + twins[2]
    expected = torch.autograd.grad(twin, [t for t in twins if t is not None and t.requires_grad], cotangent)
    assert len(grads) == len(expected) == len(inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_and_gradgradcheck_with_a_residual(device):
    layout = LAYOUTS["both"]
    torch.manual_seed(4)
    jet = _randn(3, layout.num_slots, 2, device=device, requires_grad=True)
    bias = _randn(2, device=device, requires_grad=True)
    residual = _randn(3, layout.num_slots, 2, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda j, b, r: _raw(j, b, r, layout), (jet, bias, residual))
    assert torch.autograd.gradgradcheck(lambda j, b, r: _raw(j, b, r, layout), (jet, bias, residual))


def test_bad_residuals_are_refused_naming_the_argument():
    layout = LAYOUTS["collapsed"]
    jet = torch.ones(3, layout.num_slots, 4)
    with pytest.raises(RuntimeError, match="residual must have the jet's shape"):
        _raw(jet, None, torch.ones(3, layout.num_slots, 5), layout)
    with pytest.raises(RuntimeError, match="residual must have the jet's shape"):
        _raw(jet, None, torch.ones(1, layout.num_slots, 4), layout)  # no broadcasting
    with pytest.raises(RuntimeError, match="residual must have jet's dtype"):
        _raw(jet, None, torch.ones(3, layout.num_slots, 4, dtype=torch.float64), layout)
    with pytest.raises(RuntimeError, match="residual is on meta but jet is on cpu"):
        _raw(jet, None, torch.ones(3, layout.num_slots, 4, device="meta"), layout)
    with pytest.raises(RuntimeError, match="residual must have the jet's shape"):  # checked before the empty return
        _raw(torch.ones(0, layout.num_slots, 4), None, torch.ones(0, layout.num_slots, 5), layout)
