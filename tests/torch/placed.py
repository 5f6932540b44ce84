"""A test trainer (not a test file): the example CNN, also reporting where Ray placed it.

Jobs name it `tests.torch.placed:PlacedCNN`; Ray workers import it by that path.
"""

from __future__ import annotations

import os

import torch

from caviar.examples.digits_cnn import DigitsCNN


class PlacedCNN(DigitsCNN):
    """Adds gpus_visible (entries of CUDA_VISIBLE_DEVICES), on_cuda (0/1) and threads (torch's)."""

    metrics = (*DigitsCNN.metrics, "gpus_visible", "on_cuda", "threads")

    def train_epoch(self) -> dict[str, float]:
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        return {**super().train_epoch(), "gpus_visible": float(len(visible)),
                "on_cuda": float(self.device.type == "cuda"), "threads": float(torch.get_num_threads())}
