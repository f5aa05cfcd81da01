"""Exceptions the package raises for calls it cannot serve as asked."""

from __future__ import annotations


class NotServed(RuntimeError):
    """The compiled Taylor engine (``backend="kernel"``) cannot serve this call.

    ``reason`` says why (the unsupported layer, dtype, device or request);
    ``backend="auto"`` would use the autograd engine instead, and
    ``backend="autograd"`` always can.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"backend='kernel' cannot serve this call: {reason}")
        self.reason = reason
