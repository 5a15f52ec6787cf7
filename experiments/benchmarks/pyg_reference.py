"""PyTorch Geometric's DiffPool, as in PyG's examples/proteins_diff_pool.py,
for the side-by-side benchmark (needs requirements-bench.txt).

The architecture is rebuilt here from PyG's own building blocks
(DenseSAGEConv, BatchNorm1d, dense_diff_pool), with the example's layout.
"""

from __future__ import annotations

from math import ceil

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.nn import DenseSAGEConv, dense_diff_pool


class PygGNN(torch.nn.Module):
  """Three DenseSAGEConv + ReLU + BatchNorm, concatenated; optional Linear."""

  def __init__(self, in_channels, hidden_channels, out_channels, lin=True):
    super().__init__()
    self.convs = torch.nn.ModuleList([
        DenseSAGEConv(in_channels, hidden_channels),
        DenseSAGEConv(hidden_channels, hidden_channels),
        DenseSAGEConv(hidden_channels, out_channels)])
    self.bns = torch.nn.ModuleList([
        torch.nn.BatchNorm1d(hidden_channels),
        torch.nn.BatchNorm1d(hidden_channels),
        torch.nn.BatchNorm1d(out_channels)])
    self.lin = (torch.nn.Linear(2 * hidden_channels + out_channels,
                                out_channels) if lin else None)

  def forward(self, x, adj, mask=None):
    outputs = []
    for conv, bn in zip(self.convs, self.bns):
      x = conv(x, adj, mask).relu()
      batch, nodes, channels = x.size()
      x = bn(x.view(-1, channels)).view(batch, nodes, channels)
      outputs.append(x)
    x = torch.cat(outputs, dim=-1)
    return self.lin(x).relu() if self.lin is not None else x


class PygDiffPool(torch.nn.Module):
  """The example's Net: two DiffPool levels at 25 %, mean readout, MLP."""

  def __init__(self, num_features, num_classes, max_nodes):
    super().__init__()
    clusters = ceil(0.25 * max_nodes)
    self.gnn1_pool = PygGNN(num_features, 64, clusters)
    self.gnn1_embed = PygGNN(num_features, 64, 64, lin=False)
    clusters = ceil(0.25 * clusters)
    self.gnn2_pool = PygGNN(3 * 64, 64, clusters)
    self.gnn2_embed = PygGNN(3 * 64, 64, 64, lin=False)
    self.gnn3_embed = PygGNN(3 * 64, 64, 64, lin=False)
    self.lin1 = torch.nn.Linear(3 * 64, 64)
    self.lin2 = torch.nn.Linear(64, num_classes)

  def forward(self, x, adj, mask=None):
    s = self.gnn1_pool(x, adj, mask)
    x = self.gnn1_embed(x, adj, mask)
    x, adj, link1, entropy1 = dense_diff_pool(x, adj, s, mask)
    s = self.gnn2_pool(x, adj)
    x = self.gnn2_embed(x, adj)
    x, adj, link2, entropy2 = dense_diff_pool(x, adj, s)
    x = self.gnn3_embed(x, adj).mean(dim=1)
    x = self.lin2(F.relu(self.lin1(x)))
    return F.log_softmax(x, dim=-1), link1 + link2, entropy1 + entropy2


def dense_graphs(dataset, ids, max_nodes: int) -> list:
  """The graphs `ids` of our GraphDataset as PyG Data, padded with
  ToDense(max_nodes) as the example does."""
  import torch_geometric.transforms as T
  from torch_geometric.data import Data
  dense = T.ToDense(max_nodes)
  return [dense(Data(x=torch.from_numpy(dataset.features[g]),
                     edge_index=torch.from_numpy(dataset.edges[g].T.copy()),
                     y=torch.tensor([int(dataset.labels[g])])))
          for g in ids]


def train_epoch(model: PygDiffPool, optimizer, graphs: list, batch_size: int,
                device=None) -> None:
  """The example's training epoch: shuffled DenseDataLoader batches, each
  moved to `device` in the loop, NLL loss, one optimizer step each."""
  from torch_geometric.loader import DenseDataLoader
  model.train()
  for batch in DenseDataLoader(graphs, batch_size=batch_size, shuffle=True):
    batch = batch.to(device) if device is not None else batch
    optimizer.zero_grad()
    out, _, _ = model(batch.x, batch.adj, batch.mask)
    F.nll_loss(out, batch.y.view(-1)).backward()
    optimizer.step()
  if device is not None and device.type == "cuda":
    torch.cuda.synchronize()


@torch.no_grad()
def correct_predictions(model: PygDiffPool, graphs: list,
                        batch_size: int) -> int:
  """How many of `graphs` the model classifies correctly (eval mode)."""
  from torch_geometric.loader import DenseDataLoader
  model.eval()
  correct = 0
  for batch in DenseDataLoader(graphs, batch_size=batch_size):
    predicted = model(batch.x, batch.adj, batch.mask)[0].argmax(-1)
    correct += int((predicted == batch.y.view(-1)).sum())
  return correct


def stack_params(gnn: PygGNN, pool: bool) -> dict:
  """A PygGNN's weights as a flax GNNStack (+ head) parameter tree."""
  tree = {}
  for i, (conv, bn) in enumerate(zip(gnn.convs, gnn.bns)):
    tree[f"conv{i}"] = {
        "lin_rel": {"kernel": conv.lin_rel.weight.T},
        "lin_root": {"kernel": conv.lin_root.weight.T,
                     "bias": conv.lin_root.bias}}
    tree[f"bn{i}"] = {"scale": bn.weight, "bias": bn.bias}
  head = {"kernel": gnn.lin.weight.T, "bias": gnn.lin.bias} if pool else None
  return tree, head


def stack_stats(gnn: PygGNN) -> dict:
  return {f"bn{i}": {"mean": bn.running_mean, "var": bn.running_var}
          for i, bn in enumerate(gnn.bns)}


def to_flax_variables(net: PygDiffPool) -> dict:
  """The PyG model's weights as variables of our `pyg` preset."""
  params, stats = {}, {}
  for level, (pool, embed) in enumerate(((net.gnn1_pool, net.gnn1_embed),
                                         (net.gnn2_pool, net.gnn2_embed))):
    params[f"assign{level}"], params[f"assign_head{level}"] = stack_params(
        pool, True)
    params[f"embed{level}"], _ = stack_params(embed, False)
    stats[f"assign{level}"] = stack_stats(pool)
    stats[f"embed{level}"] = stack_stats(embed)
  params["embed2"], _ = stack_params(net.gnn3_embed, False)
  stats["embed2"] = stack_stats(net.gnn3_embed)
  params["mlp0"] = {"kernel": net.lin1.weight.T, "bias": net.lin1.bias}
  params["mlp1"] = {"kernel": net.lin2.weight.T, "bias": net.lin2.bias}
  to_numpy = lambda tree: {
      k: to_numpy(v) if isinstance(v, dict) else
      np.asarray(v.detach().numpy(), np.float32) for k, v in tree.items()}
  return {"params": to_numpy(params), "batch_stats": to_numpy(stats)}
