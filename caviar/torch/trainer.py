"""`TorchTrainer`: a PyTorch model in caviar, from three parts the user gives.

A subclass names the hyperparameters it takes and builds, from a trial's config, the model
(`build_model`) and the optimizer (`build_optimizer`); the loss defaults to softmax cross-entropy
(`loss`). The base owns everything the drivers rely on, as the built-in trainer does: the epoch loop
(seeded data order, mini-batches), the metrics, evaluation, the exact save and restore of model,
optimizer and every random number generator, hyperparameter changes between epochs, and the
device and threads Ray gave the trial. Save and restore being caviar's, a subclass cannot break a
resume or a rollback.

Randomness: each trainer owns its generators (torch's, NumPy's legacy global one, Python's
`random`), seeded from the trial's seed. It swaps them in while it builds or trains and back out
afterwards, so dropout or a random augmentation in the user's model draws from the trial's own
stream, and trials that share a worker process, paused and resumed in any order, do not disturb
one another.
"""

from __future__ import annotations

import contextlib
import math
import random
import warnings
from typing import Any, ClassVar, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from caviar.torch import state as flat
from caviar.torch.placement import choose_device, choose_threads, ray_share

EVAL_BATCH = 4096   # rows per forward pass when scoring: bounds memory, not results


class TorchTrainer:
    """Base class of a PyTorch trainer; implements caviar's Trainer protocol.

    Subclass it and give:

        hyperparameters   {**TorchTrainer.hyperparameters, "width": int, ...}: every config key it takes
        defaults          {**TorchTrainer.defaults, "width": 64, ...}: values a job may leave out
        build_model(config, data) -> torch.nn.Module
        build_optimizer(config, parameters) -> torch.optim.Optimizer  (use config["learning_rate"] etc.)
        loss(outputs, targets) -> scalar tensor   (optional; default: softmax cross-entropy)
        input_shape = (1, 8, 8)  (optional) the shape of one example: the data's rows are reshaped to it

    `set_hyperparameters(learning_rate=..., weight_decay=...)` writes into every parameter group
    that holds the key (`learning_rate` is PyTorch's `lr`); other mutable keys (batch_size, or your
    own) go to `self.config`, where your code reads them.
    """

    metrics: ClassVar[tuple[str, ...]] = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
    hyperparameters: ClassVar[Mapping[str, type]] = {"learning_rate": float, "weight_decay": float,
                                                     "batch_size": int, "epochs": int}
    defaults: ClassVar[Mapping[str, Any]] = {"learning_rate": 1e-3, "weight_decay": 0.0, "batch_size": 64,
                                             "epochs": 10}
    mutable: ClassVar[tuple[str, ...]] = ("learning_rate", "weight_decay", "batch_size")
    input_shape: ClassVar[tuple[int, ...] | None] = None

    # ---- what a subclass gives ---------------------------------------------------------------------
    def build_model(self, config: Mapping[str, Any], data: Any) -> torch.nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build_model(config, data)")

    def build_optimizer(self, config: Mapping[str, Any], parameters: Iterator[torch.nn.Parameter]) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define build_optimizer(config, parameters)")

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch: outputs (N, C) class scores, targets (N,) class indices."""
        return F.cross_entropy(outputs, targets)

    def inputs(self, x: np.ndarray) -> torch.Tensor:
        """Feature rows (N, D) as the model's input: float32, reshaped to (N, *input_shape) if given."""
        tensor = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        return tensor.reshape(-1, *self.input_shape) if self.input_shape else tensor

    # ---- config --------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config with defaults filled in and numbers of the declared types; ValueError "key: problem"."""
        unknown = sorted(set(config) - set(cls.hyperparameters))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a hyperparameter of {cls.__name__} (it takes "
                             f"{', '.join(sorted(cls.hyperparameters))})")
        full = {**cls.defaults, **config}
        for key, kind in cls.hyperparameters.items():
            if key in full:
                full[key] = _typed(key, full[key], kind)
        for key, low, strict in (("learning_rate", 0, True), ("weight_decay", 0, False), ("batch_size", 1, False),
                                 ("epochs", 1, False)):
            if key in full and not (full[key] > low if strict else full[key] >= low):
                raise ValueError(f"{key}: must be {'>' if strict else '>='} {low}, got {full[key]!r}")
        return full

    # ---- construction --------------------------------------------------------------------------
    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.config = self.check_config(config)
        share = ray_share()
        threads = choose_threads(share)
        if threads is not None:
            torch.set_num_threads(threads)
        self.device = torch.device(choose_device(share, torch.cuda.is_available()))
        self._rng = _seeded_rngs(int(seed), self.device)
        self._order = torch.Generator().manual_seed(_derived(int(seed), 1))
        self.data = data
        self._train = self._tensors(data.x_train, data.y_train)
        self._valid = self._tensors(data.x_valid, data.y_valid)
        with self._own_rngs():
            self.model = self.build_model(self.config, data).to(self.device)
            self.optimizer = self.build_optimizer(self.config, self.model.parameters())
        self._fresh_optimizer = self.optimizer.state_dict()  # the structure a saved state is restored into
        self.epoch = 0

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows as tensors on the device. On the CPU they share memory with the arrays (in a sweep,
        the read-only copy in Ray's object store, one per node): nothing here writes to them."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return self.inputs(x).to(self.device), torch.as_tensor(np.asarray(y, dtype=np.int64)).to(self.device)

    @contextlib.contextmanager
    def _own_rngs(self) -> Iterator[None]:
        """This trainer's generators in place of the process's global ones, for the block."""
        saved = _global_rngs(self.device)
        _set_global_rngs(self._rng, self.device)
        try:
            yield
        finally:
            self._rng = _global_rngs(self.device)
            _set_global_rngs(saved, self.device)

    # ---- training ------------------------------------------------------------------------------
    def learning_rate(self) -> float:
        """The rate the next step uses (the first parameter group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training rows in a fresh seeded order (a last batch of one row is
        skipped: batch norm has no variance of one row), then the validation rows in eval mode.
        train_* are over the batches as trained (before each step). Non-finite values are reported,
        not raised: the drivers decide."""
        lr = self.learning_rate()
        x, y = self._train
        n, batch = int(y.shape[0]), int(self.config["batch_size"])
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        with self._own_rngs():
            order = torch.randperm(n, generator=self._order).to(self.device)
            self.model.train()
            for lo in range(0, n, batch):
                rows = order[lo:lo + batch]
                if rows.numel() < 2 and lo > 0:
                    break
                outputs = self.model(x[rows])
                loss = self.loss(outputs, y[rows])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_sum += loss.detach().double() * rows.numel()
                correct += _correct(outputs.detach(), y[rows])
                seen += rows.numel()
            self.epoch += 1
        val = self._score(*self._valid)
        return {"train_loss": float(loss_sum) / seen if seen else math.nan,
                "train_accuracy": int(correct) / seen if seen else math.nan,
                "val_loss": val["loss"], "val_accuracy": val["accuracy"], "learning_rate": lr}

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean loss and accuracy of the current model in eval mode on rows x (N, D), labels y (N,)."""
        return self._score(*self._tensors(x, y))

    @torch.no_grad()
    def _score(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        n = int(y.shape[0])
        if n == 0:
            return {"loss": math.nan, "accuracy": math.nan}
        self.model.eval()
        loss_sum, correct = 0.0, 0
        for lo in range(0, n, EVAL_BATCH):
            outputs = self.model(x[lo:lo + EVAL_BATCH])
            loss_sum += float(self.loss(outputs, y[lo:lo + EVAL_BATCH])) * int(outputs.shape[0])
            correct += int(_correct(outputs, y[lo:lo + EVAL_BATCH]))
        self.model.train()
        return {"loss": loss_sum / n, "accuracy": correct / n}

    # ---- changes between epochs -----------------------------------------------------------------
    def set_hyperparameters(self, **changes: Any) -> None:
        """Change any of `mutable` from the next step on; ValueError, nothing changed, for another key
        or a bad value. learning_rate and any key the optimizer's groups hold go into every group."""
        refused = sorted(set(changes) - set(self.mutable))
        if refused:
            raise ValueError(f"{refused[0]}: cannot be changed while training (mutable: {', '.join(self.mutable)})")
        config = self.check_config({**self.config, **changes})
        for key in changes:
            group_key = "lr" if key == "learning_rate" else key
            for group in self.optimizer.param_groups:
                if group_key in group:
                    group[group_key] = config[key]
        self.config = config

    def reshuffle(self, seed: int) -> None:
        """A fresh data order from `seed` (after a rollback, so the same path is not retraced)."""
        self._order = torch.Generator().manual_seed(_derived(int(seed), 1))

    # ---- save and restore ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of everything the next epoch depends on, as named arrays (see caviar.torch.state):
        "model.<name>" (parameters and buffers), the optimizer's "optim.*", "rng.*" (torch, NumPy,
        Python, the data order, and CUDA on a GPU), "epoch" and "hp.<mutable hyperparameter>"."""
        state = {f"model.{k}": flat.tensor_array(v) for k, v in self.model.state_dict().items()}
        state.update(flat.flatten_optimizer(self.optimizer.state_dict()))
        state["rng.torch"] = flat.tensor_array(self._rng["torch"])
        if "cuda" in self._rng:
            state["rng.cuda"] = flat.tensor_array(self._rng["cuda"])
        state.update(flat.encode_numpy_rng(self._rng["numpy"]))
        state.update(flat.encode_python_rng(self._rng["python"]))
        state["rng.data_order"] = flat.tensor_array(self._order.get_state())
        state["epoch"] = np.array(self.epoch, dtype=np.int64)
        state.update({f"hp.{k}": np.array(self.config[k]) for k in self.mutable if k in self.config})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict()` of a trainer built from the same config and class. Raises
        ValueError, changing nothing, when names or shapes do not fit this trainer."""
        model = self.model.state_dict()
        wanted = {f"model.{k}" for k in model} | {k for k in self.state_dict() if not k.startswith("optim.")}
        missing = sorted(wanted - set(state) - {"rng.cuda"})
        extra = sorted(k for k in set(state) - wanted if not k.startswith("optim.") and k != "rng.cuda")
        if missing or extra:
            raise ValueError(f"state: does not fit this trainer (missing {missing[:5]}, unexpected {extra[:5]})")
        for key, tensor in model.items():
            if tuple(np.shape(state[f"model.{key}"])) != tuple(tensor.shape):
                raise ValueError(f"state: model.{key} has shape {np.shape(state[f'model.{key}'])}, "
                                 f"expected {tuple(tensor.shape)}")
        optimizer = flat.unflatten_optimizer(state, self._fresh_optimizer, torch)
        config = self.check_config({**self.config, **{k[3:]: np.asarray(v).item() for k, v in state.items()
                                                     if k.startswith("hp.") and k[3:] in self.mutable}})
        rngs = {"torch": torch.from_numpy(np.array(state["rng.torch"], np.uint8)),
                "numpy": flat.decode_numpy_rng(state), "python": flat.decode_python_rng(state)}
        if self.device.type == "cuda":
            rngs["cuda"] = (torch.from_numpy(np.array(state["rng.cuda"], np.uint8)) if "rng.cuda" in state
                            else self._rng["cuda"])
        try:
            self.optimizer.load_state_dict(optimizer)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise ValueError(f"state: the optimizer's state does not fit this trainer ({exc})") from None
        self.model.load_state_dict({k: torch.from_numpy(np.array(state[f"model.{k}"])) for k in model})
        self._order.set_state(torch.from_numpy(np.array(state["rng.data_order"], np.uint8)))
        self._rng, self.config, self.epoch = rngs, config, int(state["epoch"])


