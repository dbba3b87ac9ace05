"""Optimizers (``em.optimizers``): LabeledFewShot, BootstrapFewShot, RandomSearch, MIPRO, VariableSearch.

DSPy's names are aliases: ``BootstrapFewShotWithRandomSearch`` (RandomSearch) and ``MIPROv2`` (MIPRO).
"""

from .optimize import (
    GEPA,
    MIPRO,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    LabeledFewShot,
    MIPROv2,
    OptimizationResult,
    Optimizer,
    RandomSearch,
    Trial,
    VariableSearch,
)

__all__ = [
    "MIPRO",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "GEPA",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "Optimizer",
    "RandomSearch",
    "Trial",
    "VariableSearch",
]
