"""One jet rule at a time: each aten op of the traced engine against torch.func, in float64.

Every function below exercises one rule (or one composition the engine writes itself) on a
batch (N, 3). The full Hessian (pair slots), the Laplacian (the collapsed slot), a weighted
Laplacian (tangents along sigma) and the bi-Laplacian over all inputs and over D = [2, 0] (the
extra third- and fourth-order slots) are compared with the autograd engine to 1e-10, on ordinary
inputs, far tails (x scaled by 30) and exact kinks (x with zeros); so are univariate jets (directional
derivatives to orders 3 and 8, the randomized bi-Laplacian).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from hoderiv_ext import Bilaplacian, Laplacian, derivatives, directional_derivatives
from hoderiv_ext.engines.taylor.traced.capture import _trace

A = torch.linspace(-1.0, 1.0, 12, dtype=torch.float64).reshape(3, 4)
C = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float64)

RULES: dict[str, Callable[[Tensor], Tensor]] = {
    # linear ops
    "mm-add-constant": lambda x: (x @ A + C).sum(-1),
    "sub-rsub-neg": lambda x: (2.0 - x - (-x[:, :1]) - 1).pow(2).sum(-1),
    "mul-div-constant": lambda x: ((x * C[:3]) / (C[:3] + 3)).pow(3).sum(-1),
    "view-permute-transpose": lambda x: (x @ A).reshape(-1, 2, 2).permute(0, 2, 1).transpose(1, 2).sin().sum((1, 2)),
    "expand-unsqueeze-squeeze": lambda x: x.unsqueeze(-1).expand(-1, 3, 2).tanh().sum(-1).squeeze(-1).pow(2).sum(-1),
    "cat-stack": lambda x: torch.stack([torch.cat([x.sin(), x], -1), torch.cat([x, x.cos()], -1)], 1).pow(2).sum((1, 2)),
    "slice-select-index": lambda x: x[:, 1:].sin().sum(-1) * x[:, 0] + x[:, [2, 0]].pow(2).sum(-1),
    "index-select-gather": lambda x: x.index_select(1, torch.tensor([2, 2, 0])).exp().sum(-1)
    + x.gather(1, torch.tensor([[1, 0]]).expand(x.shape[0], 2)).pow(3).sum(-1),
    "mean-sum-keepdim": lambda x: (x.pow(2).mean(-1, keepdim=True) * x.sum(-1, keepdim=True)).squeeze(-1),
    "where-masked-fill": lambda x: torch.where(x > 0, x.pow(2), x.sin()).masked_fill(x.abs() > 5, 0.0).sum(-1),
    # regression: a constant of fewer axes (a Python number, a 0-d tensor, a row) became a jet of the wrong rank
    "where-and-cat-with-lower-rank-constants": lambda x: torch.where(x > 0, x.sin(), 0.5).sum(-1)
    + torch.where(x < 1, torch.tensor(2.0, dtype=x.dtype), x.pow(2)).sum(-1)
    + torch.cat([x.tanh(), torch.where(x > 0, x, C[:3])], -1).pow(2).sum(-1),
    "detach": lambda x: (x * x.detach()).sum(-1) + x.detach().sin().sum(-1),
    # kernel-table functions
    "kernel-functions": lambda x: (torch.tanh(x[:, 0]) + torch.sigmoid(x[:, 1]) + F.softplus(x[:, 2], 2.0)
                                   + F.silu(x[:, 0] * x[:, 1]) + F.gelu(x[:, 1]) + F.gelu(x[:, 2], approximate="tanh")
                                   + F.elu(x[:, 0]) + F.leaky_relu(x[:, 1], 0.2) + torch.exp(-x[:, 2] ** 2)),
    # the table's elementary functions (fused kernels; pow with a scalar base in torch ops)
    "log-log1p-sqrt-rsqrt": lambda x: (torch.log(1 + x.pow(2)) + torch.log1p(x.pow(2)) + torch.sqrt(2 + x.pow(2))
                                       + torch.rsqrt(2 + x.pow(2))).sum(-1),
    "expm1-reciprocal-pow": lambda x: (torch.expm1(x / 3) + torch.reciprocal(2 + x.pow(2)) + (2 + x.pow(2)).pow(1.5)
                                       + torch.pow(2.0, x)).sum(-1),
    "erf-atan-tan-sinh-cosh": lambda x: (torch.erf(x) + torch.atan(x) + torch.tan(x / 4) + torch.sinh(x / 3)
                                         + torch.cosh(x / 3)).sum(-1),
    "abs": lambda x: (x.abs() * x).sum(-1),
    # integer exponents exact at 0 (the kinks: every other sample all zeros), square
    "pow-integer": lambda x: (x.pow(3) + 0.5 * x.pow(4) - x ** 2 + torch.square(x + 1) + x.pow(5)).sum(-1),
    # a 0-d tensor exponent: the scalar exponent's kernel
    "pow-tensor-exponent": lambda x: (1 + x.pow(2)).pow(torch.tensor(2.5, dtype=x.dtype)).sum(-1)
    + x.pow(torch.tensor(3.0, dtype=x.dtype)).sum(-1),
    # products and compositions
    "product-quotient": lambda x: (x[:, 0] * x[:, 1].sin()) / (1 + x[:, 2].pow(2)) + x[:, 0] * x[:, 0],
    "bmm-two-jets": lambda x: torch.bmm(x.unsqueeze(1), (x * 2).unsqueeze(-1).tanh()).reshape(-1),
    "softmax-logsumexp": lambda x: (torch.softmax(x, -1) * x).sum(-1) + torch.logsumexp(x, -1),
    "layer-norm": lambda x: (F.layer_norm(x, (3,)) * C[:3]).sum(-1),
    "var-std": lambda x: x.var(-1) + x.std(-1, correction=0),
    "vector-norm": lambda x: torch.linalg.vector_norm(x + 0.5, dim=-1),
}


def _composite_layer_norm(x: Tensor) -> Tensor:
    centred = x - x.mean(-1, keepdim=True)
    return centred * torch.rsqrt((centred * centred).mean(-1, keepdim=True) + 1e-5)


# torch autograd's third and higher derivatives through F.layer_norm are wrong (pytorch/pytorch#175754):
# the autograd engine's bi-Laplacian of these differentiates a twin written in torch ops.
HIGHER_ORDER_REFERENCES: dict[str, Callable[[Tensor], Tensor]] = {
    "layer-norm": lambda x: (_composite_layer_norm(x) * C[:3]).sum(-1),
}

INPUTS = {
    "ordinary": lambda x: x,
    "far-tails": lambda x: 30 * x,
    "kinks": lambda x: x * (torch.arange(x.shape[0])[:, None] % 2),  # every other sample all zeros
}
NOT_AT_KINKS = {"log-log1p-sqrt-rsqrt", "vector-norm", "var-std", "layer-norm", "abs",  # not smooth at 0
                # torch's autograd of x ** tensor(p) is NaN at x = 0 from order p + 2 (its exponent-gradient
                # term x^p log x); the engine gives x ** p's exact 0, as for a scalar exponent ("pow-integer")
                "pow-tensor-exponent"}
# torch autograd's fourth derivative of gelu(approximate="tanh") is NaN in the far tails (inf * 0 in its
# formula's chain) where the engine's is finite: there the bi-Laplacian is compared where the reference is finite.
REFERENCE_NAN_IN_TAILS = {"kernel-functions"}
NOT_IN_TAILS = {"erf-atan-tan-sinh-cosh", "expm1-reciprocal-pow", "var-std", "where-masked-fill", "index-select-gather",
                "where-and-cat-with-lower-rank-constants"}


def _x(kind: str) -> Tensor:
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    return INPUTS[kind](x)


def _cases() -> list[object]:
    cases = []
    for name in RULES:
        for kind in INPUTS:
            if (kind == "kinks" and name in NOT_AT_KINKS) or (kind == "far-tails" and name in NOT_IN_TAILS):
                continue
            cases.append(pytest.param(name, kind, id=f"{name}-{kind}"))
    return cases


@pytest.mark.parametrize("name, kind", _cases())
@pytest.mark.parametrize("hessian", ["full", "laplacian", "weighted", "bilaplacian", "bilaplacian-dims"])
def test_rule_matches_autograd(name: str, kind: str, hessian: str) -> None:
    f, x = RULES[name], _x(kind)
    request: object = hessian
    if hessian == "weighted":
        request = Laplacian(weights=torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(3, 2))
    elif hessian == "bilaplacian":
        request = Bilaplacian()  # the extra slots T_i, B of every rule
    elif hessian == "bilaplacian-dims":
        request = Bilaplacian(dims=[2, 0])  # D not a run of the inputs: an index, not a slice
    got = derivatives(f, x, request, backend="kernel", create_graph=False)
    reference = HIGHER_ORDER_REFERENCES.get(name, f) if hessian.startswith("bilaplacian") else f
    expected = derivatives(reference, x, request, backend="autograd", create_graph=False)
    assert got.algorithm == "traced"
    for field in ("value", "gradient", "hessian", "laplacian", "bilaplacian"):
        a, b = getattr(got, field), getattr(expected, field)
        if b is None:
            assert a is None
            continue
        if field == "bilaplacian" and kind == "far-tails" and name in REFERENCE_NAN_IN_TAILS:
            assert a.isfinite().all() and not b.isfinite().all()  # the reference's NaN, still there
            finite = b.isfinite()
            a, b = a[finite], b[finite]
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=f"{name} {kind} {field}")


def test_a_scaled_linear_layer_becomes_one_linear_layer_with_scaled_weights() -> None:
    """c * Linear(h) (SIREN's w0) is rewritten to addmm(alpha=c, beta=c): no pass over the jet for the scale."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 5).double()
    f = lambda x: torch.sin(30.0 * linear(x)).sum(-1)  # noqa: E731
    x = torch.randn(4, 3, dtype=torch.float64)
    got = derivatives(f, x, "full", backend="kernel")
    expected = derivatives(f, x, "full", backend="autograd")
    torch.testing.assert_close(got.hessian, expected.hessian, rtol=1e-10, atol=1e-8)
    program = _trace(f, x)
    targets = [node.target for node in program.interpreter.graph_module.graph.nodes if node.op == "call_function"]
    assert torch.ops.aten.mul.Tensor not in targets and torch.ops.aten.detach.default not in targets
    (addmm,) = [node for node in program.interpreter.graph_module.graph.nodes
                if node.target is torch.ops.aten.addmm.default]
    assert addmm.kwargs == {"beta": 30.0, "alpha": 30.0}


# ----------------------------------------------------------------------------- univariate jets


@pytest.mark.parametrize("name, kind", _cases())
@pytest.mark.parametrize("request_kind", ["directional-3", "directional-8", "bilaplacian-samples"])
def test_rule_univariate_matches_autograd(name: str, kind: str, request_kind: str) -> None:
    """Each rule on univariate jets: Taylor coefficients along per-sample directions to order 3 (the closed
    forms of order <= 4) and 8 (the general orders), and the randomized bi-Laplacian (two shared directions
    and the gradient's tangents: fourth order), against the autograd engine to 1e-10."""
    f, x = RULES[name], _x(kind)
    reference = HIGHER_ORDER_REFERENCES.get(name, f)
    if request_kind.startswith("directional"):
        order = int(request_kind.split("-")[1])
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        got = directional_derivatives(f, x, v, order, backend="kernel", create_graph=False)
        expected = directional_derivatives(reference, x, v, order, backend="autograd", create_graph=False)
        pairs = [(got[:, k], expected[:, k], f"order {k}") for k in range(order + 1)]
    else:
        def estimate(g: Callable[[Tensor], Tensor], backend: str) -> object:
            request = Bilaplacian(samples=2, generator=torch.Generator().manual_seed(5))
            return derivatives(g, x, request, backend=backend, create_graph=False)

        got_result, expected_result = estimate(f, "kernel"), estimate(reference, "autograd")
        assert got_result.algorithm == "traced"
        pairs = [(getattr(got_result, field), getattr(expected_result, field), field)
                 for field in ("value", "gradient", "bilaplacian")]
    for a, b, what in pairs:
        if kind == "far-tails" and name in REFERENCE_NAN_IN_TAILS and not b.isfinite().all():
            assert a.isfinite().all()  # the reference's NaN (see REFERENCE_NAN_IN_TAILS)
            finite = b.isfinite()
            a, b = a[finite], b[finite]
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=f"{name} {kind} {what}")


