"""The trainer layer: the protocol every driver calls, how a job names its trainer, and the checks.

    protocol.py   Trainer (required) and TrainerExtras (optional parts the drivers use when present)
    registry.py   "mlp" or "package.module:Class" -> the class
    check.py      check_trainer(cls_or_obj): what a class lacks; checked_metrics: each epoch's report
    fit.py        check_job(job): does the job fit its trainer (metric, keys, values)?
"""

from __future__ import annotations

from caviar.trainers.check import check_trainer, checked_metrics
from caviar.trainers.fit import check_job, full_config
from caviar.trainers.protocol import Trainer, TrainerExtras
from caviar.trainers.registry import resolve_trainer

__all__ = ["Trainer", "TrainerExtras", "check_job", "check_trainer", "checked_metrics", "full_config",
           "resolve_trainer"]
