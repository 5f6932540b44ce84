"""PyTorch in caviar (the optional `torch` extra): `TorchTrainer`, a base class that turns a model,
an optimizer and a loss into a caviar Trainer. `import caviar` never imports this package, nor torch.

    trainer.py    TorchTrainer: epochs, metrics, evaluation, hyperparameter changes, save/restore
    state.py      optimizer and RNG states as named NumPy arrays, and back (pure functions)
    placement.py  the device and threads Ray gave a trial
"""

from __future__ import annotations

from caviar.torch.trainer import TorchTrainer

__all__ = ["TorchTrainer"]
