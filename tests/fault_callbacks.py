"""Test-only callbacks that inject faults: a SIGKILL (a crash) or NaN adapter weights."""

import os
import signal

import torch
from lightning.pytorch import Callback


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonAtStep(Callback):
    """Once ``step`` steps are done (and checkpointed), the adapters hold NaN: the next loss is not finite."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.adapters.parameters():
                    p.fill_(float("nan"))
