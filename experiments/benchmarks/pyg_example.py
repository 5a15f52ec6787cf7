"""PyTorch Geometric's own DiffPool pipeline as a whole process, for the
whole-command comparison of `experiments.benchmarks.pyg` (needs
requirements-bench.txt).

  python -m experiments.benchmarks.pyg_example --root RAW --name ENZYMES \
      --splits ../shared/data/splits/ENZYMES_splits.json --epochs 2

What PyG's examples/proteins_diff_pool.py does, fold after fold on a split
file (Errica et al.'s format): `TUDataset` reads the raw TU text files
under RAW/NAME/raw (node attributes and labels, as our reader gives them),
`T.ToDense(150)` pads each graph on the fly, `DenseDataLoader` batches 20,
and every epoch trains, then scores the validation and the test graphs.
Graphs of more than 150 nodes are dropped, as the example's filter does.
The model is pyg_reference.PygDiffPool (the example's network). Prints
one JSON line: seconds of loading and of the folds, and the mean test
accuracy at the last epoch.
"""

from __future__ import annotations

import argparse
import json
import time

MAX_NODES = 150
BATCH = 20


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True,
                      help="folder holding NAME/raw/NAME_*.txt")
  parser.add_argument("--name", default="ENZYMES")
  parser.add_argument("--splits", required=True)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  import torch
  import torch_geometric.transforms as T
  from torch_geometric.datasets import TUDataset

  from experiments.benchmarks.pyg_reference import (PygDiffPool,
                                                    correct_predictions,
                                                    train_epoch)
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  dataset = TUDataset(args.root, args.name, use_node_attr=True,
                      transform=T.ToDense(MAX_NODES))
  nodes = [dataset.get(g).num_nodes for g in range(len(dataset))]
  kept = {g for g, n in enumerate(nodes) if n <= MAX_NODES}
  with open(args.splits) as handle:
    folds = json.load(handle)
  loaded = time.perf_counter()
  accuracies = []
  for fold in folds:
    inner = fold["model_selection"][0]
    # Subsets of the dataset, so ToDense pads every graph on every access.
    train, val, test = (dataset[[g for g in ids if g in kept]] for ids in
                        (inner["train"], inner["validation"], fold["test"]))
    model = PygDiffPool(dataset.num_features, dataset.num_classes, MAX_NODES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(args.epochs):
      train_epoch(model, optimizer, train, BATCH)
      correct_predictions(model, val, BATCH)
      correct = correct_predictions(model, test, BATCH)
    accuracies.append(correct / max(len(test), 1))
  print(json.dumps({"load_seconds": loaded - start,
                    "folds_seconds": time.perf_counter() - loaded,
                    "folds": len(folds), "epochs": args.epochs,
                    "graphs": len(kept), "dropped": len(nodes) - len(kept),
                    "test_accuracy": sum(accuracies) / len(accuracies)}))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
