"""Which slots a request needs, and the canonical second-order tensor read back from them.

  request      second-order slots                              S
  none         none                                            1 + d
  laplacian    one collapsed slot  sum_i d2/dx_i^2             2 + d
               (over the request's dims when given)
  diagonal     pairs (i, i)                                    1 + 2d
  rows R       pairs (r, j) for r in R, j < d, in that order   1 + d + k d
  full         pairs i <= j                                    1 + d + d(d+1)/2

The tangents are the d unit directions of the input. Rows keep the
requested order (no gather on the way out; the k(k-1)/2 pairs that two
requested rows share are computed twice); the full Hessian stores the upper
triangle and is read back through an index computed on the tensor's device
(no host-to-device copy: the call stays capturable in a CUDA graph).
"""

from __future__ import annotations

from torch import Tensor

from hoderiv_ext.core.requests import HessianRequest
from hoderiv_ext.ops.jet_composite import upper_triangle_index
from hoderiv_ext.ops.layout import JetLayout, layout_cache

__all__ = ["layout_for", "second_from_slots", "upper_triangle_index"]


@layout_cache(256)
def layout_for(request: HessianRequest, d: int) -> JetLayout:
    """The jet layout of ``request`` for d inputs (see the module docstring).

    Cached: a layout holds only integers (no tensor that could carry a mode or a device).
    """
    if request.kind == "laplacian":
        return JetLayout(d, collapsed=request.dims if request.dims is not None else tuple(range(d)))
    if request.kind == "none":
        return JetLayout(d)
    if request.kind == "diagonal":
        return JetLayout(d, pairs=tuple((i, i) for i in range(d)))
    if request.kind == "full":
        return JetLayout(d, pairs=tuple((i, j) for i in range(d) for j in range(i, d)))
    return JetLayout(d, pairs=tuple((r, j) for r in request.rows for j in range(d)))


def second_from_slots(second: Tensor, request: HessianRequest, d: int) -> Tensor | None:
    """The canonical second-order tensor (:mod:`hoderiv_ext.core.results`) from the slots (N, s, o)."""
    n, _, o = second.shape
    if request.kind == "none":
        return None
    if request.kind == "laplacian":
        return second[:, 0]
    if request.kind == "diagonal":
        return second.transpose(1, 2)
    if request.kind == "rows":
        return second.reshape(n, len(request.rows), d, o).permute(0, 3, 1, 2)
    full = second.index_select(1, upper_triangle_index(d, second.device))
    return full.reshape(n, d, d, o).permute(0, 3, 1, 2)
