"""Why a file cannot be attacked white-box: every reason is an :class:`advcli.errors.AdvcliError`
with a one-line message, so a caller can fall back to black-box or transfer attacks and say why."""

from __future__ import annotations

from typing import Any

from ...errors import AdvcliError


class ConversionError(AdvcliError):
    """The ONNX graph cannot be turned into a torch module (malformed, too large, unknown semantics)."""


class UnsupportedOperators(ConversionError):
    """The graph uses operators (or domains) the converter does not implement; the message names them all."""


class ParityRefused(AdvcliError):
    """The converted module does not reproduce onnxruntime's outputs closely enough to craft attacks;
    `parity` holds the measured figures (a :class:`~advcli.runtime.onnx_import.parity.ParityReport`)."""

    def __init__(self, message: str, *, parity: Any = None) -> None:
        super().__init__(message)
        self.parity = parity
