"""Forward-over-reverse Hessian rows (engines/taylor/forward_over_reverse.py) against the autograd engine.

Values and gradients of a loss on them, gradcheck/gradgradcheck, affine networks (zero rows), and
the refusals: other requests, vector outputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines import select
from hoderiv_ext.engines.autograd import engine as autograd_engine
from hoderiv_ext.engines.taylor import engine as taylor_engine
from hoderiv_ext.engines.taylor.plan import build_plan

from conftest import DEVICES, make_mlp, two_affine_blocks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("rows", [[0], [3, 1], [2, 0, 1]], ids=str)
@pytest.mark.parametrize("activation", [nn.Tanh, nn.SiLU, lambda: nn.Softplus(beta=2.0)], ids=["tanh", "silu", "softplus"])
def test_forward_over_reverse_rows_match_the_reference(activation, rows, device):
    """Values, and gradients of a loss on them with respect to parameters and x, against the autograd engine."""
    torch.manual_seed(2)
    net = two_affine_blocks(activation, device)
    x = torch.randn(9, 4, dtype=torch.float64, device=device, requires_grad=True)
    request = parse_hessian_request(rows, 4)
    plan = build_plan(net)
    assert select.taylor_algorithm(plan, request, 4) == "forward_over_reverse"
    fast = taylor_engine.run(plan, x, request, True, algorithm="forward_over_reverse")
    reference = autograd_engine.run(net, x, request, create_graph=True)
    for a, b in zip(fast, reference):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    wrt = list(net.parameters()) + [x]
    loss_fast = sum((t**2).sum() for t in fast)
    loss_reference = sum((t**2).sum() for t in reference)
    for a, b in zip(torch.autograd.grad(loss_fast, wrt), torch.autograd.grad(loss_reference, wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_forward_over_reverse_gradgradcheck_affine_nets_and_refusals():
    small_plan = build_plan(make_mlp(3, [4, 4], 1, nn.SiLU, torch.float64, "cpu"))
    request = parse_hessian_request([2, 0], 3)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def rows_of(t: torch.Tensor) -> torch.Tensor:
        return taylor_engine.run(small_plan, t, request, True, algorithm="forward_over_reverse")[2]

    assert torch.autograd.gradcheck(rows_of, (x,))
    assert torch.autograd.gradgradcheck(rows_of, (x,))
    affine = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 1)).double()
    value, jacobian, second = taylor_engine.run(build_plan(affine), x, request, False, algorithm="forward_over_reverse")
    torch.testing.assert_close(jacobian[:, 0], (affine[1].weight @ affine[0].weight).expand(2, 3))
    assert second.shape == (2, 1, 2, 3) and not second.any()
    with pytest.raises(ValueError, match="rows"):
        taylor_engine.run(small_plan, x, parse_hessian_request("full", 3), True, algorithm="forward_over_reverse")
    vector_plan = build_plan(make_mlp(3, [4], 2, nn.Tanh, torch.float64, "cpu"))
    assert select.taylor_algorithm(vector_plan, request, 3) == "forward"
    with pytest.raises(ValueError, match="scalar-output"):
        taylor_engine.run(vector_plan, x, request, True, algorithm="forward_over_reverse")
