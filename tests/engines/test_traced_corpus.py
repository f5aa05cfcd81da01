"""The traced Taylor engine (backend="kernel" on any per-sample f) against the autograd engine, over a corpus.

Sixteen architectures met in practice (PINNs, SIRENs, Fourier features, gated MLPs, layer norm,
products, quotients, positivity transforms, plain functions with captured tensors, vector outputs,
softmax / logsumexp and special functions), each built by a seeded factory. Checked: every request
in float64 (engine "taylor", algorithm "traced"), parameter gradients of a PINN loss, float32
Laplacians, the empty batch, gradcheck / gradgradcheck of the Laplacian in x, CUDA, and that the
traced program follows new batch sizes, parameters and buffers updated in place and replaced layers.
``test_corpus_entries_are_per_sample_functions`` checks the corpus itself (per-sample, shapes,
the autograd engine against torch.func) so that the other tests test the engine, not the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hoderiv_ext import Derivatives, derivatives

from conftest import DEVICES, make_mlp

Function = Callable[[Tensor], Tensor]
Factory = Callable[[int, torch.dtype, "torch.device | str"], Function]

FIELDS = ("value", "gradient", "hessian", "hessian_rows", "hessian_diagonal", "laplacian")
REQUESTS: list[object] = [None, "full", "diagonal", "laplacian", [0, 1]]
N = 6
WIDTH = 12


# ----------------------------------------------------------------------------- the architectures


class LoopedMLP(nn.Module):
    """forward loops over an nn.ModuleList of Linear layers with tanh."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(d, WIDTH), nn.Linear(WIDTH, WIDTH), nn.Linear(WIDTH, 1)])

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return self.layers[-1](h)


class SineLayer(nn.Module):
    """A SIREN layer as the SIREN paper's code writes it: sin(w0 linear(x)), the Linear a child (a Sequential of
    Linear and sin(w0 x) modules runs as a plan instead: tests/engines/test_traced_activation.py)."""

    def __init__(self, inputs: int, outputs: int, w0: float = 3.0) -> None:
        super().__init__()
        self.w0 = w0
        self.linear = nn.Linear(inputs, outputs)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * self.linear(x))


class Residual(nn.Module):
    """tanh(Linear(x)), then h = h + tanh(Linear(h)) twice, then Linear."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.inp = nn.Linear(d, WIDTH)
        self.blocks = nn.ModuleList([nn.Linear(WIDTH, WIDTH) for _ in range(2)])
        self.out = nn.Linear(WIDTH, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.inp(x))
        for block in self.blocks:
            h = h + torch.tanh(block(h))
        return self.out(h)


class FourierFeatures(nn.Module):
    """cat([sin(x B), cos(x B)]) with a fixed random B (a buffer), then an MLP."""

    def __init__(self, d: int, features: int = 6) -> None:
        super().__init__()
        self.register_buffer("B", 2.0 * torch.randn(d, features))
        self.mlp = nn.Sequential(nn.Linear(2 * features, WIDTH), nn.Tanh(), nn.Linear(WIDTH, 1))

    def forward(self, x: Tensor) -> Tensor:
        projected = x @ self.B
        return self.mlp(torch.cat([torch.sin(projected), torch.cos(projected)], dim=-1))


class ModifiedMLP(nn.Module):
    """Wang et al.'s gated MLP: U, V = tanh(x W_u), tanh(x W_v); Z = tanh(Linear(H)); H = (1 - Z) U + Z V."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.u = nn.Linear(d, WIDTH)
        self.v = nn.Linear(d, WIDTH)
        self.first = nn.Linear(d, WIDTH)
        self.hidden = nn.ModuleList([nn.Linear(WIDTH, WIDTH) for _ in range(2)])
        self.out = nn.Linear(WIDTH, 1)

    def forward(self, x: Tensor) -> Tensor:
        u, v = torch.tanh(self.u(x)), torch.tanh(self.v(x))
        h = torch.tanh(self.first(x))
        for layer in self.hidden:
            z = torch.tanh(layer(h))
            h = (1 - z) * u + z * v
        return self.out(h)


class Normalised(nn.Module):
    """(x - mean) / std with buffers, then an MLP."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.randn(d))
        self.register_buffer("std", 0.5 + torch.rand(d))
        self.net = nn.Sequential(nn.Linear(d, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                                 nn.Linear(WIDTH, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


class Swish(nn.Module):
    """x * sigmoid(x), written out (not nn.SiLU)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x)


