r"""A PyTorch reference of the platform's predictive-coding MLP and of the
hierarchical convolutional network of Chen et al. 2025, Table 1.

Written as a PyTorch user would write it: eager mode, ``nn.Linear`` layers,
autograd for both dF/dv and dF/dtheta. It follows ``trainers`` exactly so
that ``parity.py`` can compare the two and the timing compares like with
like:

* states are post-activation values, v_i = f(v_{i-1} W_i + b_i) after a
  forward pass, and the logits are read from the top state v_L; in the
  convolutional network (:class:`Chain`, built from
  ``conf/model/hierarchical.yaml``) each W_i is an edge, a convolution
  (zero padding that keeps the size, as Flax's ``SAME``), then maybe a
  max-pooling, a flattening and dense layers, and its transpose is the
  transposed convolution, max-unpooling at the forward pass's maxima and the
  transposed dense weight;
* HPC (Chen et al. 2025, Eq 2):
  :math:`F = \tfrac12 \sum_i \|\epsilon^f_i\|^2 + \beta C`;
* BiPC Eq 10:
  :math:`F = \tfrac12 \sum_i \|\epsilon^f_i + \epsilon^b_i\|^2 + \beta (C^f + C^b)`,
  with the feedback prediction f(v_{i+1} W_{i+1}^T), no feedback error on
  the top hidden state and C^b the input reconstruction (optional);
* inference: ``inference_steps`` plain SGD steps on the batch *sum* of F,
  v <- v - eta_v dF/dv;
* learning: one optimizer step on dF/dtheta of the batch *mean* of F at the
  relaxed states.

Timing run on Fashion-MNIST (CPU):

    python benchmarks/torch_ref.py --epochs 2
    python benchmarks/torch_ref.py --model hierarchical --width 0.0625
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

import cli
import fashion_mnist

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
}


class Layered(nn.Module):
    """Hidden nodes 1..L in a chain: ``predict(i, v)`` maps node i to node
    i+1 (the logits for i = L); subclasses define it and ``num_hidden``."""

    num_hidden: int

    def predict(self, i: int, v: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        states, v = [], x
        for i in range(self.num_hidden):
            v = self.predict(i, v)
            states.append(v)
        return states, self.predict(self.num_hidden, v)


class MLP(Layered):
    """Layer sizes ``(d_0, ..., d_L, d_out)``; hidden nodes 1..L hold states."""

    def __init__(self, sizes: Sequence[int], activation: str = "tanh"):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out) for d_in, d_out in zip(sizes[:-1], sizes[1:])
        )
        self.act = ACTIVATIONS[activation]

    @property
    def num_hidden(self) -> int:
        return len(self.layers) - 1

    def predict(self, i: int, v: Tensor) -> Tensor:
        """The prediction of node i+1 from node i (the logits for the last)."""
        u = self.layers[i](v)
        return u if i == self.num_hidden else self.act(u)

    def feedback(self, i: int, v_above: Tensor, v: Tensor) -> Tensor:
        """The prediction of node i (now at ``v``) from node i+1 through the
        transposed weight of layer i, without bias; no activation on the
        input node."""
        u = v_above @ self.layers[i].weight
        return u if i == 0 else self.act(u)


CONF_MODEL = Path(__file__).resolve().parent.parent / "conf" / "model"


class FlattenNHWC(nn.Module):
    """Flattens NCHW maps in NHWC order, as Flax does, so that the dense
    weights after it carry over from ours."""

    def forward(self, v: Tensor) -> Tensor:
        return v.permute(0, 2, 3, 1).reshape(len(v), -1)


class Chain(Layered):
    """A feedforward chain of edges declared as in ``conf/model/*.yaml``
    (the hierarchical network of Table 1): edge i (named ``names[i]``) maps
    node i to node i+1 through its ops (``conv``, ``maxpool``, ``flatten``,
    ``dense``); the states are NCHW images until the flattening. ``width``
    scales every ``features`` but the classes, rounding as the platform
    does."""

    def __init__(self, edges, in_shape=(1, 28, 28), classes=10, width=1.0, act="tanh"):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.names = [edge["name"] for edge in edges]
        self.edges = nn.ModuleList()
        channels, size = in_shape[0], in_shape[1:]
        for i, edge in enumerate(edges):
            modules = nn.ModuleList()
            for op in edge["ops"]:
                name = op["op"]
                features = op.get("features", 0)
                if name in ("conv", "dense"):
                    # As the platform: 0 into the output means the classes.
                    if i == len(edges) - 1:
                        features = features or classes
                    else:
                        features = max(1, round(features * width))
                if name == "conv":
                    k = op.get("kernel", 3)
                    if op.get("stride", 1) != 1 or k % 2 == 0:
                        raise ValueError("the reference has odd kernels, stride 1 only")
                    modules.append(nn.Conv2d(channels, features, k, padding=k // 2))
                    channels = features
                elif name == "maxpool":
                    w = op.get("window", 2)
                    modules.append(nn.MaxPool2d(w, return_indices=True))
                    size = tuple(s // w for s in size)
                elif name == "flatten":
                    modules.append(FlattenNHWC())
                    channels, size = channels * size[0] * size[1], ()
                else:
                    modules.append(nn.Linear(channels, features))
                    channels = features
            self.edges.append(modules)

    @classmethod
    def from_config(cls, model: str = "hierarchical", width: float = 1.0) -> Chain:
        cfg = yaml.safe_load((CONF_MODEL / f"{model}.yaml").read_text())
        if any(e.get("kind", "forward") != "forward" for e in cfg["edges"]):
            raise ValueError(f"model {model!r} is not a feedforward chain")
        return cls(cfg["edges"], width=width, act=cfg.get("activation", "tanh"))

    @property
    def num_hidden(self) -> int:
        return len(self.edges) - 1

    @property
    def layers(self) -> list[nn.Module]:
        weighted = (nn.Conv2d, nn.Linear)
        return [m for ops in self.edges for m in ops if isinstance(m, weighted)]

    def _run_edge(self, i: int, v: Tensor) -> tuple[Tensor, list]:
        """Edge i at ``v``, and the input shape (and pooling indices) of
        each op, which its transpose needs."""
        trace = []
        for module in self.edges[i]:
            shape = v.shape
            if isinstance(module, nn.MaxPool2d):
                v, indices = module(v)
                trace.append((shape, indices))
            else:
                v = module(v)
                trace.append((shape, None))
        return v, trace

    def predict(self, i: int, v: Tensor) -> Tensor:
        u = self._run_edge(i, v)[0]
        return u if i == self.num_hidden else self.act(u)

    def feedback(self, i: int, v_above: Tensor, v: Tensor) -> Tensor:
        """Node i's prediction from node i+1 through the transpose of edge i
        taken at node i's state ``v`` (max-pooling routes to the maxima of
        the forward pass there); no bias; no activation on the input."""
        u = v_above
        for module, (shape, indices) in reversed(
            list(zip(self.edges[i], self._run_edge(i, v)[1]))
        ):
            if isinstance(module, nn.MaxPool2d):
                u = F.max_unpool2d(
                    u, indices, module.kernel_size, output_size=shape[-2:]
                )
            elif isinstance(module, FlattenNHWC):
                c, h, w = shape[1:]
                u = u.reshape(len(u), h, w, c).permute(0, 3, 1, 2)
            elif isinstance(module, nn.Conv2d):
                u = F.conv_transpose2d(u, module.weight, padding=module.padding)
            else:
                u = u @ module.weight
        return u if i == 0 else self.act(u)


def init_like_flax(net: MLP | Chain) -> None:
    """Flax's ``Dense`` and ``Conv`` initialisation, as the platform's: LeCun
    normal weights (truncated at two standard deviations, fan-in the
    kernel's inputs) and zero biases."""
    with torch.no_grad():
        for layer in net.layers:
            fan_in = layer.weight[0].numel()
            # 0.8796 is the standard deviation of a unit normal cut at +-2.
            std = fan_in**-0.5 / 0.87962566103423978
            nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)
            nn.init.zeros_(layer.bias)


def _half_sq(u: Tensor) -> Tensor:
    return 0.5 * u.square().flatten(1).sum(-1)


def output_loss(kind: str, logits: Tensor, labels: Tensor) -> Tensor:
    """C per sample: cross-entropy, or 1/2 ||onehot(y) - logits||^2 (``mse``)."""
    if kind == "cross_entropy":
        return F.cross_entropy(logits, labels, reduction="none")
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return _half_sq(onehot - logits)


def hpc_energy(net: MLP | Chain, states, x, y, beta: float, loss="mse") -> Tensor:
    """Eq 2 per sample."""
    below = [x, *states[:-1]]
    internal = sum(
        _half_sq(v - net.predict(i, u)) for i, (v, u) in enumerate(zip(states, below))
    )
    logits = net.predict(net.num_hidden, states[-1])
    return internal + beta * output_loss(loss, logits, y)


def bipc_energy(
    net: MLP | Chain,
    states,
    x,
    y,
    beta: float,
    loss: str = "cross_entropy",
    input_feedback: str = "none",
) -> Tensor:
    """Eq 10 per sample."""
    below = [x, *states[:-1]]
    eps_f = [v - net.predict(i, u) for i, (v, u) in enumerate(zip(states, below))]
    internal = _half_sq(eps_f[-1])
    for i in range(net.num_hidden - 1):
        eps_b = states[i] - net.feedback(i + 1, states[i + 1], states[i])
        internal = internal + _half_sq(eps_f[i] + eps_b)

    external = output_loss(loss, net.predict(net.num_hidden, states[-1]), y)
    if input_feedback == "reconstruction":
        external = external + _half_sq(x - net.feedback(0, states[0], x))
    return internal + beta * external


def make_energy(name: str, loss: str, input_feedback: str = "none"):
    """``(net, states, x, y, beta) -> F`` per sample, for ``hpc`` or ``bipc``."""
    if name == "hpc":
        return lambda net, s, x, y, beta: hpc_energy(net, s, x, y, beta, loss)
    if name == "bipc":
        return lambda net, s, x, y, beta: bipc_energy(
            net, s, x, y, beta, loss, input_feedback
        )
    raise ValueError(f"energy {name!r} is not in the reference; use hpc or bipc.")


class Step(NamedTuple):
    """One train step: the relaxed states, F summed over the batch before
    inference and F averaged over the batch after it, and the logits of the
    forward pass."""

    states: list[Tensor]
    energy_start: Tensor
    energy_end: Tensor
    logits: Tensor


def relax(energy, net: nn.Module, states, x, y, beta, steps: int, state_lr: float):
    """``steps`` SGD steps on the batch sum of F; returns the states and the
    summed F before the first step."""
    states = [s.detach().requires_grad_() for s in states]
    energy_start = None
    for _ in range(steps):
        total = energy(net, states, x, y, beta).sum()
        grads = torch.autograd.grad(total, states)
        with torch.no_grad():
            for s, g in zip(states, grads):
                s.sub_(state_lr * g)
        if energy_start is None:
            energy_start = total.detach()
    return [s.detach() for s in states], energy_start


def train_step(
    energy,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    beta: float,
    steps: int,
    state_lr: float,
) -> Step:
    """Inference from a forward pass, then one step on the parameters."""
    with torch.no_grad():
        states, logits = net(x)
    states, energy_start = relax(energy, net, states, x, y, beta, steps, state_lr)

    optimizer.zero_grad()
    energy_end = energy(net, states, x, y, beta).mean()
    energy_end.backward()
    optimizer.step()
    return Step(states, energy_start, energy_end.detach(), logits)


def accuracy(net: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (net(x)[1].argmax(-1) == y).double().mean().item()


def main() -> None:
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument("--energy", choices=["hpc", "bipc"], default="hpc")
    p.add_argument("--model", choices=["mlp", "hierarchical"], default="mlp")
    p.add_argument("--width", type=float, default=0.0625, help="hierarchical only")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    data = fashion_mnist.load(args.data_dir)
    if args.model == "mlp":
        net, shape = MLP((784, *args.hidden, 10)), (-1, 784)
    else:
        net, shape = Chain.from_config(args.model, args.width), (-1, 1, 28, 28)
    init_like_flax(net)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss = "mse" if args.energy == "hpc" else "cross_entropy"
    energy = make_energy(args.energy, loss)
    test_x = torch.from_numpy(data.test_x).reshape(shape)
    test_y = torch.from_numpy(data.test_y).long()

    def train_epoch(epoch: int) -> int:
        count = 0
        for xb, yb in fashion_mnist.batches(
            data, args.batch_size, args.seed + epoch, args.max_batches
        ):
            x, y = torch.from_numpy(xb).reshape(shape), torch.from_numpy(yb).long()
            train_step(
                energy,
                net,
                optimizer,
                x,
                y,
                args.beta,
                args.inference_steps,
                args.state_lr,
            )
            count += 1
        return count

    name = "torch" if args.model == "mlp" else f"torch-{args.model}"
    cli.run_epochs(
        f"{name}-{torch.__version__}",
        args,
        data,
        train_epoch,
        lambda: accuracy(net, test_x, test_y),
    )


if __name__ == "__main__":
    main()