def test_general_order_derivatives_of_the_torch_op_functions() -> None:
    """phi(v, 8) of the torch-op rules (base ** x) against torch autograd's repeated derivatives of phi."""
    from hoderiv_ext.engines.taylor.traced import unary_rules as unary

    v = torch.linspace(-0.9, 0.9, 7, dtype=torch.float64)
    functions = {
        "pow-base-3": (unary._exponential(3.0), lambda t: torch.pow(3.0, t), v),
        "pow-base-0.5": (unary._exponential(0.5), lambda t: torch.pow(0.5, t), v),
    }
    for name, (phi, function, points) in functions.items():
        point = points.clone().requires_grad_(True)
        current, expected = function(point), []
        for _ in range(9):
            expected.append(current.detach())
            if not current.requires_grad:  # a polynomial past its degree
                current = torch.zeros_like(point)
                continue
            (current,) = torch.autograd.grad(current.sum(), point, create_graph=True)
        got = phi(points, 8)
        assert len(got) == 9, name
        for k in range(9):
            scale = max(1.0, expected[k].abs().max().item())
            torch.testing.assert_close(got[k], expected[k], rtol=1e-10, atol=1e-10 * scale, msg=f"{name} order {k}")


# ----------------------------------------------------------------------------- the elementary functions, fused


