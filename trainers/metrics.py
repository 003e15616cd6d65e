"""The fixed names of the per-epoch metrics.

Trackers log these names and ``analysis`` reads them back, so changing one
is a breaking change for every stored study. All are means over the epoch's
batches unless said otherwise; accuracies come from a forward pass, with no
inference at test time.
"""

from __future__ import annotations

TRAIN_LOSS = "train_loss"  # C of the forward pass, before inference
TRAIN_ACCURACY = "train_accuracy"  # forward pass on the training batches
VAL_ACCURACY = "val_accuracy"  # held out of the training split
TEST_ACCURACY = "test_accuracy"
ENERGY_START = "energy_start"  # F per sample at the forward-pass states
ENERGY_END = "energy_end"  # F per sample at the end of inference
INFERENCE_STEPS = "inference_steps"  # steps taken before convergence or N
DIVERGED = "diverged"  # 1.0 once a batch of this epoch diverged
DIVERGENCE_STEP = "divergence_step"  # global index of that batch, -1 if none
STATE_GRAD_NORM = "state_grad_norm/node_{}"  # |dF/dv_i|, hidden nodes 1..L
PARAM_GRAD_NORM = "param_grad_norm/layer_{}"  # |dF/dtheta_i|, layers 1..L+1


def state_grad_norm(node: int) -> str:
    return STATE_GRAD_NORM.format(node)


def param_grad_norm(layer: int) -> str:
    return PARAM_GRAD_NORM.format(layer)
