"""Shared pieces of the PINN examples (examples/poisson.py, examples/heat.py).

* problems with known exact solutions: :class:`Poisson` (-Δu = f on the unit
  square or cube) and :class:`CorrelatedHeat` (u_t = Σ_ij A_ij ∂²u/∂x_i∂x_j,
  mixed second derivatives through Hessian rows);
* :func:`make_mlp`, the network the Taylor engine serves (``nn.Sequential`` of
  ``nn.Linear`` and ``nn.Tanh``);
* :func:`engine_backend`, the fast path: ``backend="kernel"`` on CPU (``auto``
  serves CPU tensors with the autograd engine), ``"auto"`` on CUDA;
* :class:`PointSampler`: collocation points, one random stream per
  data-parallel rank, so a single process can redraw exactly the points a
  group of ranks drew (the distributed check);
* :class:`PINNLoss`, the module that computes the loss; data-parallel training
  wraps *it* in ``DistributedDataParallel`` (DDP must run the forward that
  builds the graph, and ``derivatives`` must see the plain ``nn.Sequential`` to
  use the Taylor engine, so wrapping the network itself would not do);
* :func:`train`, the training loop (Adam, exponential learning-rate decay,
  timing per step, a small progress bar), and :func:`relative_l2_error`.

The examples import this module as ``pinn_common`` (run them as
``python examples/poisson.py`` from the repository root, with hoderiv_ext
installed or ``PYTHONPATH=.``).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

import hoderiv_ext

Batch = dict[str, Tensor]

# ----------------------------------------------------------------------------- engines


def engine_backend(choice: str, device: torch.device | str) -> str:
    """The ``backend=`` for ``derivatives``: "fast" is the Taylor engine on any device, "reference" autograd."""
    device = torch.device(device)
    if choice == "fast":
        return "auto" if device.type == "cuda" else "kernel"  # auto serves CPU tensors with autograd
    if choice == "reference":
        return "autograd"
    if choice in ("auto", "kernel", "autograd"):
        return choice
    raise ValueError(f"backend must be 'fast', 'reference', 'auto', 'kernel' or 'autograd', got {choice!r}")


# ----------------------------------------------------------------------------- network


def make_mlp(in_dim: int, width: int = 32, depth: int = 3, *, activation: type[nn.Module] = nn.Tanh,
             dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> nn.Sequential:
    """``in_dim -> width (x depth hidden layers, tanh) -> 1``: the kind of network the Taylor engine serves."""
    layers: list[nn.Module] = []
    widths = [in_dim] + [width] * depth
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), activation()]
    layers.append(nn.Linear(widths[-1], 1))
    return nn.Sequential(*layers).to(dtype=dtype, device=device)


# ----------------------------------------------------------------------------- problems


def _uniform(gen: torch.Generator, n: int, d: int, dtype: torch.dtype) -> Tensor:
    return torch.rand(n, d, generator=gen, dtype=dtype)


def _on_cube_faces(gen: torch.Generator, n: int, d: int, dtype: torch.dtype) -> Tensor:
    """n points uniform on the boundary of [0, 1]^d: a random face, a uniform point on it."""
    x = _uniform(gen, n, d, dtype)
    axis = torch.randint(0, d, (n,), generator=gen)
    side = torch.randint(0, 2, (n,), generator=gen).to(dtype)
    x[torch.arange(n), axis] = side
    return x


class Problem:
    """A PDE on a box with a known exact solution; subclasses define the loss."""

    name: str
    input_dim: int
    hessian: object  # the ``hessian=`` request the residual needs

    def sample(self, gen: torch.Generator, n_interior: int, n_boundary: int, dtype: torch.dtype) -> Batch:
        raise NotImplementedError

    def exact(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: Batch, backend: str) -> tuple[Tensor, str]:
        """(loss, engine that computed the derivatives)."""
        raise NotImplementedError

    def eval_points(self, n: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        gen = torch.Generator().manual_seed(20261122)
        return _uniform(gen, n, self.input_dim, dtype).to(device)


class Poisson(Problem):
    """-Δu = f on [0, 1]^d, u = 0 on the boundary; exact u = Π_i sin(π x_i), f = d π² u.

    Loss: mean over interior points of ((Δu + f) / (d π²))² -- the equation
    divided by d π² so that it is of the order of u -- plus the mean of u² over
    boundary points. One ``derivatives(net, x, hessian="laplacian")`` call gives
    the Laplacian (one collapsed second-order slot in the Taylor engine).
    """

    hessian = "laplacian"

    def __init__(self, dim: int = 2):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = self.input_dim = dim
        self.name = f"poisson{dim}d"
        self.scale = dim * math.pi**2

    def exact(self, x: Tensor) -> Tensor:
        return torch.sin(math.pi * x).prod(dim=1)

    def source(self, x: Tensor) -> Tensor:
        return self.scale * self.exact(x)

    def sample(self, gen: torch.Generator, n_interior: int, n_boundary: int, dtype: torch.dtype) -> Batch:
        return {"interior": _uniform(gen, n_interior, self.dim, dtype),
                "boundary": _on_cube_faces(gen, n_boundary, self.dim, dtype)}

    def loss(self, net: nn.Module, batch: Batch, backend: str) -> tuple[Tensor, str]:
        x = batch["interior"]
        out = hoderiv_ext.derivatives(net, x, hessian="laplacian", backend=backend)
        residual = (out.laplacian + self.source(x)) / self.scale
        boundary = net(batch["boundary"]).squeeze(1)
        return residual.pow(2).mean() + boundary.pow(2).mean(), out.engine


class CorrelatedHeat(Problem):
    """u_t = Σ_ij A_ij ∂²u/∂x_i∂x_j on x ∈ [0, 1]^d, t ∈ [0, T], A = C / (2π²), C_ii = 1, C_ij = ρ.

    The Kolmogorov equation of a Brownian motion with correlated components
    (covariance C/π² per unit time; the diffusion part of the multi-asset
    Black–Scholes operator in log-prices). With ρ ≠ 0 the residual needs the
    mixed derivatives ∂²u/∂x_i∂x_j: the network's input is z = (x, t), and
    Σ_ij A_ij ∂²u/∂x_i∂x_j = tr(σσᵀ ∇²u) with σ = [L; 0] ((d+1, d), L the
    Cholesky factor of A, 0 in the row of t) is one weighted Laplacian:
    ``derivatives(net, z, hessian=Laplacian(weights=sigma))`` carries d extra
    tangents and one collapsed slot, plus u_t from the gradient
    (operator="weighted", the default). operator="rows" asks for the d Hessian
    rows of the space coordinates instead and contracts them with A (the t row
    is never formed); with ρ = 0 it asks for hessian="diagonal".

    Exact solution: two modes, k₁ = π(1, 1, ..., 1) and k₂ = π(1, -1, 1, -1, ...),
        u = e^{-λ₁ t} sin(k₁·x) + e^{-λ₂ t} sin(k₂·x),  λ_m = k_mᵀ A k_m,
    so a model that ignored the mixed terms would get λ wrong. For d = 2 and
    ρ = 0.5, λ = (1.5, 0.5). Data: u on the faces of the cube for t ∈ [0, T]
    and at t = 0.
    """

    def __init__(self, dim: int = 2, rho: float = 0.5, horizon: float = 1.0, operator: str = "weighted"):
        if dim < 2:
            raise ValueError(f"dim must be >= 2 for the two modes, got {dim}")
        if not -1.0 / (dim - 1) < rho < 1.0:
            raise ValueError(f"rho must lie in (-1/(d-1), 1) for C to be positive definite, got {rho}")
        self.dim, self.rho, self.horizon = dim, rho, horizon
        self.input_dim = dim + 1
        self.name = f"heat{dim}d"
        corr = torch.full((dim, dim), float(rho), dtype=torch.float64)
        corr.fill_diagonal_(1.0)
        self.diffusion = corr / (2 * math.pi**2)  # A
        signs = torch.ones(2, dim, dtype=torch.float64)
        signs[1, 1::2] = -1.0
        self.wavevectors = math.pi * signs  # (2, d)
        self.rates = torch.einsum("mi,ij,mj->m", self.wavevectors, self.diffusion, self.wavevectors)  # λ
        if operator not in ("weighted", "rows"):
            raise ValueError(f"operator must be 'weighted' or 'rows', got {operator!r}")
        self.operator = operator
        self.sigma = torch.cat([torch.linalg.cholesky(self.diffusion), torch.zeros(1, dim, dtype=torch.float64)])
        if operator == "weighted":
            self.hessian: object = "weighted Laplacian"
        else:
            self.hessian = "diagonal" if rho == 0 else list(range(dim))

    def exact(self, z: Tensor) -> Tensor:
        x, t = z[:, : self.dim], z[:, self.dim :]
        k = self.wavevectors.to(z)
        rates = self.rates.to(z)
        return (torch.exp(-t * rates) * torch.sin(x @ k.T)).sum(dim=1)

    def sample(self, gen: torch.Generator, n_interior: int, n_boundary: int, dtype: torch.dtype) -> Batch:
        d = self.dim
        interior = _uniform(gen, n_interior, d + 1, dtype)
        interior[:, d] *= self.horizon
        faces = torch.cat([_on_cube_faces(gen, n_boundary, d, dtype),
                           self.horizon * _uniform(gen, n_boundary, 1, dtype)], dim=1)
        initial = torch.cat([_uniform(gen, n_boundary, d, dtype), torch.zeros(n_boundary, 1, dtype=dtype)], dim=1)
        return {"interior": interior, "boundary": torch.cat([faces, initial])}

    def eval_points(self, n: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        z = super().eval_points(n, dtype, device)
        z[:, self.dim] *= self.horizon
        return z

    def loss(self, net: nn.Module, batch: Batch, backend: str) -> tuple[Tensor, str]:
        z, d = batch["interior"], self.dim
        if self.operator == "weighted":  # Σ_ij A_ij u_ij = tr(σσᵀ ∇²u): d directions, one collapsed slot
            out = hoderiv_ext.derivatives(net, z, hessian=hoderiv_ext.Laplacian(weights=self.sigma.to(z)),
                                          backend=backend)
            residual = out.gradient[:, d] - out.laplacian
            zb = batch["boundary"]
            boundary = net(zb).squeeze(1) - self.exact(zb)
            return residual.pow(2).mean() + boundary.pow(2).mean(), out.engine
        out = hoderiv_ext.derivatives(net, z, hessian=self.hessian, backend=backend)
        u_t = out.gradient[:, d]
        a = self.diffusion.to(z)
        if self.hessian == "diagonal":
            operator = out.hessian_diagonal[:, :d] @ a.diagonal()
        else:  # rows 0..d-1 of the (d+1)-input Hessian: (N, d, d+1); the space block is [:, :, :d]
            operator = torch.einsum("nij,ij->n", out.hessian_rows[:, :, :d], a)
        residual = u_t - operator
        zb = batch["boundary"]
        boundary = net(zb).squeeze(1) - self.exact(zb)
        return residual.pow(2).mean() + boundary.pow(2).mean(), out.engine


# ----------------------------------------------------------------------------- points


def point_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s stream of collocation points."""
    return 1_000_003 * (seed + 1) + rank