class ElementaryNet(torch.nn.Module):
    """Linear layers with the table's elementary functions between them (each Linear's bias folds into the next)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.out = torch.nn.Linear(3, 6), torch.nn.Linear(6, 5), torch.nn.Linear(5, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.first(x)
        u = torch.erf(h) + torch.atan(self.first(x).abs() + h)
        v = self.second(u)
        w = torch.sqrt(2 + v.pow(3).tanh()) + torch.log(3 + v.sin()) + torch.pow(2 + v.cos(), 1.5)
        z = self.out(w)
        return torch.log1p(z.pow(2)) + torch.rsqrt(1 + z * z) + torch.reciprocal(2 + z.cosh())


def _record_fused_functions(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """From now on, record the function names the fused jet ops are called with; fail if a torch-op rule runs."""
    from hoderiv_ext.engines.taylor.traced import unary_rules
    from hoderiv_ext.ops import jet as jet_ops

    names: set[str] = set()
    for op_name, position in (("jet_activation", 2), ("jet_activation_first", 2), ("jet_bilaplacian_extra", 3),
                              ("jet_univariate", 2)):
        original = getattr(jet_ops, op_name)

        def recording(*args: object, original: Callable[..., Tensor] = original, position: int = position) -> Tensor:
            names.add(args[position])  # type: ignore[arg-type]
            return original(*args)

        monkeypatch.setattr(jet_ops, op_name, recording)

    def no_torch_ops(*args: object) -> object:
        raise AssertionError("a torch-op unary rule ran")

    monkeypatch.setattr(unary_rules, "torch_unary", no_torch_ops)
    return names


@pytest.mark.parametrize("request_kind", ["full", "laplacian", "bilaplacian", "directional-4"])
def test_the_elementary_functions_run_as_fused_kernels(request_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """log, log1p, sqrt, rsqrt, reciprocal, pow, erf, atan, abs, cosh in a traced network: every one through
    the fused jet ops (no torch-op rule), and the results match the autograd engine to 1e-10 in float64."""
    import hoderiv_ext

    f = ElementaryNet().double()
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    hoderiv_ext.clear_trace_cache()
    names = _record_fused_functions(monkeypatch)
    try:
        if request_kind.startswith("directional"):
            v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
            got = directional_derivatives(f, x, v, 4, backend="kernel", create_graph=False)
            expected = directional_derivatives(f, x, v, 4, backend="autograd", create_graph=False)
            pairs = [(got, expected, "coefficients")]
        else:
            request = Bilaplacian() if request_kind == "bilaplacian" else request_kind
            got = derivatives(f, x, request, backend="kernel", create_graph=False)
            expected = derivatives(f, x, request, backend="autograd", create_graph=False)
            assert got.algorithm == "traced"
            pairs = [(getattr(got, field), getattr(expected, field), field)
                     for field in ("value", "gradient", "hessian", "laplacian", "bilaplacian")
                     if getattr(expected, field) is not None]
    finally:
        hoderiv_ext.clear_trace_cache()
    assert {"log", "log1p", "sqrt", "rsqrt", "reciprocal", "pow", "erf", "atan", "abs", "cosh", "square"} <= names
    for a, b, what in pairs:
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=f"{request_kind} {what}")
