"""Pictures of a run: learning curves, assignment heat maps and a graph
drawn next to its coarsened graph. Host side (NumPy, matplotlib).

Figures are matplotlib `Figure` objects drawn off screen: no pyplot state,
no backend chosen for the caller. matplotlib and networkx are imported on
first use, so that commands which draw nothing start faster.
"""

from __future__ import annotations

import os
import threading
from typing import Dict, Sequence

import numpy as np

from diffpool_jax.tasks import METRICS


def import_in_background() -> threading.Thread:
  """Imports matplotlib's figure and Agg backend and networkx on a thread,
  so that a command that draws at its end imports them while its programs
  compile (XLA releases the GIL)."""
  def load():
    import matplotlib.figure  # noqa: F401
    import matplotlib.backends.backend_agg  # noqa: F401
    import networkx  # noqa: F401
  thread = threading.Thread(target=load, daemon=True,
                            name="diffpool_jax_plots_import")
  thread.start()
  return thread


def new_figure(columns: int = 1, figsize=None):
  """A figure of one row of `columns` axes: (figure, axes)."""
  from matplotlib.figure import Figure
  figure = Figure(figsize=figsize)
  return figure, figure.subplots(1, columns)


def save_figure(figure, path: str | os.PathLike) -> None:
  """Saves atomically (temporary file, then rename)."""
  path = os.fspath(path)
  temporary = path + ".tmp.png"
  figure.savefig(temporary, dpi=110, bbox_inches="tight")
  os.replace(temporary, path)


def plot_learning_curves(curves: Dict[str, np.ndarray], path) -> None:
  """One panel per quantity; each curve [E, R] shows its mean over runs R
  with a band of one standard deviation.

  Args:
    curves: name -> [E, R] values, e.g. {"train loss": ..., "test acc": ...}.
    path: PNG file to write.
  """
  losses = {k: v for k, v in curves.items() if "acc" not in k}
  accuracies = {k: v for k, v in curves.items() if "acc" in k}
  panels = [p for p in (losses, accuracies) if p]
  figure, axes = new_figure(len(panels), figsize=(5 * len(panels), 3.5))
  for axis, panel in zip(np.atleast_1d(axes), panels):
    for name, values in panel.items():
      epochs = np.arange(1, len(values) + 1)
      mean, std = values.mean(axis=1), values.std(axis=1)
      axis.plot(epochs, mean, label=name)
      axis.fill_between(epochs, mean - std, mean + std, alpha=0.25)
    axis.set_xlabel("epoch")
    axis.legend()
    axis.grid(alpha=0.3)
  save_figure(figure, path)


def plot_assignments(assignments: Sequence[np.ndarray], path,
                     titles: Sequence[str] = ()) -> None:
  """Heat maps of level-1 assignment matrices, one [n_i, K] per graph."""
  figure, axes = new_figure(len(assignments),
                            figsize=(3 * len(assignments), 4))
  for i, (axis, s) in enumerate(zip(np.atleast_1d(axes), assignments)):
    image = axis.imshow(s, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                        interpolation="nearest")
    axis.set_xlabel("cluster")
    axis.set_ylabel("node")
    if i < len(titles):
      axis.set_title(titles[i], fontsize=9)
  figure.colorbar(image, ax=axes, shrink=0.8, label="assignment")
  save_figure(figure, path)


def plot_hierarchy(edges: np.ndarray, assignment: np.ndarray,
                   pooled_adj: np.ndarray, path, title: str = "") -> None:
  """The graph with nodes coloured by their level-1 cluster (argmax of S),
  beside the coarsened graph of the clusters in use (edge width from A').

  Args:
    edges: [E, 2] local node ids.
    assignment: [n, K] soft assignment of the graph's real nodes.
    pooled_adj: [K, K] pooled adjacency S^T A S.
  """
  import matplotlib
  import networkx as nx
  cluster = assignment.argmax(axis=1)
  used = np.unique(cluster)
  colours = matplotlib.colormaps["tab20"](np.linspace(0, 1, max(len(used), 2)))
  colour_of = {k: colours[i % len(colours)] for i, k in enumerate(used)}
  graph = nx.Graph()
  graph.add_nodes_from(range(len(assignment)))
  graph.add_edges_from(map(tuple, edges))
  figure, (left, right) = new_figure(2, figsize=(10, 4.5))
  layout = nx.spring_layout(graph, seed=0)
  nx.draw_networkx(graph, layout, ax=left, with_labels=False, node_size=40,
                   node_color=[colour_of[k] for k in cluster], width=0.5)
  left.set_title(title or "input graph, coloured by level-1 cluster")
  coarse = nx.Graph()
  coarse.add_nodes_from(used)
  strength = pooled_adj[np.ix_(used, used)]
  for i, a in enumerate(used):
    for j, b in enumerate(used):
      if i < j and strength[i, j] > 1e-3:
        coarse.add_edge(a, b, weight=strength[i, j])
  widths = np.array([d["weight"] for _, _, d in coarse.edges(data=True)])
  widths = 0.5 + 6 * widths / widths.max() if len(widths) else []
  sizes = 100 + 40 * np.bincount(cluster, minlength=len(pooled_adj))[used]
  coarse_layout = nx.spring_layout(coarse, seed=0)
  nx.draw_networkx(coarse, coarse_layout, ax=right, node_size=sizes,
                   node_color=[colour_of[k] for k in used], width=widths,
                   font_size=8)
  right.set_title("coarsened graph (edge width: A' = S^T A S)")
  for axis in (left, right):
    axis.axis("off")
  save_figure(figure, path)


