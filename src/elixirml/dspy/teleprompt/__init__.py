"""``dspy.teleprompt``: the optimizers (DSPy's teleprompters)."""

from __future__ import annotations

from ...optimizers import (
    COPRO,
    GEPA,
    SIMBA,
    BootstrapFewShot,
    BootstrapFewShotWithRandomSearch,
    Ensemble,
    KNNFewShot,
    LabeledFewShot,
    MIPROv2,
)

__all__ = [
    "COPRO",
    "GEPA",
    "SIMBA",
    "BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch",
    "Ensemble",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
]
