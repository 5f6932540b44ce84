"""The built-in NumPy network: layers (forward/backward pairs), optimizers, and the MLP trainer.

`TRAINERS` lists the trainers this package gives jobs by short name (`[model] trainer = "mlp"`);
the trainer registry (`caviar.trainers.registry`) reads it, so no module outside `nn/` names them.
"""

from __future__ import annotations

from caviar.nn.mlp import MLP_HYPERPARAMETERS, MLPConfig, MLPTrainer

TRAINERS = {"mlp": "caviar.nn.mlp:MLPTrainer"}

__all__ = ["MLP_HYPERPARAMETERS", "MLPConfig", "MLPTrainer", "TRAINERS"]
