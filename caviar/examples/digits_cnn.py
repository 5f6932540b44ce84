"""A small CNN on the 8x8 handwritten digits: the example of a PyTorch model tuned by caviar.

Copy it and change the three parts: which hyperparameters the model takes, the model, the
optimizer. The job is jobs/digits_cnn.toml:

    python -m caviar parallel digits_cnn          # caviar mode: a sweep of its rate, decay and width
    python -m caviar babysit digits_cnn           # panda mode: one model, babysat

Each image arrives as a row of 64 standardized pixels; `input_shape` makes it 1x8x8 again. Two
conv-BN-ReLU-pool stages (8x8 -> 4x4 -> 2x2), then a linear layer to the 10 class scores, trained
with softmax cross-entropy (TorchTrainer's default loss) by AdamW.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from caviar.torch import TorchTrainer


class DigitsCNN(TorchTrainer):
    """conv(3x3, c) - BN - ReLU - maxpool - conv(3x3, 2c) - BN - ReLU - maxpool - linear, AdamW."""

    hyperparameters = {**TorchTrainer.hyperparameters, "channels": int, "beta1": float}
    defaults = {**TorchTrainer.defaults, "channels": 8, "beta1": 0.9, "learning_rate": 3e-3, "epochs": 10}
    mutable = (*TorchTrainer.mutable, "beta1")
    input_shape = (1, 8, 8)

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        full = super().check_config(config)
        if full["channels"] < 1:
            raise ValueError(f"channels: must be >= 1, got {full['channels']}")
        if not 0 <= full["beta1"] < 1:
            raise ValueError(f"beta1: must lie in [0, 1), got {full['beta1']}")
        return full

    def build_model(self, config: Mapping[str, Any], data: Any) -> nn.Module:
        c = config["channels"]
        return nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c, 2 * c, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(2 * c * 2 * 2, int(data.n_classes)),
        )

    def build_optimizer(self, config: Mapping[str, Any], parameters: Any) -> torch.optim.Optimizer:
        return torch.optim.AdamW(parameters, lr=config["learning_rate"], betas=(config["beta1"], 0.999),
                                 weight_decay=config["weight_decay"])

    def set_hyperparameters(self, **changes: Any) -> None:
        """As TorchTrainer's, and beta1 into AdamW's betas."""
        super().set_hyperparameters(**changes)
        if "beta1" in changes:
            for group in self.optimizer.param_groups:
                group["betas"] = (self.config["beta1"], group["betas"][1])