# ---- helpers: typed values, seeds, the process's global generators -----------------------------------

def _typed(key: str, value: Any, kind: type) -> Any:
    """`value` as a `kind` (an int for a float is fine; a fraction for an int is not)."""
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if kind in (bool, str) and isinstance(value, kind):
        return value
    if kind is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, kind) and not isinstance(value, bool):
        return value
    raise ValueError(f"{key}: expected {'a whole number' if kind is int else 'a ' + kind.__name__}, got {value!r}")


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many rows' highest score is their class (0 when the outputs are not (N, C) scores)."""
    if outputs.ndim != 2 or targets.dtype != torch.int64:
        return torch.zeros((), dtype=torch.int64, device=outputs.device)
    return (outputs.argmax(dim=1) == targets).sum()


def _derived(seed: int, stream: int) -> int:
    """Independent 63-bit seeds from one trial seed (0: torch, 1: data order, 2: NumPy, 3: Python)."""
    return int(np.random.SeedSequence(seed, spawn_key=(stream,)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _seeded_rngs(seed: int, device: torch.device) -> dict[str, Any]:
    rngs = {"torch": torch.Generator().manual_seed(_derived(seed, 0)).get_state(),
            "numpy": np.random.RandomState(_derived(seed, 2) % 2**32).get_state(),
            "python": random.Random(_derived(seed, 3)).getstate()}
    if device.type == "cuda":
        rngs["cuda"] = torch.Generator(device=device).manual_seed(_derived(seed, 0)).get_state()
    return rngs


def _global_rngs(device: torch.device) -> dict[str, Any]:
    rngs = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        rngs["cuda"] = torch.cuda.get_rng_state(device)
    return rngs


def _set_global_rngs(rngs: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rngs["torch"])
    np.random.set_state(rngs["numpy"])
    random.setstate(rngs["python"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(rngs["cuda"], device)
