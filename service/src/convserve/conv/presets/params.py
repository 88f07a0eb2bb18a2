"""A preset's parameters: name, kind, default, range and how a value sent as text or JSON is
checked (:class:`PresetParam`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np

from convserve.conv.presets.kernels import ParamValue
from convserve.errors import InvalidArgumentError

__all__ = ["ParamKind", "PresetParam"]

ParamKind: TypeAlias = Literal["int", "float"]


def _fmt(number: float) -> str:
    return f"{number:g}"


def _parse_number(value: object) -> int | float | None:
    """``value`` as a Python number (numeric strings from a query string included), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class PresetParam:
    """One parameter of a preset, with its limits.

    Attributes
    ----------
    name : str
    kind : "int" or "float"
    default : int or float
    minimum, maximum : float
        Inclusive bounds.
    description : str
    odd : bool
        Only odd integers are allowed (kernel sizes that must have a centre).
    choices : tuple of int
        When not empty, the only values allowed (``minimum`` and ``maximum`` are their bounds).
    """

    name: str
    kind: ParamKind
    default: ParamValue
    minimum: float
    maximum: float
    description: str
    odd: bool = False
    choices: tuple[int, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words: ``"an odd integer with min 1 and max 31"``."""
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        what = {"int": "an odd integer" if self.odd else "an integer", "float": "a number"}
        return f"{what[self.kind]} with min {_fmt(self.minimum)} and max {_fmt(self.maximum)}"

    def validate(self, value: object, preset: str) -> ParamValue:
        """``value`` checked and converted to this parameter's kind.

        Raises
        ------
        InvalidArgumentError
            With ``field="preset_params.<name>"``, naming the allowed values.
        """
        number = _parse_number(value)
        problem = "is not a number" if number is None else self._problem(number)
        if number is None or problem is not None:
            raise InvalidArgumentError(
                f"{preset} parameter {self.name}={value!r} {problem}; allowed: {self.allowed()}",
                field=f"preset_params.{self.name}",
            )
        return int(number) if self.kind == "int" else float(number)

    def _problem(self, number: int | float) -> str | None:
        """What is wrong with ``number`` for this parameter, or None."""
        if isinstance(number, float) and not math.isfinite(number):
            return "is not finite"
        if self.kind == "int" and isinstance(number, float) and not number.is_integer():
            return "is not an integer"
        if self.choices and number not in self.choices:
            return "is not one of the choices"
        if number < self.minimum:
            return f"is below the minimum {_fmt(self.minimum)}"
        if number > self.maximum:
            return f"is above the maximum {_fmt(self.maximum)}"
        if self.odd and int(number) % 2 == 0:
            return "must be odd"
        return None

    def to_info(self) -> dict[str, Any]:
        """JSON for ``GET /v1/presets``."""
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "min": self.minimum,
            "max": self.maximum,
            "odd": self.odd,
            "choices": list(self.choices) or None,
            "description": self.description,
        }
