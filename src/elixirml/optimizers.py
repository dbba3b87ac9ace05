"""Optimizers (``em.optimizers``): the few-shot, search and reflective optimizers.

LabeledFewShot, BootstrapFewShot, RandomSearch, MIPRO, VariableSearch, GEPA, SIMBA, COPRO,
KNNFewShot and Ensemble.

DSPy's names are aliases: ``BootstrapFewShotWithRandomSearch`` (RandomSearch) and ``MIPROv2`` (MIPRO).
"""

from .optimize import (
    COPRO,
    GEPA,
    MIPRO,
    SIMBA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    Ensemble,
    KNNFewShot,
    LabeledFewShot,
    MIPROv2,
    OptimizationResult,
    Optimizer,
    RandomSearch,
    Trial,
    VariableSearch,
    majority,
)

__all__ = [
    "COPRO",
    "GEPA",
    "MIPRO",
    "SIMBA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "Ensemble",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
    "OptimizationResult",
    "Optimizer",
    "RandomSearch",
    "Trial",
    "VariableSearch",
    "majority",
]
