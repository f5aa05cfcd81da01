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


def test_the_tangents_after_the_first_activation_are_not_copied():
    # The first layer's tangents are W^T, a transposed view; their product with phi' must come out laid out as
    # (N, d, m), or the next Linear copies it (a regression: it did, and the product itself ran strided).
    from torch.utils._python_dispatch import TorchDispatchMode

    from hoderiv_ext.engines.taylor.sweep import forward_sweep
    from hoderiv_ext.ops.layout import JetLayout

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.copied: list[tuple[int, ...]] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten.clone.default, torch.ops.aten.copy_.default):
                self.copied.append(tuple(args[0].shape))
            return func(*args, **(kwargs or {}))

    net = nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 1)).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    plan = build_plan(net)
    with Ops() as ops:
        jet = forward_sweep(plan, x, JetLayout(4), record=True)
    assert all(len(shape) < 3 for shape in ops.copied), ops.copied  # (d, m) made contiguous at most, no (N, d, m)
    first, second = jet.inputs
    assert first.tangents.shape == (4, 12)  # shared by every sample
    torch.testing.assert_close(second.tangents, torch.einsum("nu,vu,ui->niv", first.first, net[2].weight,
                                                             net[0].weight))
