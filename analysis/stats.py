"""Statistics of an optimizer comparison: accuracy over seeds, divergence and
the stability of training curves.

Every function is pure and reads two tables:

``runs``
    one row per training run, with the columns ``run_id``, ``setting``,
    ``energy``, ``optimizer``, ``seed``, ``status``, ``diverged`` (bool),
    ``divergence_step`` (-1 if none), ``test_accuracy`` (a fraction, NaN when
    a diverged run has none), ``val_accuracy`` and ``train_loss``.
``history``
    a long table (``run_id``, ``key``, ``step``, ``value``) of metric
    histories: per epoch (step = epoch, 1 to E) ``train_loss``, the
    accuracies, ``param_grad_norm/layer_<i>``, ``state_grad_norm/node_<i>``,
    ``update_ratio/layer_<i>`` and ``effective_lr/layer_<i>``; every k
    training batches (step = global batch index) the same layer metrics
    under ``batch/``, e.g. ``batch/param_grad_norm/layer_<i>``.

Rows are used whatever their ``status``: filter ``runs`` first to leave out
runs that did not finish.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from trainers import metrics as m

GROUP = ("setting", "energy", "optimizer")
BATCH = m.BATCH
UPDATE_RATIO = m.UPDATE_RATIO
_LAYER = re.compile(r"layer_(\d+)$")


def layer_keys(history: pd.DataFrame, template: str) -> dict[int, str]:
    """The keys of ``history`` that match ``template`` (a name with ``{}`` for
    the layer, e.g. ``"batch/param_grad_norm/layer_{}"``), by layer index."""
    head = template.split("{")[0]
    found = {}
    for key in history["key"].unique():
        match = _LAYER.search(key)
        if key.startswith(head) and match and key == template.format(match[1]):
            found[int(match[1])] = key
    return dict(sorted(found.items()))


def series_by_run(
    history: pd.DataFrame, keys: Sequence[str]
) -> dict[tuple[str, str], np.ndarray]:
    """The values of each of ``keys`` for each run, in step order, by
    (run_id, key); a pair with no rows is absent."""
    rows = history[history["key"].isin(list(keys))].sort_values("step")
    return {
        pair: group["value"].to_numpy(dtype=float)
        for pair, group in rows.groupby(["run_id", "key"], sort=False)
    }


def mean_std_table(
    runs: pd.DataFrame,
    value: str = m.TEST_ACCURACY,
    index: Sequence[str] = ("setting", "energy"),
    columns: str = "optimizer",
) -> pd.DataFrame:
    """Mean, sample standard deviation and count of ``value`` over seeds.

    For each group of ``index`` and each value of ``columns``, with x_1..x_n
    the finite values of ``value`` in the group,

    .. math:: \\bar x = \\frac{1}{n} \\sum_s x_s, \\qquad
        s = \\sqrt{\\frac{1}{n - 1} \\sum_s (x_s - \\bar x)^2} \\quad (ddof = 1).

    A diverged run counts with its accuracy when it has one; a NaN value is
    left out, so ``n`` counts the runs that gave a number (see
    :func:`divergence_rate` for how many diverged). ``std`` is NaN when
    n < 2.

    Returns a table indexed by ``index`` whose columns are (``columns``
    value, ``"mean" | "std" | "n"``).
    """
    grouped = runs.groupby([*index, columns])[value]
    table = pd.DataFrame(
        {"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.count()}
    )
    wide = table.unstack(columns).swaplevel(0, 1, axis=1)
    order = [(c, s) for c in sorted(runs[columns].unique()) for s in table.columns]
    wide = wide.reindex(columns=pd.MultiIndex.from_tuples(order, names=[columns, None]))
    for column in [c for c in order if c[1] == "n"]:
        wide[column] = wide[column].fillna(0).astype(int)
    return wide


def coefficient_of_variation(x: Sequence[float] | np.ndarray) -> float:
    """std(x) / mean(x), with the sample standard deviation (ddof = 1).

    NaN and infinite values are dropped first. The result is NaN when fewer
    than two values remain or their mean is 0. Meant for positive series such
    as gradient norms; for a series with a trend (a norm that falls over
    training) it measures the trend as well as the fluctuation around it.
    """
    finite = _finite(x)
    if finite.size < 2 or finite.mean() == 0:
        return float("nan")
    return float(finite.std(ddof=1) / finite.mean())


def count_spikes(x: Sequence[float] | np.ndarray, factor: float = 10.0) -> int:
    """The number of points x_t (t >= 2) with x_t > factor * median(x_1..x_{t-1}).

    The median is over every earlier point (an expanding window, NaN values
    ignored), so the first point is never a spike; the inequality is strict.
    A NaN point is never a spike; an infinite one always is. A lasting jump
    counts once for each point until the jumped values make up half the
    history and lift the median. Meant for non-negative series such as
    gradient norms: with a median of 0 any positive point is a spike.
    """
    values = pd.Series(np.asarray(x, dtype=float))
    before = values.expanding().median().shift(1)
    return int((values > factor * before).sum())


def epochs_until_loss_stops_rising(losses: Sequence[float] | np.ndarray) -> int:
    """The last epoch at which the loss rose, 0 if it never did.

    With L_1..L_E the loss at epochs 1..E, epoch t >= 2 is a rise when
    L_t > L_{t-1} or L_t is not finite (a NaN or infinite loss counts as a
    rise, a finite loss after it does not). The result is the smallest k in
    0..E such that no epoch after k is a rise: 0 for a curve that never
    rises, E when the loss rose (or blew up) at the last epoch.
    """
    loss = np.asarray(losses, dtype=float)
    with np.errstate(invalid="ignore"):
        rises = ~np.isfinite(loss[1:]) | (loss[1:] > loss[:-1])
    epochs = np.flatnonzero(rises) + 2
    return int(epochs[-1]) if epochs.size else 0


def divergence_rate(runs: pd.DataFrame, by: Sequence[str] = GROUP) -> pd.DataFrame:
    """Per group of ``by``: ``n`` runs, ``diverged`` of them with
    ``diverged`` true, and ``rate`` = diverged / n."""
    grouped = runs.groupby(list(by))["diverged"]
    table = pd.DataFrame({"n": grouped.size(), "diverged": grouped.sum().astype(int)})
    table["rate"] = table["diverged"] / table["n"]
    return table


class DiffCI(NamedTuple):
    """mean(a) - mean(b) with a confidence interval [low, high] and the
    bootstrap ``method`` that gave it ("BCa", "percentile" or "none")."""

    difference: float
    low: float
    high: float
    method: str


def bootstrap_diff_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_resamples: int = 9999,
    seed: int = 0,
) -> DiffCI:
    """Bootstrap confidence interval of mean(a) - mean(b), a and b independent.

    Each sample is resampled with replacement on its own
    (``scipy.stats.bootstrap`` with ``paired=False``). The interval is the
    bias-corrected and accelerated (BCa) one; when BCa gives no finite
    bounds, which happens when a sample has no spread (its jackknife values
    are all equal), the percentile interval is used instead, and ``method``
    says which. A percentile interval of zero width means no spread was
    observed, not that the difference is certain.

    NaN and infinite values are dropped. With fewer than two values left in
    either sample there is nothing to resample: the bounds are NaN and
    ``method`` is ``"none"`` (the difference itself is NaN only when a sample
    is empty). With 3 seeds a sample has only 10 distinct resamples, and any
    bootstrap interval is too narrow: read it as a description of the seeds,
    not as a test.
    """
    a, b = _finite(a), _finite(b)
    difference = float(a.mean() - b.mean()) if a.size and b.size else float("nan")
    if a.size < 2 or b.size < 2:
        return DiffCI(difference, float("nan"), float("nan"), "none")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (a, b),
                _mean_difference,
                n_resamples=n_resamples,
                confidence_level=confidence,
                method=method,
                vectorized=True,
                rng=np.random.default_rng(seed),
            )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return DiffCI(difference, float(low), float(high), method)
    return DiffCI(difference, float("nan"), float("nan"), "none")


def stability_table(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, energy, optimizer), how steadily the runs trained.

    Columns:

    - ``n``: runs in the group;
    - ``divergence_rate``: as in :func:`divergence_rate`;
    - ``grad_norm_cv``: :func:`coefficient_of_variation` of each layer's
      parameter-gradient norm over training, averaged over a run's layers,
      then over runs;
    - ``spikes``: :func:`count_spikes` of the same series, summed over layers
      and runs (divide by ``n`` to compare groups of different sizes);
    - ``loss_stops_rising``: :func:`epochs_until_loss_stops_rising` of each
      run's ``train_loss`` per epoch, averaged over runs;
    - ``grad_norm_source``: ``"batch"`` when the history holds any
      ``batch/param_grad_norm/layer_<i>`` key (then those are used for every
      run, so that all groups are measured alike), else ``"epoch"``, or
      ``"none"`` when it holds neither.

    A run without a series contributes nothing to the averages and sums.
    """
    source, keys = gradient_norm_keys(history)
    found = series_by_run(history, [*keys.values(), m.TRAIN_LOSS])
    rows = []
    for run_id in runs["run_id"]:
        norms = [found[run_id, key] for key in keys.values() if (run_id, key) in found]
        rows.append(_run_stability(run_id, norms, found.get((run_id, m.TRAIN_LOSS))))
    per_run = runs[["run_id", *GROUP]].merge(pd.DataFrame(rows), on="run_id")
    grouped = per_run.groupby(list(GROUP))
    table = divergence_rate(runs)[["n", "rate"]].rename(
        columns={"rate": "divergence_rate"}
    )
    table["grad_norm_cv"] = grouped["cv"].mean()
    table["spikes"] = grouped["spikes"].sum()
    table["loss_stops_rising"] = grouped["loss"].mean()
    table["grad_norm_source"] = source
    return table


