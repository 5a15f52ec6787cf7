"""Reading a TU data set: the line-by-line reader against the one-pass
reader, and a read from the processed cache; wall time and peak RSS.

  python -m experiments.benchmarks.data --dataset DD --data-root ../shared/data/tu
  python -m experiments.benchmarks.data --generate collab   # a COLLAB-size set

Each read runs in a process of its own (its peak RSS is its own) with a
fresh data cache folder: "line by line" is the reader as it was before the
one-pass parse (every table read line by line, as a list of strings),
"one pass" parses each table as one buffer, "cached" reads the processed
copy the one-pass read wrote. `--generate collab` writes (once, into
--data-root, default runs/generated) a set of COLLAB's size: 5,000
graphs of 32-492 nodes (mean about 75), about 4,900 directed adjacency
entries per graph (24.6 million lines of A), no node labels.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from experiments.benchmarks.harness import (emit, peak_rss_gib, run_child,
                                            write_report)

READS = ("line by line", "one pass", "cached")


def child(args) -> dict:
  """One read of the data set (default features), timed."""
  from diffpool_jax.datasets import load_tu, tables
  if args.read == "line by line":
    tables.parse_table = lambda data, dtype: None  # every table by line
  start = time.perf_counter()
  dataset = load_tu(args.dataset, root=args.data_root, download=False,
                    cache=args.read != "line by line")
  seconds = time.perf_counter() - start
  return {"read": args.read, "seconds": seconds,
          "peak_rss_gib": peak_rss_gib(),
          "graphs": dataset.num_graphs,
          "entries": int(sum(len(e) for e in dataset.edges)),
          "origin": dataset.origin}


def run_read(args, read: str, cache_folder: str) -> dict:
  """One read in its own child process, with `cache_folder` as its
  processed-data cache."""
  figures = run_child(
      "experiments.benchmarks.data", ["--child", read, "--dataset",
                                      args.dataset, "--data-root",
                                      args.data_root],
      env=dict(os.environ, DIFFPOOL_JAX_DATA=cache_folder))
  if figures.get("ran") is False:
    raise SystemExit(f"{read} read failed:\n{figures.get('error', '')}")
  return figures


def generate_collab(root: Path, name: str = "COLLAB-SIZE",
                    seed: int = 0) -> None:
  """A set of COLLAB's size and density in root/name (skipped when it is
  there): dense ego-network-like graphs, two classes."""
  folder = root / name
  if (folder / f"{name}_A.txt.gz").is_file():
    return
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  graphs = 5000
  n_node = np.clip(np.round(rng.lognormal(np.log(60), 0.55, graphs)),
                   32, 492).astype(np.int64)
  offsets = np.concatenate([[0], np.cumsum(n_node)[:-1]])
  # One density for all graphs: 2,460 undirected edges per graph on average.
  density = min(1.0, 2460 * graphs / float(np.sum(n_node * (n_node - 1) / 2)))
  blocks = []
  for n, offset in zip(n_node, offsets):
    pairs = n * (n - 1) // 2
    wanted = int(round(density * pairs))
    upper = np.stack(np.triu_indices(n, 1), 1)
    chosen = upper[rng.choice(pairs, size=wanted, replace=False)]
    both = np.concatenate([chosen, chosen[:, ::-1]]) + offset + 1
    blocks.append(both[np.lexsort((both[:, 1], both[:, 0]))])
  entries = np.concatenate(blocks)

  def write(table: str, lines: str) -> None:
    with gzip.open(folder / f"{name}_{table}.txt.gz", "wt",
                   compresslevel=1) as handle:
      handle.write(lines)

  write("A", "\n".join(f"{a}, {b}" for a, b in entries.tolist()) + "\n")
  write("graph_indicator", "\n".join(
      map(str, np.repeat(np.arange(1, graphs + 1), n_node))) + "\n")
  write("graph_labels", "\n".join(
      map(str, rng.integers(1, 3, graphs))) + "\n")
  print(f"generated {name}: {graphs} graphs, {int(n_node.sum())} nodes, "
        f"{len(entries)} A lines in {folder}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", help="TU name in --data-root")
  parser.add_argument("--data-root", type=Path)
  parser.add_argument("--generate", choices=["collab"],
                      help="generate a COLLAB-size set and read it")
  parser.add_argument("--out", type=Path, default=Path(
      "runs/data_benchmark.json"))
  parser.add_argument("--child", choices=READS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    args.read = args.child
    emit(child(args))
    return 0
  if args.generate:
    args.data_root = args.data_root or Path("runs/generated")
    args.dataset = "COLLAB-SIZE"
    generate_collab(args.data_root, args.dataset)
  if not args.dataset or not args.data_root:
    parser.error("--dataset and --data-root (or --generate collab)")
  rows = []
  with tempfile.TemporaryDirectory() as cache_folder:
    for read in READS:
      rows.append(run_read(args, read, cache_folder))
  print(f"\n{args.dataset}: {rows[0]['graphs']} graphs, "
        f"{rows[0]['entries']} adjacency entries")
  for row in rows:
    print(f"  {row['read']:<13} {row['seconds']:7.2f} s   peak RSS "
          f"{row['peak_rss_gib']:5.2f} GiB   ({row['origin']})")
  first, cached = rows[1], rows[2]
  print(f"  one pass vs line by line: {rows[0]['seconds'] / first['seconds']:.1f}x "
        f"faster, {rows[0]['peak_rss_gib'] / first['peak_rss_gib']:.1f}x "
        f"less memory; cached read {cached['seconds']:.2f} s")
  write_report(args.out, {"dataset": args.dataset, "reads": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
