"""Exceptions the package raises for calls it cannot serve as asked."""

from __future__ import annotations


class NotServed(RuntimeError):
    """The compiled Taylor engine (``backend="kernel"``) cannot serve this call.

    ``reason`` says why (the unsupported layer, dtype, device or request);
    ``backend="auto"`` would use the autograd engine instead, and
    ``backend="autograd"`` always can.
    """

    # No __init__ of its own: torch.compile traces raising and catching it (its message is built by __str__).

    @property
    def reason(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return f"backend='kernel' cannot serve this call: {self.reason}"