def gradient_norm_keys(history: pd.DataFrame) -> tuple[str, dict[int, str]]:
    """``("batch", keys)`` when ``history`` has batch-level parameter-gradient
    norms, else ``("epoch", keys)``, else ``("none", {})``; keys by layer."""
    batch = layer_keys(history, BATCH + m.PARAM_GRAD_NORM)
    if batch:
        return "batch", batch
    epoch = layer_keys(history, m.PARAM_GRAD_NORM)
    return ("epoch", epoch) if epoch else ("none", {})


def accuracy_differences(
    runs: pd.DataFrame,
    baseline: str = "adam",
    value: str = m.TEST_ACCURACY,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Per (setting, energy) and optimizer other than ``baseline``:
    mean(value of the optimizer) - mean(value of the baseline) over seeds,
    with the interval of :func:`bootstrap_diff_ci`.

    Columns ``difference``, ``low``, ``high``, ``method``, ``n`` (finite
    values of the optimizer) and ``n_baseline``. A group without baseline
    runs gets a row of NaN with ``n_baseline`` 0. Raises ``ValueError`` when
    no run at all used ``baseline``.
    """
    present = sorted(runs["optimizer"].unique())
    if baseline not in present:
        raise ValueError(
            f"baseline={baseline!r} has no runs; the optimizers are {present}."
        )
    rows = []
    for (setting, energy), group in runs.groupby(["setting", "energy"]):
        base = group.loc[group["optimizer"] == baseline, value]
        for optimizer in sorted(set(group["optimizer"]) - {baseline}):
            values = group.loc[group["optimizer"] == optimizer, value]
            ci = bootstrap_diff_ci(values, base, confidence, seed=seed)
            rows.append(
                {
                    "setting": setting,
                    "energy": energy,
                    "optimizer": optimizer,
                    **ci._asdict(),
                    "n": int(values.notna().sum()),
                    "n_baseline": int(base.notna().sum()),
                }
            )
    columns = [*GROUP, *DiffCI._fields, "n", "n_baseline"]
    return pd.DataFrame(rows, columns=columns).set_index(list(GROUP))


def _run_stability(
    run_id: str, norms: list[np.ndarray], loss: np.ndarray | None
) -> dict[str, object]:
    """One run's mean CV over layers, spikes summed over layers and the epoch
    its loss stopped rising (NaN where the series are missing)."""
    cvs = pd.Series([coefficient_of_variation(x) for x in norms], dtype=float)
    return {
        "run_id": run_id,
        "cv": cvs.mean(),
        "spikes": sum(count_spikes(x) for x in norms),
        "loss": np.nan if loss is None else epochs_until_loss_stops_rising(loss),
    }


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _finite(x: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(x, dtype=float)
    return values[np.isfinite(values)]