def plot_sweep(rows: Sequence[dict], path, score: str = "val_mean",
               metric: str = "accuracy") -> None:
  """One bar per grid point: `score` (e.g. "val_mean") with its standard
  deviation over folds; points chosen for at least one fold are dark.

  Args:
    rows: per point, {score, score's "_std" twin, "selected_folds", ...}.
    path: PNG file to write.
    score: the row field shown.
    metric: the sweep's metric (accuracy, ROC-AUC and AP in percent,
      errors as they are).
  """
  std = score.replace("_mean", "_std")
  scale = 100 if METRICS[metric][1] else 1
  values = np.array([scale * r[score] for r in rows])
  errors = np.array([scale * r[std] for r in rows])
  chosen = np.array([r.get("selected_folds", 0) > 0 for r in rows])
  figure, axis = new_figure(figsize=(max(4, 0.35 * len(rows) + 2), 3.5))
  axis.bar(np.arange(len(rows)), values, yerr=errors,
           color=np.where(chosen, "tab:blue", "lightsteelblue"))
  axis.set_xticks(np.arange(len(rows)))
  axis.set_xlabel("grid point (see sweep.csv)")
  axis.set_ylabel(score.replace("_mean", "").replace("val", "validation")
                  + f" {metric}" + (" (%)" if scale == 100 else ""))
  if scale == 100:
    low = np.nanmin(values - errors) if len(values) else 0
    axis.set_ylim(max(0, low - 5), min(100, np.nanmax(values + errors) + 5))
  axis.set_title("sweep (dark: selected for a fold)")
  save_figure(figure, path)


def plot_table(rows: Sequence[dict], path) -> None:
  """A comparison table (diffpool-table's rows) as two panels: per data
  set, each pooler's score with its standard deviation as the error bar
  (one panel row of bars per data set, in its metric); and each pooler's
  median epoch seconds, one bar per data set. Failed cells are left out.

  Args:
    rows: {"dataset", "pooler", "status", "metric", "score", "std",
      "epoch_s"} per cell.
    path: PNG file to write.
  """
  done = [r for r in rows if not str(r["status"]).startswith("failed")]
  datasets = list(dict.fromkeys(r["dataset"] for r in rows))
  poolers = list(dict.fromkeys(r["pooler"] for r in rows))
  width = 0.8 / max(len(poolers), 1)
  figure, (scores, times) = new_figure(
      2, figsize=(max(8, 1.6 * len(datasets) * 2 + 3), 4))
  for p, pooler in enumerate(poolers):
    cells = {r["dataset"]: r for r in done if r["pooler"] == pooler}
    where = np.arange(len(datasets)) + (p - (len(poolers) - 1) / 2) * width
    value = lambda d, key: (np.nan if d not in cells or cells[d][key] is None
                            else cells[d][key] * (100 if METRICS[
                                cells[d]["metric"]][1] else 1))
    scores.bar(where, [value(d, "score") for d in datasets], width,
               yerr=[value(d, "std") for d in datasets], label=pooler)
    times.bar(where, [cells[d]["epoch_s"] if d in cells and
                      cells[d]["epoch_s"] is not None else np.nan
                      for d in datasets], width, label=pooler)
  metrics = {d: next((r["metric"] for r in done if r["dataset"] == d), "")
             for d in datasets}
  for axis in (scores, times):
    axis.set_xticks(np.arange(len(datasets)))
    axis.set_xticklabels([f"{d}\n{metrics[d]}" for d in datasets])
  scores.set_ylabel("score (mean ± std over folds or seeds)")
  scores.set_title("score per data set (% for accuracy, ROC-AUC, AP)")
  times.set_ylabel("median training epoch (s)")
  times.set_title("epoch time per pooler")
  times.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1, 1))
  save_figure(figure, path)