class SoftmaxLogsumexp(nn.Module):
    """softmax and logsumexp over the features of a hidden layer."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, WIDTH)
        self.out = nn.Linear(WIDTH, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.hidden(x))
        return self.out(torch.softmax(h, dim=-1)) + torch.logsumexp(2 * h, dim=-1, keepdim=True)


class SpecialFunctions(nn.Module):
    """log1p(h^2), sqrt(1 + h^2), atan(h) and erf(h) of a hidden layer, concatenated, then Linear."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(d, 8)
        self.out = nn.Linear(32, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.hidden(x)
        features = [torch.log1p(h**2), torch.sqrt(1 + h**2), torch.atan(h), torch.erf(h)]
        return self.out(torch.cat(features, dim=-1))


def _tanh_mlp(d: int, dtype: torch.dtype, device: torch.device | str, seed: int) -> nn.Sequential:
    return make_mlp(d, [WIDTH, WIDTH], 1, nn.Tanh, dtype, device, seed=seed)


def looped_mlp(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(1)
    return LoopedMLP(d).to(dtype=dtype, device=device)


def siren(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(2)
    net = nn.Sequential(SineLayer(d, WIDTH), SineLayer(WIDTH, WIDTH), nn.Linear(WIDTH, 1))
    return net.to(dtype=dtype, device=device)


def hard_boundary(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    net = _tanh_mlp(d, dtype, device, seed=3)
    return lambda x: x[:, :1] * (1 - x[:, :1]) * net(x)


def residual(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(4)
    return Residual(d).to(dtype=dtype, device=device)


def fourier_features(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(5)
    return FourierFeatures(d).to(dtype=dtype, device=device)


def modified_mlp(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(6)
    return ModifiedMLP(d).to(dtype=dtype, device=device)


def normalised_input(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(7)
    return Normalised(d).to(dtype=dtype, device=device)


def layer_norm_mlp(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(8)
    net = nn.Sequential(nn.Linear(d, WIDTH), nn.LayerNorm(WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH),
                        nn.LayerNorm(WIDTH), nn.Tanh(), nn.Linear(WIDTH, 1))
    with torch.no_grad():  # away from the initial weight 1, bias 0
        for norm in (net[1], net[4]):
            norm.weight.add_(0.2 * torch.randn(WIDTH))
            norm.bias.add_(0.2 * torch.randn(WIDTH))
    return net.to(dtype=dtype, device=device)


def product(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    first, second = _tanh_mlp(d, dtype, device, seed=9), _tanh_mlp(d, dtype, device, seed=10)
    return lambda x: first(x) * second(x)


def quotient(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    numerator, denominator = _tanh_mlp(d, dtype, device, seed=11), _tanh_mlp(d, dtype, device, seed=12)
    return lambda x: numerator(x) / (1 + denominator(x) ** 2)


def softplus_output(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    net = _tanh_mlp(d, dtype, device, seed=13)
    return lambda x: F.softplus(net(x))


def exp_output(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    net = _tanh_mlp(d, dtype, device, seed=14)
    return lambda x: torch.exp(net(x))


def plain_function(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(15)
    a = torch.randn(d, 5).to(dtype=dtype, device=device)
    c = torch.randn(d).to(dtype=dtype, device=device)
    return lambda x: torch.sin(x @ a).pow(2).sum(-1) + (x * c).sum(-1)


def vector_swish(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(16)
    net = nn.Sequential(nn.Linear(d, WIDTH), Swish(), nn.Linear(WIDTH, WIDTH), Swish(), nn.Linear(WIDTH, 3))
    return net.to(dtype=dtype, device=device)


def softmax_logsumexp(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(17)
    return SoftmaxLogsumexp(d).to(dtype=dtype, device=device)


def special_functions(d: int, dtype: torch.dtype, device: torch.device | str) -> Function:
    torch.manual_seed(18)
    return SpecialFunctions(d).to(dtype=dtype, device=device)


@dataclass(frozen=True)
class Architecture:
    """A corpus entry: ``build(d, dtype, device)`` returns f, batched (N, d) -> (N,), (N, 1) or (N, outputs)."""

    name: str
    build: Factory
    d: int
    outputs: int = 1
    has_parameters: bool = True

    def __call__(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Function:
        return self.build(self.d, dtype, device)


CORPUS = [
    Architecture("looped_mlp", looped_mlp, 2),
    Architecture("siren", siren, 3),
    Architecture("hard_boundary", hard_boundary, 2),
    Architecture("residual", residual, 3),
    Architecture("fourier_features", fourier_features, 2),
    Architecture("modified_mlp", modified_mlp, 3),
    Architecture("normalised_input", normalised_input, 2),
    Architecture("layer_norm_mlp", layer_norm_mlp, 3),
    Architecture("product", product, 2),
    Architecture("quotient", quotient, 3),
    Architecture("softplus_output", softplus_output, 2),
    Architecture("exp_output", exp_output, 3),
    Architecture("plain_function", plain_function, 2, has_parameters=False),
    Architecture("vector_swish", vector_swish, 3, outputs=3),
    Architecture("softmax_logsumexp", softmax_logsumexp, 2),
    Architecture("special_functions", special_functions, 3),
]
BY_NAME = {arch.name: arch for arch in CORPUS}


def corpus(*names: str, with_parameters: bool = False) -> list:
    """pytest params of the named entries (all when none are named)."""
    chosen = [BY_NAME[name] for name in names] if names else CORPUS
    return [pytest.param(arch, id=arch.name) for arch in chosen if arch.has_parameters or not with_parameters]


# ----------------------------------------------------------------------------- helpers


def sample_x(n: int, d: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
             seed: int = 0, scale: float = 1.0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, d, generator=generator, dtype=torch.float64)).to(dtype=dtype, device=device)


def modules_of(f: Function) -> list[nn.Module]:
    """f itself when it is a module, else the modules its closure captures."""
    if isinstance(f, nn.Module):
        return [f]
    cells = getattr(f, "__closure__", None) or ()
    return [cell.cell_contents for cell in cells if isinstance(cell.cell_contents, nn.Module)]


def parameters_of(f: Function) -> list[nn.Parameter]:
    unique: dict[int, nn.Parameter] = {}
    for module in modules_of(f):
        for parameter in module.parameters():
            unique[id(parameter)] = parameter
    return list(unique.values())


def kernel(f: Function, x: Tensor, hessian: object, **kwargs: object) -> Derivatives:
    """backend="kernel", which must be the traced Taylor engine for every corpus entry."""
    result = derivatives(f, x, hessian=hessian, backend="kernel", **kwargs)
    assert (result.engine, result.algorithm) == ("taylor", "traced")
    return result


def reference(f: Function, x: Tensor, hessian: object, **kwargs: object) -> Derivatives:
    result = derivatives(f, x, hessian=hessian, backend="autograd", **kwargs)
    assert result.engine == "autograd"
    return result


def assert_same_fields(got: Derivatives, expected: Derivatives, rtol: float, atol: float) -> None:
    """Every field populated on one side is populated on the other, of the same shape and close (atol scaled)."""
    for name in FIELDS:
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if a is None:
            continue
        assert a.shape == b.shape, (name, a.shape, b.shape)
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol * scale, msg=lambda m: f"{name}: {m}")


def expected_shapes(n: int, d: int, outputs: int, hessian: object) -> dict[str, tuple[int, ...]]:
    """The documented shapes of the populated fields for x (n, d) (results.py's squeezing rules)."""
    lead = (n,) if outputs == 1 else (n, outputs)
    shapes = {"value": lead, "gradient": lead + (d,)}
    if hessian == "full":
        shapes["hessian"] = lead + (d, d)
    elif hessian == "diagonal":
        shapes["hessian_diagonal"] = lead + (d,)
    elif hessian == "laplacian":
        shapes["laplacian"] = lead
    elif isinstance(hessian, list):
        shapes["hessian_rows"] = lead + (len(hessian), d)
    return shapes


def assert_shapes(result: Derivatives, shapes: dict[str, tuple[int, ...]]) -> None:
    for name in FIELDS:
        field = getattr(result, name)
        if name in shapes:
            assert field is not None and tuple(field.shape) == shapes[name], (name, field, shapes[name])
        else:
            assert field is None, name


def pinn_loss(out: Derivatives) -> Tensor:
    return (out.value**2).mean() + (out.laplacian**2).mean() + (out.gradient**2).mean()


# ----------------------------------------------------------------------------- the corpus itself


@pytest.mark.parametrize("arch", corpus())
def test_corpus_entries_are_per_sample_functions(arch: Architecture) -> None:
    """Each f maps row n to output row n alone, has the documented shapes, and autograd matches torch.func."""
    f, d = arch(), arch.d
    x = sample_x(N, d)
    y = f(x)
    assert y.shape in ((N,), (N, 1)) if arch.outputs == 1 else (y.shape == (N, arch.outputs))
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(f(x[perm]), y[perm], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(f(x[2:3]), y[2:3], rtol=1e-13, atol=1e-13)
    for hessian in REQUESTS:
        assert_shapes(reference(f, x, hessian), expected_shapes(N, d, arch.outputs, hessian))

    def one_sample(point: Tensor) -> Tensor:
        return f(point[None]).reshape(-1)[0] if arch.outputs == 1 else f(point[None])[0]

    result = reference(f, x, "full")
    for n in range(N):
        torch.testing.assert_close(result.value[n], one_sample(x[n]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(result.gradient[n], torch.func.jacrev(one_sample)(x[n]), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(result.hessian[n], torch.func.hessian(one_sample)(x[n]), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- kernel against autograd


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hessian", REQUESTS, ids=str)
@pytest.mark.parametrize("arch", corpus())
def test_every_request_float64(arch: Architecture, hessian: object, device: str) -> None:
    f = arch(torch.float64, device)
    x = sample_x(N, arch.d, torch.float64, device)
    got = kernel(f, x, hessian, create_graph=False)
    assert_shapes(got, expected_shapes(N, arch.d, arch.outputs, hessian))
    assert_same_fields(got, reference(f, x, hessian, create_graph=False), rtol=1e-10, atol=1e-12)


class CompositeLayerNorm(nn.Module):
    """A LayerNorm written in torch ops, sharing the parameters of ``norm``.

    torch autograd's third derivatives through ``F.layer_norm`` are wrong
    (pytorch/pytorch#175754: the fused double backward's saved mean and
    inverse std carry no history), so the reference for a parameter gradient
    of a Laplacian differentiates this twin instead.
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, h: Tensor) -> Tensor:
        centred = h - h.mean(-1, keepdim=True)
        variance = (centred * centred).mean(-1, keepdim=True)
        return centred * torch.rsqrt(variance + self.norm.eps) * self.norm.weight + self.norm.bias


def third_order_reference(f: Function) -> Function:
    """f with every LayerNorm of a Sequential replaced by its composite twin (same parameters)."""
    if isinstance(f, nn.Sequential) and any(isinstance(m, nn.LayerNorm) for m in f):
        return nn.Sequential(*[CompositeLayerNorm(m) if isinstance(m, nn.LayerNorm) else m for m in f])
    return f


@pytest.mark.parametrize("arch", corpus(with_parameters=True))
def test_pinn_loss_parameter_gradients(arch: Architecture) -> None:
    f = arch()
    params = parameters_of(f)
    assert params
    x = sample_x(N, arch.d)
    got = torch.autograd.grad(pinn_loss(kernel(f, x, "laplacian", create_graph=True)), params)
    expected = torch.autograd.grad(pinn_loss(reference(third_order_reference(f), x, "laplacian", create_graph=True)),
                                   params)
    for a, b in zip(got, expected):
        scale = max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * scale)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("arch", corpus())
def test_laplacian_float32(arch: Architecture, device: str) -> None:
    f = arch(torch.float32, device)
    x = sample_x(N, arch.d, torch.float32, device)
    got = kernel(f, x, "laplacian", create_graph=False)
    assert got.laplacian.dtype == torch.float32
    assert_same_fields(got, reference(f, x, "laplacian", create_graph=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hessian", ["laplacian", "full", None], ids=str)
@pytest.mark.parametrize("arch", corpus("looped_mlp", "hard_boundary", "plain_function", "vector_swish",
                                        "layer_norm_mlp"))
def test_empty_batch(arch: Architecture, hessian: object) -> None:
    f = arch()
    x = sample_x(0, arch.d)
    assert_shapes(kernel(f, x, hessian), expected_shapes(0, arch.d, arch.outputs, hessian))


@pytest.mark.parametrize("arch", corpus("siren", "hard_boundary", "modified_mlp"))
def test_gradcheck_and_gradgradcheck_of_the_laplacian_in_x(arch: Architecture) -> None:
    f = arch()
    x = sample_x(3, arch.d, scale=0.3).requires_grad_(True)

    def laplacian(t: Tensor) -> Tensor:
        return kernel(f, t, "laplacian", create_graph=True).laplacian

    assert torch.autograd.gradcheck(laplacian, (x,))
    assert torch.autograd.gradgradcheck(laplacian, (x,))


# ----------------------------------------------------------------------------- the traced program follows f


@pytest.mark.parametrize("arch", corpus())
def test_one_program_for_every_batch_size(arch: Architecture) -> None:
    f = arch()
    for n in (7, 13, 7, 1):
        x = sample_x(n, arch.d, seed=n)
        for hessian in ("laplacian", "full"):
            got = kernel(f, x, hessian, create_graph=False)
            assert_shapes(got, expected_shapes(n, arch.d, arch.outputs, hessian))
            assert_same_fields(got, reference(f, x, hessian, create_graph=False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", corpus(with_parameters=True))
def test_parameters_updated_in_place_are_followed(arch: Architecture) -> None:
    f = arch()
    x = sample_x(N, arch.d)
    before = kernel(f, x, "laplacian", create_graph=False)
    with torch.no_grad():
        for p in parameters_of(f):
            p.add_(0.1)
    after = kernel(f, x, "laplacian", create_graph=False)
    assert not torch.allclose(after.value, before.value)
    assert_same_fields(after, reference(f, x, "laplacian", create_graph=False), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", corpus("normalised_input", "fourier_features"))
def test_buffers_updated_in_place_are_followed(arch: Architecture) -> None:
    f = arch()
    x = sample_x(N, arch.d)
    before = kernel(f, x, "laplacian", create_graph=False)
    with torch.no_grad():
        for buffer in f.buffers():
            buffer.mul_(1.25)
    after = kernel(f, x, "laplacian", create_graph=False)
    assert not torch.allclose(after.value, before.value)
    assert_same_fields(after, reference(f, x, "laplacian", create_graph=False), rtol=1e-10, atol=1e-12)


def _replace_first_layer(arch: Architecture, f: Function) -> None:
    """Swap the first Linear for a freshly initialised one (a new module object, new parameters)."""
    torch.manual_seed(99)
    fresh = nn.Linear(arch.d, WIDTH).double()
    if isinstance(f, LoopedMLP):
        f.layers[0] = fresh
    else:
        (net,) = [f] if isinstance(f, nn.Sequential) else modules_of(f)
        net[0] = fresh


@pytest.mark.parametrize("arch", corpus("siren", "looped_mlp", "hard_boundary", "vector_swish"))
def test_a_replaced_layer_is_followed(arch: Architecture) -> None:
    f = arch()
    x = sample_x(N, arch.d)
    before = kernel(f, x, "full", create_graph=False)
    _replace_first_layer(arch, f)
    after = kernel(f, x, "full", create_graph=False)
    assert not torch.allclose(after.value, before.value)
    assert_same_fields(after, reference(f, x, "full", create_graph=False), rtol=1e-10, atol=1e-12)


def test_layer_norm_third_derivatives_match_finite_differences() -> None:
    """d/dW of a Laplacian through nn.LayerNorm: the traced engine matches central differences.

    torch autograd (the autograd engine, nested autograd.grad) gets this
    wrong (pytorch/pytorch#175754); the traced engine composes layer norm of
    jet rules and is right.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 12), nn.LayerNorm(12), nn.Linear(12, 1)).double()
    x = sample_x(6, 3)

    def loss(backend: str) -> Tensor:
        return derivatives(net, x, hessian="laplacian", backend=backend, create_graph=True).laplacian.pow(2).sum()

    (got,) = torch.autograd.grad(loss("kernel"), [net[0].weight])
    step, entry = 1e-6, (0, 0)
    with torch.no_grad():
        net[0].weight[entry] += step
        up = loss("kernel").item()
        net[0].weight[entry] -= 2 * step
        down = loss("kernel").item()
        net[0].weight[entry] += step
    assert abs(got[entry].item() - (up - down) / (2 * step)) < 1e-6 * max(1.0, abs(got[entry].item()))