class PointSampler:
    """Collocation points for one process: the concatenation, in rank order, of the ranks' own streams.

    A data-parallel rank r samples with ``ranks=[r]``; a single process that
    wants the very same total batch samples with ``ranks=range(world_size)``.
    """

    def __init__(self, problem: Problem, n_interior: int, n_boundary: int, *, seed: int,
                 ranks: Sequence[int] = (0,), dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu"):
        self.problem, self.n_interior, self.n_boundary = problem, n_interior, n_boundary
        self.dtype, self.device = dtype, torch.device(device)
        self.generators = [torch.Generator().manual_seed(point_seed(seed, r)) for r in ranks]

    def __call__(self) -> Batch:
        parts = [self.problem.sample(g, self.n_interior, self.n_boundary, self.dtype) for g in self.generators]
        return {key: torch.cat([p[key] for p in parts]).to(self.device) for key in parts[0]}


# ----------------------------------------------------------------------------- loss module


class PINNLoss(nn.Module):
    """``forward(batch) -> loss``: the module that data-parallel training wraps in DDP."""

    def __init__(self, problem: Problem, net: nn.Sequential, backend: str):
        super().__init__()
        self.problem, self.net, self.backend = problem, net, backend
        self.engine = ""

    def forward(self, batch: Batch) -> Tensor:
        loss, self.engine = self.problem.loss(self.net, batch, self.backend)
        return loss


# ----------------------------------------------------------------------------- progress


class ProgressBar:
    """A one-line progress bar on stderr (redrawn at most 10 times a second; a line per 10% when not a tty)."""

    def __init__(self, total: int, *, enabled: bool = True, width: int = 28, stream=None, label: str = ""):
        self.total, self.enabled, self.width, self.label = total, enabled and total > 0, width, label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_draw = -1.0
        self.last_decile = -1

    def update(self, done: int, **info: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if done < self.total and now - self.last_draw < 0.1:
                return
        else:
            decile = 10 * done // self.total
            if decile == self.last_decile:
                return
            self.last_decile = decile
        self.last_draw = now
        filled = self.width * done // self.total
        rate = done / max(now - self.start, 1e-9)
        extra = "  ".join(f"{k} {v:.3e}" for k, v in info.items())
        bar = "#" * filled + "." * (self.width - filled)
        line = f"{self.label}[{bar}] {done}/{self.total}  {extra}  {rate:.1f} it/s"
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    losses: list[float]
    step_times: list[float]  # seconds, every step
    error: float  # relative L2 error against the exact solution
    engine: str
    net: nn.Sequential = field(repr=False)

    @property
    def time_per_step(self) -> float:
        """Median seconds per step, the first 3 (warm-up) left out when there are enough."""
        times = self.step_times[3:] if len(self.step_times) > 6 else self.step_times
        return statistics.median(times)

    def parameters(self) -> list[Tensor]:
        return [p.detach().clone() for p in self.net.parameters()]


def relative_l2_error(problem: Problem, net: nn.Module, n: int = 8192) -> float:
    """||u_net - u|| / ||u|| over n fixed uniform points of the domain."""
    p = next(net.parameters())
    z = problem.eval_points(n, p.dtype, p.device)
    with torch.no_grad():
        u = problem.exact(z)
        return float(torch.linalg.vector_norm(net(z).squeeze(1) - u) / torch.linalg.vector_norm(u))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(problem: Problem, *, steps: int, n_interior: int, n_boundary: int, backend: str = "fast",
          seed: int = 0, width: int = 32, depth: int = 3, lr: float = 1e-2, final_lr: float = 1e-4,
          dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
          ranks: Sequence[int] | None = None, distributed: bool = False, progress: bool = False,
          callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a PINN for ``problem`` with Adam and return losses, step times and the final error.

    ``n_interior`` / ``n_boundary`` are per rank. The learning rate decays
    exponentially from ``lr`` to ``final_lr`` over ``steps``. The network is
    built after ``torch.manual_seed(seed)``, so every engine, every rank and the
    single-process check start from the same parameters.

    ``distributed=True`` (inside an initialised process group): this process is
    rank ``dist.get_rank()``, draws its own points and trains the loss module
    wrapped in ``DistributedDataParallel``, which averages the gradients over
    ranks -- the gradient of the mean loss over the union of the ranks' points.
    The recorded loss is the average over ranks (all-reduced), the same number a
    single process computes on that union.

    ``ranks`` (single process only): draw the points of these ranks and
    concatenate them, e.g. ``range(world_size)`` to reproduce a distributed
    run's total batch. Default: rank 0 only.
    """
    device = torch.device(device)
    if distributed:
        if ranks is not None:
            raise ValueError("ranks is for single-process runs; a distributed rank samples its own points")
        ranks = [dist.get_rank()]
    ranks = list(ranks) if ranks is not None else [0]
    torch.manual_seed(seed)
    net = make_mlp(problem.input_dim, width, depth, dtype=dtype, device=device)
    loss_module = PINNLoss(problem, net, engine_backend(backend, device))
    model: nn.Module = loss_module
    world = 1
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        world = dist.get_world_size()
        model = DistributedDataParallel(loss_module, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = PointSampler(problem, n_interior, n_boundary, seed=seed, ranks=ranks, dtype=dtype, device=device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    decay = (final_lr / lr) ** (1.0 / max(steps - 1, 1))
    bar = ProgressBar(steps, enabled=progress, label=f"{problem.name} {loss_module.backend:8s} ")

    losses: list[float] = []
    step_times: list[float] = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * decay**step
        _sync(device)
        start = time.perf_counter()
        batch = sampler()
        loss = model(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP: gradients averaged over ranks here
        optimizer.step()
        _sync(device)
        step_times.append(time.perf_counter() - start)
        value = loss.detach()
        if world > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= world
        losses.append(float(value))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"loss is {losses[-1]} at step {step}")
        if callback is not None:
            callback(step, losses[-1])
        bar.update(step + 1, loss=losses[-1])
    bar.close()
    return TrainResult(losses, step_times, relative_l2_error(problem, net), loss_module.engine, net)


def max_relative_difference(a: Sequence[float], b: Sequence[float]) -> float:
    """max_i |a_i - b_i| / |b_i| (0 for empty sequences)."""
    return max((abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b)), default=0.0)


def max_parameter_difference(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    """max over tensors of max |a - b| / max(max |b|, tiny)."""
    worst = 0.0
    for x, y in zip(a, b):
        scale = max(float(y.abs().max()), 1e-300)
        worst = max(worst, float((x - y).abs().max()) / scale)
    return worst


# ----------------------------------------------------------------------------- distributed setup


def init_distributed(device_choice: str) -> tuple[torch.device, int, int]:
    """Initialise the process group from torchrun's environment: gloo on CPU, nccl on CUDA.

    Returns (this rank's device, rank, world size).
    """
    if "RANK" not in os.environ:
        raise SystemExit("--distributed needs torchrun (RANK / WORLD_SIZE / MASTER_ADDR in the environment), e.g. "
                           "torchrun --standalone --nproc_per_node=2 examples/poisson.py --distributed")
    use_cuda = device_choice == "cuda" or (device_choice == "auto" and torch.cuda.is_available())
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group(backend="gloo")
    return device, dist.get_rank(), dist.get_world_size()


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


# ----------------------------------------------------------------------------- plotting


def _save_figure(plt, fig, path: str, title: str) -> bool:
    """Title, save and close a figure; report where it went."""
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"plot written to {path}")
    return True


def plot_solution(problem: Problem, net: nn.Module, path: str, *, title: str = "", resolution: int = 101) -> bool:
    """Save a PNG of the network's solution, the exact one and the error on a 2-D slice.

    The slice is (x_1, x_2) with the other space coordinates at 0.5 and, for
    the heat problem, t = T. Returns False (and prints why) when matplotlib is
    not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib is not installed: no plot written to {path} (pip install matplotlib)")
        return False
    p = next(net.parameters())
    grid = torch.linspace(0.0, 1.0, resolution, dtype=p.dtype, device=p.device)
    if problem.input_dim == 1:  # the 1-D Poisson problem: curves instead of images
        with torch.no_grad():
            u_net, u_true = net(grid[:, None]).squeeze(1).double().cpu(), problem.exact(grid[:, None]).double().cpu()
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
        left.plot(grid.cpu().numpy(), u_net.numpy(), label="network")
        left.plot(grid.cpu().numpy(), u_true.numpy(), "--", label="exact")
        left.legend()
        right.plot(grid.cpu().numpy(), (u_net - u_true).numpy())
        right.set_title("network - exact")
        return _save_figure(plt, fig, path, title)
    g1, g2 = torch.meshgrid(grid, grid, indexing="ij")
    z = torch.full((resolution * resolution, problem.input_dim), 0.5, dtype=p.dtype, device=p.device)
    z[:, 0], z[:, 1] = g1.reshape(-1), g2.reshape(-1)
    if isinstance(problem, CorrelatedHeat):
        z[:, problem.dim] = problem.horizon
    with torch.no_grad():
        u_net = net(z).reshape(resolution, resolution).double().cpu()
        u_true = problem.exact(z).reshape(resolution, resolution).double().cpu()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    extent = (0, 1, 0, 1)
    low, high = float(torch.minimum(u_net.min(), u_true.min())), float(torch.maximum(u_net.max(), u_true.max()))
    worst = max(float((u_net - u_true).abs().max()), 1e-300)
    panels = ((u_net, "network", "viridis", low, high), (u_true, "exact", "viridis", low, high),
              (u_net - u_true, "network - exact", "RdBu_r", -worst, worst))
    for ax, (data, name, cmap, vmin, vmax) in zip(axes, panels):
        image = ax.imshow(data.T.numpy(), origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(name)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
        fig.colorbar(image, ax=ax, shrink=0.85)
    return _save_figure(plt, fig, path, title)


# ----------------------------------------------------------------------------- command line


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def add_common_arguments(parser, *, steps: int, batch: int, lr: float, bound: float) -> None:
    """The options poisson.py and heat.py share."""
    parser.add_argument("--steps", type=int, default=steps, help="training steps (default %(default)s)")
    parser.add_argument("--batch", type=int, default=batch,
                        help="interior collocation points per step and per process (default %(default)s)")
    parser.add_argument("--boundary-batch", type=int, default=None,
                        help="boundary (and initial) points per step and per process (default: batch/4)")
    parser.add_argument("--width", type=int, default=32, help="hidden width (default %(default)s)")
    parser.add_argument("--depth", type=int, default=3, help="hidden tanh layers (default %(default)s)")
    parser.add_argument("--lr", type=float, default=lr, help="initial Adam learning rate (default %(default)s)")
    parser.add_argument("--final-lr", type=float, default=None, help="learning rate at the last step (default lr/100)")
    parser.add_argument("--backend", default="fast", choices=["fast", "reference", "auto", "kernel", "autograd"],
                        help="fast: the compiled Taylor engine (backend='kernel' on CPU, 'auto' on CUDA); "
                             "reference: the autograd engine (default %(default)s)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, or auto (default %(default)s)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="(default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the network and the points (default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--bound", type=float, default=bound,
                        help="relative L2 error the run must reach; exit status 1 otherwise, 0 disables "
                             "(default %(default)s)")
    parser.add_argument("--compare-reference", action="store_true",
                        help="train again with the autograd engine on the same seed: its error, its time per "
                             "step, the losses step by step; and a float64 agreement run of --agree-steps steps")
    parser.add_argument("--agree-steps", type=int, default=20,
                        help="steps of the float64 engine-agreement run of --compare-reference (default %(default)s)")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the processes torchrun starts (gloo on CPU, nccl on CUDA)")
    parser.add_argument("--check-single", action="store_true",
                        help="with --distributed: rank 0 retrains in one process on the union of the ranks' points "
                             "and compares parameters and losses")
    parser.add_argument("--plot", metavar="PATH", default=None, help="write a PNG of the solution and its error "
                        "(needs matplotlib)")
    parser.add_argument("--json", metavar="PATH", default=None, help="write the results (and parameters) as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_arguments(problem: Problem, args, description: str) -> int:
    """Train as the command line says, print the report, return the exit status."""
    import json

    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world = 0, 1
    if args.distributed:
        device, rank, world = init_distributed(args.device)
    else:
        if args.check_single:
            raise SystemExit("--check-single needs --distributed")
        device = resolve_device(args.device)
    lead = rank == 0
    say = print if lead else (lambda *a, **k: None)
    dtype = DTYPES[args.dtype]
    n_boundary = args.boundary_batch if args.boundary_batch is not None else max(args.batch // 4, 1)
    options = dict(steps=args.steps, n_interior=args.batch, n_boundary=n_boundary, seed=args.seed,
                   width=args.width, depth=args.depth, lr=args.lr,
                   final_lr=args.final_lr if args.final_lr is not None else args.lr / 100,
                   device=device, distributed=args.distributed)

    say(description)
    say(f"{args.steps} steps, {args.batch} interior + {n_boundary} boundary points per step"
        + (f" and per process ({world} processes, {args.batch * world} interior points in all)" if world > 1 else "")
        + f", {args.dtype}, {device}, tanh MLP {args.depth}x{args.width}, seed {args.seed}")
    result = train(problem, backend=args.backend, dtype=dtype, progress=lead and not args.no_progress, **options)
    report: dict = {"problem": problem.name, "world_size": world, "args": vars(args), "engine": result.engine,
                    "backend": engine_backend(args.backend, device), "error": result.error,
                    "time_per_step": result.time_per_step, "losses": result.losses}
    say(f"engine: {result.engine} (backend={engine_backend(args.backend, device)!r})")
    say(f"relative L2 error {result.error:.3e}, final loss {result.losses[-1]:.3e}, "
        f"time per step {1e3 * result.time_per_step:.2f} ms (median)")
    if args.distributed:  # DDP keeps the replicas identical: check it
        flat = torch.cat([p.reshape(-1) for p in result.parameters()]).double()
        high, low = flat.clone(), flat.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        report["rank_spread"] = spread = float((high - low).abs().max())
        say(f"parameters across the {world} processes: max difference {spread:.1e}")
    status = 0
    if args.bound > 0:
        reached = result.error < args.bound
        report["bound_reached"] = reached
        say(f"bound {args.bound:.1e}: {'reached' if reached else 'NOT reached'}")
        status = 0 if reached else 1

    if args.compare_reference:
        other = "reference" if engine_backend(args.backend, device) != "autograd" else "fast"
        ref = train(problem, backend=other, dtype=dtype, progress=lead and not args.no_progress, **options)
        difference = max_relative_difference(result.losses, ref.losses)
        first = max_relative_difference(result.losses[: args.agree_steps], ref.losses[: args.agree_steps])
        taylor_time, reference_time = ((result.time_per_step, ref.time_per_step) if other == "reference"
                                       else (ref.time_per_step, result.time_per_step))
        ratio = reference_time / taylor_time
        say(f"{other} engine ({ref.engine}), same seed: relative L2 error {ref.error:.3e}, "
            f"time per step {1e3 * ref.time_per_step:.2f} ms; speed-up of the Taylor engine {ratio:.2f}x "
            "(reference time / Taylor time)")
        say(f"losses step by step ({args.dtype}): max relative difference {first:.1e} over the first "
            f"{min(args.agree_steps, args.steps)} steps, {difference:.1e} over all {args.steps}")
        agree = dict(options, steps=args.agree_steps)
        fast64 = train(problem, backend=args.backend if other == "reference" else other, dtype=torch.float64, **agree)
        ref64 = train(problem, backend="reference", dtype=torch.float64, **agree)
        loss_diff64 = max_relative_difference(fast64.losses, ref64.losses)
        param_diff64 = max_parameter_difference(fast64.parameters(), ref64.parameters())
        say(f"engine agreement (float64, {args.agree_steps} Adam steps): losses max relative difference "
            f"{loss_diff64:.1e}, parameters {param_diff64:.1e}")
        report["reference"] = {"engine": ref.engine, "error": ref.error, "time_per_step": ref.time_per_step,
                               "losses": ref.losses, "speedup": ratio,
                               "loss_difference_first": first, "loss_difference_all": difference,
                               "float64_loss_difference": loss_diff64, "float64_parameter_difference": param_diff64}

    if args.check_single and lead:
        single = train(problem, backend=args.backend, dtype=dtype, progress=False,
                       **dict(options, distributed=False), ranks=range(world))
        p_diff = max_parameter_difference(result.parameters(), single.parameters())
        l_diff = max_relative_difference(result.losses, single.losses)
        say(f"single process on the same {args.batch * world} interior points per step: parameters max relative "
            f"difference {p_diff:.1e}, losses {l_diff:.1e}, relative L2 error {single.error:.3e}, "
            f"time per step {1e3 * single.time_per_step:.2f} ms")
        report["single"] = {"parameter_difference": p_diff, "loss_difference": l_diff, "error": single.error,
                            "time_per_step": single.time_per_step}

    if args.plot and lead:
        plot_solution(problem, result.net, args.plot, title=f"{description} -- relative L2 error {result.error:.2e}")
    if args.json and lead:
        report["parameters"] = [p.double().cpu().tolist() for p in result.parameters()]
        with open(args.json, "w") as handle:
            json.dump(report, handle)
    if args.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return status
