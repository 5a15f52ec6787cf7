"""Reading a data set (any reader: TU, OGB, ...): the line-by-line reader
against the one-pass reader, and a read from the processed cache; wall
time and peak RSS.

  python -m experiments.benchmarks.data --dataset DD --data-root ../shared/data/tu
  python -m experiments.benchmarks.data --generate collab    # a COLLAB-size TU set
  python -m experiments.benchmarks.data --generate molpcba   # an ogbg-molpcba-size OGB set

Each read runs in a process of its own (its peak RSS is its own) with a
fresh data cache folder: "line by line" is the reader as it was before the
one-pass parse (every table read line by line, as a list of strings),
"one pass" parses each table as one buffer, "cached" reads the processed
copy the one-pass read wrote. `--generate collab` writes (once, into
--data-root, default runs/generated) a set of COLLAB's size: 5,000
graphs of 32-492 nodes (mean about 75), about 4,900 directed adjacency
entries per graph (24.6 million lines of A), no node labels.
`--generate molpcba` writes an OGB-layout set of ogbg-molpcba's size:
437,929 molecule-like graphs (11.4 million nodes, mean 26; 12.3 million
bonds), 9 atom and 3 bond feature columns, 128 binary tasks with half the
labels missing, a split of 80/10/10 %.
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
  from diffpool_jax.datasets import read_dataset, tables
  if args.read == "line by line":
    tables.parse_table = lambda data, dtype: None  # every table by line
  start = time.perf_counter()
  dataset = read_dataset(args.dataset, args.data_root, download=False,
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


def digits(values: np.ndarray, width: int) -> np.ndarray:
  """[rows, columns * (width + 1)] ASCII bytes of non-negative integers
  [rows, columns], each zero-padded to `width` digits and followed by a
  comma (the last column by a newline): a CSV table built without a loop."""
  rows, columns = values.shape
  out = np.empty((rows, columns, width + 1), np.uint8)
  for place in range(width):
    out[:, :, width - 1 - place] = ord("0") + values // 10 ** place % 10
  out[:, :, width] = ord(",")
  out[:, -1, width] = ord("\n")
  return out.reshape(rows, -1)


def generate_molpcba(root: Path, name: str = "ogbg_molpcba_size",
                     seed: int = 0) -> None:
  """An OGB-layout set of ogbg-molpcba's size in root/name (skipped when
  it is there): chain-like molecules with a few rings, integer features,
  128 tasks of which half the labels are missing ("nan")."""
  folder = root / name
  if (folder / "raw" / "graph-label.csv.gz").is_file():
    return
  (folder / "raw").mkdir(parents=True, exist_ok=True)
  (folder / "split" / "scaffold").mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  graphs = 437_929
  n_node = np.clip(np.round(rng.normal(26, 6, graphs)), 2, 300).astype(
      np.int64)
  rings = np.minimum(rng.poisson(2.1, graphs), n_node - 2)
  n_edge = n_node - 1 + rings
  # a chain 0-1-...-(n-1), then `rings` bonds from node i to node i + 2
  local = np.arange(int(n_node.sum())) - np.repeat(
      np.concatenate([[0], np.cumsum(n_node)[:-1]]), n_node)
  chain_src = local[local < np.repeat(n_node - 1, n_node)]
  ring_src = np.arange(int(rings.sum())) - np.repeat(
      np.concatenate([[0], np.cumsum(rings)[:-1]]), rings)
  chain = np.stack([chain_src, chain_src + 1], 1)
  ring = np.stack([ring_src, ring_src + 2], 1)
  chain_graph = np.repeat(np.arange(graphs), n_node - 1)
  ring_graph = np.repeat(np.arange(graphs), rings)
  order = np.argsort(np.concatenate([chain_graph, ring_graph]), kind="stable")
  edges = np.concatenate([chain, ring])[order]

  def write(path: str, table: np.ndarray, width: int) -> None:
    with gzip.open(folder / path, "wb", compresslevel=1) as handle:
      handle.write(digits(table, width).tobytes())

  write("raw/num-node-list.csv.gz", n_node[:, None], 3)
  write("raw/num-edge-list.csv.gz", n_edge[:, None], 3)
  write("raw/edge.csv.gz", edges, 3)
  write("raw/node-feat.csv.gz", rng.integers(0, 10, (len(local), 9)), 1)
  write("raw/edge-feat.csv.gz", rng.integers(0, 4, (len(edges), 3)), 1)
  labels = rng.integers(0, 2, (graphs, 128))
  text = digits(labels, 1).reshape(graphs, 128, 2)
  missing = rng.random((graphs, 128)) < 0.5
  cells = np.where(missing[..., None], np.frombuffer(b"nan", np.uint8),
                   np.concatenate([np.full((graphs, 128, 2), ord(" "),
                                           np.uint8), text[..., :1]], -1))
  lines = np.concatenate([cells, text[..., 1:]], -1)   # "  1," or "nan,"
  with gzip.open(folder / "raw" / "graph-label.csv.gz", "wb",
                 compresslevel=1) as handle:
    handle.write(lines.tobytes())
  parts = np.split(rng.permutation(graphs), [int(0.8 * graphs),
                                             int(0.9 * graphs)])
  for part, ids in zip(("train", "valid", "test"), parts):
    write(f"split/scaffold/{part}.csv.gz", np.sort(ids)[:, None], 6)
  print(f"generated {name}: {graphs} graphs, {len(local)} nodes, "
        f"{len(edges)} bonds in {folder}")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", help="TU name in --data-root")
  parser.add_argument("--data-root", type=Path)
  parser.add_argument("--generate", choices=["collab", "molpcba"],
                      help="generate a COLLAB-size TU set or an "
                      "ogbg-molpcba-size OGB set and read it")
  parser.add_argument("--reads", nargs="+", choices=READS, default=READS,
                      help="which reads (the line-by-line reader needs "
                      "tens of GiB for a molpcba-size set)")
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
    args.dataset = {"collab": "COLLAB-SIZE",
                    "molpcba": "ogbg_molpcba_size"}[args.generate]
    generate = {"collab": generate_collab, "molpcba": generate_molpcba}
    generate[args.generate](args.data_root, args.dataset)
  if not args.dataset or not args.data_root:
    parser.error("--dataset and --data-root (or --generate)")
  rows = {}
  with tempfile.TemporaryDirectory() as cache_folder:
    for read in READS:            # in this order: "cached" needs "one pass"
      if read in args.reads:
        rows[read] = run_read(args, read, cache_folder)
  first = next(iter(rows.values()))
  print(f"\n{args.dataset}: {first['graphs']} graphs, "
        f"{first['entries']} adjacency entries")
  for row in rows.values():
    print(f"  {row['read']:<13} {row['seconds']:7.2f} s   peak RSS "
          f"{row['peak_rss_gib']:5.2f} GiB   ({row['origin']})")
  if {"line by line", "one pass"} <= set(rows):
    slow, fast = rows["line by line"], rows["one pass"]
    print(f"  one pass vs line by line: {slow['seconds'] / fast['seconds']:.1f}x"
          f" faster, {slow['peak_rss_gib'] / fast['peak_rss_gib']:.1f}x less "
          "memory")
  rows = list(rows.values())
  write_report(args.out, {"dataset": args.dataset, "reads": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
