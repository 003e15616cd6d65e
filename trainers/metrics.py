"""The fixed names of the per-epoch and per-batch metrics.

Trackers log these names and ``analysis`` reads them back, so changing one
is a breaking change for every stored study. All are means over the epoch's
batches unless said otherwise; accuracies come from a forward pass, with no
inference at test time.

A *layer* is one edge's weight together with its bias (``trainers.optimizers``).
Its update Delta w is the step the optimizer applied, eta_theta times the
optimizer's direction (momentum, Adam's scaling, LARS's or LALR's layer
factor included), so with plain SGD Delta w = eta_theta g. Per epoch, with
bars for means over the epoch's batches,

- ``update_ratio/layer_i`` = mean ||w_i|| / mean ||Delta w_i||, the ratio
  ||w|| / (eta ||dw||) of Chen et al. 2025, Fig 2a (w before the step);
- ``effective_lr/layer_i`` = mean ||Delta w_i|| / mean ||g_i||, the rate the
  layer actually moved at (eta_theta exactly for SGD without momentum).

Every ``trainer.log_every`` batches the per-batch values of the parameter
gradient norm and the update ratio are logged under ``batch/`` with the
global batch index (epoch * batches per epoch + batch) as the step.
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
UPDATE_RATIO = "update_ratio/layer_{}"  # ||w_i|| / ||Delta w_i||, see above
EFFECTIVE_LR = "effective_lr/layer_{}"  # ||Delta w_i|| / ||g_i||, see above
BATCH = "batch/"  # prefix of the per-batch series, logged every k batches


def state_grad_norm(node: int) -> str:
    return STATE_GRAD_NORM.format(node)


def param_grad_norm(layer: int) -> str:
    return PARAM_GRAD_NORM.format(layer)


def update_ratio(layer: int) -> str:
    return UPDATE_RATIO.format(layer)


def effective_lr(layer: int) -> str:
    return EFFECTIVE_LR.format(layer)


def batch(name: str) -> str:
    """The per-batch series of metric ``name``, e.g. ``batch/update_ratio/layer_1``."""
    return BATCH + name
