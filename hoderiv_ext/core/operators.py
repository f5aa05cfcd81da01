"""Differential operators beyond the Hessian: partial, weighted and randomized Laplacians, the bi-Laplacian.

``derivatives(f, x, hessian=...)`` accepts these request objects where it
takes ``"laplacian"``:

=============================================  ==============================================
request                                        result field
=============================================  ==============================================
``Laplacian()``                                ``laplacian``: sum_i d2f/dx_i^2 (as "laplacian")
``Laplacian(dims=[0, 1])``                     ``laplacian``: sum over the listed inputs only
``Laplacian(weights=sigma)``                   ``laplacian``: tr(sigma sigma^T H) = sum_k sigma_k^T H sigma_k,
                                               sigma (d, r) for all samples or (N, d, r) per sample
``Laplacian(samples=r, distribution=...)``     ``laplacian``: the Hutchinson estimate (1/r) sum_k v_k^T H v_k
                                               with v_k i.i.d. per sample, Rademacher (+-1) or standard
                                               Gaussian entries; unbiased, cost independent of d
``Bilaplacian()``                              ``bilaplacian``: sum_ij d4f/dx_i^2 dx_j^2 (dims= as above)
``Bilaplacian(samples=r)``                     ``bilaplacian``: (1/(3r)) sum_k D^4 f[v_k, v_k, v_k, v_k],
                                               v_k standard Gaussian per sample; unbiased
=============================================  ==============================================

Random directions come from ``generator`` (a ``torch.Generator`` on x's
device; the default generator when None): the same generator state gives
the same estimate. The variance of the Laplacian estimate per sample is
(2/r) (||H||_F^2 - sum_i H_ii^2) for Rademacher and (2/r) ||H||_F^2 for
Gaussian directions (H symmetric).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

DISTRIBUTIONS: tuple[str, ...] = ("rademacher", "gaussian")


def _check_samples(samples: object, name: str) -> int | None:
    if samples is None:
        return None
    if isinstance(samples, bool) or not isinstance(samples, int):
        raise TypeError(f"{name}(samples=...) must be an int >= 1, got {samples!r}")
    if samples < 1:
        raise ValueError(f"{name}(samples=...) must be >= 1, got {samples}")
    return samples


def _check_generator(generator: object, name: str) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name}(generator=...) must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def _check_dims(dims: object, name: str) -> tuple[int, ...] | None:
    if dims is None:
        return None
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (Sequence, Tensor)):
        raise TypeError(f"{name}(dims=...) must be a sequence of input indices, got {type(dims).__name__}")
    values = dims.tolist() if isinstance(dims, Tensor) else list(dims)
    for entry in values:
        if isinstance(entry, bool) or not isinstance(entry, int):
            raise TypeError(f"{name}(dims=...) must hold integer indices, got {entry!r}")
    if not values:
        raise ValueError(f"{name}(dims=...) must name at least one input")
    return tuple(values)


@dataclass(frozen=True, eq=False)
class Laplacian:
    """A Laplacian-type request: exact, over some inputs, weighted by sigma, or randomized (see the module docstring).

    Args:
        dims: the input indices summed over (negative indices count from the
            end; no repeats). None: every input.
        weights: sigma, (d, r) for every sample or (N, d, r) per sample, in
            x's dtype and on x's device; the result is tr(sigma sigma^T H).
            It may require grad (the result is differentiable in it).
        samples: r > 0 random directions per sample (the Hutchinson estimate).
        distribution: "rademacher" (default) or "gaussian", for ``samples``.
        generator: the torch.Generator the directions are drawn from.

    ``weights`` and ``samples`` exclude each other; ``dims`` restricts the
    random directions to the listed inputs, and cannot be combined with ``weights``.
    """

    dims: Sequence[int] | None = None
    weights: Tensor | None = field(default=None, repr=False)
    samples: int | None = None
    distribution: str = "rademacher"
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _check_dims(self.dims, "Laplacian"))
        object.__setattr__(self, "samples", _check_samples(self.samples, "Laplacian"))
        _check_generator(self.generator, "Laplacian")
        if self.weights is not None and not isinstance(self.weights, Tensor):
            raise TypeError(f"Laplacian(weights=...) must be a tensor (d, r) or (N, d, r), got "
                            f"{type(self.weights).__name__}")
        if self.weights is not None and self.samples is not None:
            raise ValueError("Laplacian: pass weights= or samples=, not both")
        if self.weights is not None and self.dims is not None:
            raise ValueError("Laplacian: pass weights= or dims=, not both (weights already choose the directions)")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"Laplacian(distribution=...) must be one of {DISTRIBUTIONS}, got {self.distribution!r}")

    @property
    def is_plain(self) -> bool:
        """True for Laplacian(): the same as hessian="laplacian"."""
        return self.dims is None and self.weights is None and self.samples is None


@dataclass(frozen=True, eq=False)
class Bilaplacian:
    """The bi-Laplacian sum_ij d4f/dx_i^2 dx_j^2, exact, over some inputs, or randomized (module docstring).

    Args:
        dims: the input indices (i and j run over them); None: every input.
        samples: r > 0 Gaussian directions per sample (the unbiased estimate
            (1/(3r)) sum_k D^4 f[v_k]^4); None: exact.
        generator: the torch.Generator the directions are drawn from.
    """

    dims: Sequence[int] | None = None
    samples: int | None = None
    generator: torch.Generator | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _check_dims(self.dims, "Bilaplacian"))
        object.__setattr__(self, "samples", _check_samples(self.samples, "Bilaplacian"))
        _check_generator(self.generator, "Bilaplacian")


_BITS_PER_WORD = 62


def _random_signs(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """+-1 entries of ``shape``, independent and equally likely, 62 per random int64 (the RNG is the cost)."""
    count = math.prod(shape)
    words = torch.randint(0, 1 << _BITS_PER_WORD, (-(-count // _BITS_PER_WORD), 1), generator=generator,
                          dtype=torch.int64, device=like.device)
    shifts = torch.arange(_BITS_PER_WORD, dtype=torch.int64, device=like.device)
    bits = ((words >> shifts) & 1).reshape(-1)[:count].reshape(shape)
    return bits.to(like.dtype) * 2 - 1


def random_directions(
    n: int, d: int, samples: int, distribution: str, generator: torch.Generator | None, like: Tensor,
    dims: tuple[int, ...] | None = None,
) -> Tensor:
    """(n, d, samples) i.i.d. directions per sample (zero outside ``dims`` when given), from ``generator``."""
    if generator is not None and generator.device.type != like.device.type:
        raise ValueError(
            f"generator is on {generator.device} but x is on {like.device}: pass a torch.Generator(device="
            f"{str(like.device)!r})"
        )
    width = d if dims is None else len(dims)
    shape = (n, width, samples)
    if distribution == "gaussian":
        values = torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
    else:
        values = _random_signs(shape, generator, like)
    if dims is None:
        return values
    full = like.new_zeros((n, d, samples))
    full[:, list(dims)] = values
    return full


def laplacian_directions(request: Laplacian, x: Tensor, dims: tuple[int, ...] | None) -> Tensor:
    """sigma for tr(sigma sigma^T H): (d, r) shared or (N, d, r) per sample, for a weighted or randomized request.

    ``dims`` is the request's dims normalised into range(d) (or None).
    """
    n, d = x.shape
    if request.samples is not None:
        directions = random_directions(n, d, request.samples, request.distribution, request.generator, x, dims)
        return directions / math.sqrt(request.samples)
    weights = request.weights
    assert weights is not None
    if weights.dtype != x.dtype:
        raise TypeError(f"Laplacian(weights=...) must have x's dtype {x.dtype}, got {weights.dtype}")
    if weights.device != x.device:
        raise ValueError(f"Laplacian(weights=...) is on {weights.device} but x is on {x.device}")
    shared = weights.dim() == 2 and weights.shape[0] == d
    per_sample = weights.dim() == 3 and weights.shape[:2] == (n, d)
    if not (shared or per_sample) or weights.shape[-1] == 0:
        raise ValueError(
            f"Laplacian(weights=...) must have shape (d, r) = ({d}, r) or (N, d, r) = ({n}, {d}, r) with r >= 1, "
            f"got {tuple(weights.shape)}"
        )
    return weights
