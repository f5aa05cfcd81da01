"""The traced rules' in-place updates record one autograd node each.

Where a rule adds into a fresh tensor in place (a Linear's bias into the GEMM's output, a skip
connection into the first layer's jet, the Taylor coefficients of a composition), it calls
``view.add_(t)``: the Python form ``tensor[index] += t`` also runs ``tensor[index] = result``, a
``copy_`` of the view onto itself, which costs a second dispatch per call and records a second
CopySlices node whose backward goes through ``as_strided``. These tests fail on that form (the graph
then holds an AsStridedBackward0 node) and check the results against the autograd engine.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hoderiv_ext import derivatives, directional_derivatives


def _node_names(root: Tensor) -> set[str]:
    """The class names of every node of the autograd graph that produced ``root``."""
    seen: set[int] = set()
    names: set[str] = set()
    stack = [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


class FirstLayerSkip(nn.Module):
    """u = tanh(W1 x + b1) + (W0 x + b0): the skip connection is added into the first layer's fresh jet."""

    def __init__(self) -> None:
        super().__init__()
        self.skip = nn.Linear(3, 8)
        self.inner = nn.Linear(3, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.inner(x)) + self.skip(x))


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "skip":
        return FirstLayerSkip().double()
    # A Linear without a following activation: its bias is added into the GEMM's output in place.
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2),
                         nn.Identity()).double()


def _traced_net(kind: str) -> tuple[object, nn.Module]:
    """(f, its module): the Sequential is wrapped in a function so that it is traced rather than run as a plan."""
    net = _model(kind)
    if kind == "skip":
        return net, net
    return (lambda x: net(x) * 1.0), net


def test_no_copy_back_nodes_in_the_traced_laplacian_graph() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    for kind in ("skip", "bias"):
        f, net = _traced_net(kind)
        fast = derivatives(f, x, hessian="laplacian", backend="kernel")
        assert fast.algorithm == "traced"
        names = _node_names(fast.laplacian)
        assert "AsStridedBackward0" not in names, (kind, sorted(names))
        reference = derivatives(f, x, hessian="laplacian", backend="autograd")
        torch.testing.assert_close(fast.laplacian, reference.laplacian, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(fast.gradient, reference.gradient, rtol=1e-10, atol=1e-10)
        params = list(net.parameters())
        fast_grads = torch.autograd.grad(fast.value.square().sum() + fast.laplacian.square().sum(), params)
        reference_grads = torch.autograd.grad(reference.value.square().sum() + reference.laplacian.square().sum(),
                                              params)
        for got, expected in zip(fast_grads, reference_grads):
            torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_no_copy_back_nodes_in_the_traced_taylor_coefficients() -> None:
    net = _model("skip")

    def f(x: Tensor) -> Tensor:  # a product of two jets: its coefficients are a Cauchy product
        return x[:, :1] * net(x)

    x = torch.randn(4, 3, dtype=torch.float64)
    v = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)
    fast = directional_derivatives(f, x, v, order=4, backend="kernel")
    names = _node_names(fast)
    assert "AsStridedBackward0" not in names, sorted(names)
    reference = directional_derivatives(f, x, v, order=4, backend="autograd")
    torch.testing.assert_close(fast, reference, rtol=1e-9, atol=1e-10)
