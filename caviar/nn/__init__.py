"""The built-in NumPy network: layers (forward/backward pairs), optimizers, and the MLP trainer."""

from __future__ import annotations

from caviar.nn.mlp import MLP_HYPERPARAMETERS, MLPConfig, MLPTrainer

__all__ = ["MLP_HYPERPARAMETERS", "MLPConfig", "MLPTrainer"]
