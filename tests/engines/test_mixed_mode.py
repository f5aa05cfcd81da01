"""Mixed mode (engines/taylor/mixed.py): forward tangents and one reverse sweep, against forward Taylor mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hoderiv_ext import Laplacian
from hoderiv_ext.core.requests import parse_hessian_request
from hoderiv_ext.engines.taylor import engine as taylor_engine
from hoderiv_ext.engines.taylor.plan import build_plan

from conftest import DEVICES, REQUESTS, two_affine_blocks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", [*REQUESTS, Laplacian(dims=[2, 0])], ids=str)
@pytest.mark.parametrize("activation", [nn.Tanh, nn.SiLU, lambda: nn.Softplus(beta=2.0)], ids=["tanh", "silu", "softplus"])
def test_mixed_mode_matches_forward_taylor_mode(activation, hessian, device):
    torch.manual_seed(1)
    net = two_affine_blocks(activation, device)
    x = torch.randn(9, 4, dtype=torch.float64, device=device, requires_grad=True)
    request = parse_hessian_request(hessian, 4)
    plan = build_plan(net)
    mixed = taylor_engine.run(plan, x, request, True, algorithm="mixed")
    forward = taylor_engine.run(plan, x, request, True, algorithm="forward")
    for a, b in zip(mixed, forward):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # Gradients of a loss with respect to parameters and x agree with forward Taylor mode's.
    wrt = list(net.parameters()) + [x]
    loss_mixed = sum((t**2).sum() for t in mixed if t is not None)
    loss_forward = sum((t**2).sum() for t in forward if t is not None)
    for a, b in zip(torch.autograd.grad(loss_mixed, wrt), torch.autograd.grad(loss_forward, wrt)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
