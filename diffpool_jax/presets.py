"""Named model configurations: the paper, the authors' code, PyTorch
Geometric's examples, the flat baseline and the MinCutPool / DMoN
networks. Each comment lists where the preset deviates from its source."""

from __future__ import annotations

from diffpool_jax.model import DiffPoolConfig

PRESETS = {
    # The DiffPool paper (Ying et al. 2018, Sec. 4): GraphSAGE-mean with L2
    # normalisation and batch norm after every layer, 2 pooling levels at 25%
    # clusters, link + entropy losses, max readout of every level. Widths (64),
    # the MLP (50) and the Linear after the assignment stack are not given in
    # the paper; we use PyG's widths and the authors' MLP and Linear. The 25%
    # is read per graph (each graph pools to 25% of its own nodes, at most
    # max_clusters = 64), not as 25% of the largest graph (README: "Cluster
    # counts per graph").
    "paper": DiffPoolConfig(assign_head="linear"),
    # Defaults of the authors' code (RexYing/diffpool, train.py/encoders.py
    # with --method=soft-assign): 3 raw-sum GraphConv layers (A X W + b, no
    # self term since concat=True), hidden/output 20, L2 normalisation,
    # concatenation, 1 pooling level at int(0.1 * max_nodes) clusters, a
    # Linear after the assignment stack, max readout of every level, MLP 50,
    # BCE link loss (their --linkpred flag; off by default there), no entropy
    # loss. Deviation: their batch norm is a fresh, untrained BatchNorm1d over
    # node positions on every call; we use masked batch norm over features
    # without learned scale/bias, with running averages at evaluation.
    "original": DiffPoolConfig(
        conv="sum", hidden_dim=20, embed_dim=20, bn_affine=False,
        pool_ratios=(0.1,), round_clusters="floor", cluster_mode="fixed",
        assign_head="linear",
        link_loss="bce", aux_weights=(("entropy", 0.0),)),
    # PyTorch Geometric examples/proteins_diff_pool.py: GNN blocks of 3
    # DenseSAGEConv (no L2) + ReLU + BatchNorm on every layer, concatenated;
    # the assignment block ends with Linear + ReLU; clusters ceil(0.25 N) then
    # ceil(0.25 of that); mean readout of the last level; Linear 64 + ReLU +
    # Linear. Auxiliary losses are computed but not trained on. Deviation:
    # our batch norm ignores padded nodes (PyG's counts them in training).
    "pyg": DiffPoolConfig(
        cluster_mode="fixed", l2_normalize=False, activate_last=True, assign_head="linear_relu",
        readout="mean", readout_all_levels=False, mlp_hidden=(64,),
        link_loss="pyg", aux_weights=(("link", 0.0), ("entropy", 0.0))),
    # The flat baseline DiffPool is contrasted with: the paper preset's GNN
    # stack, then one mean readout over all nodes (a "virtual supernode"
    # joined to every node) and the MLP head; no pooling.
    "flat": DiffPoolConfig(pool_ratios=(), readout="mean"),
    # MinCutPool's graph-classification network (Bianchi et al. 2020, as in
    # PyTorch Geometric's examples/proteins_mincut_pool.py): one 32-wide
    # convolution per level with ReLU, no batch norm or L2 normalisation;
    # the assignment is a Linear on that level's output; each level keeps
    # 50 % of the nodes (read per graph, at most max_clusters); mean readout
    # of the last level; MLP 32; cut and orthogonality losses, weight 1.
    # Deviations: GCN convolutions at every level (PyG: GraphConv after the
    # first pooling); PyG trains with lr 5e-4 and weight decay 1e-4.
    "mincut": DiffPoolConfig(
        pooling="mincut", conv="gcn", hidden_dim=32, embed_dim=32,
        num_layers=1, l2_normalize=False, batch_norm=False,
        activate_last=True, pool_ratios=(0.5, 0.5), assign_from="embedding",
        assign_head="linear", readout="mean", readout_all_levels=False,
        mlp_hidden=(32,)),
    # DMoN in the same network (PyG's examples/proteins_dmon_pool.py; the
    # DMoN paper itself evaluates clustering, not graph classification):
    # pooled features SELU(S^T X); spectral and cluster losses at weight 1
    # as in the paper; the orthogonality loss, which PyG's example also
    # adds at weight 1, is reported but weighted 0.
    "dmon": DiffPoolConfig(
        pooling="dmon", conv="gcn", hidden_dim=32, embed_dim=32,
        num_layers=1, l2_normalize=False, batch_norm=False,
        activate_last=True, pool_ratios=(0.5, 0.5), assign_from="embedding",
        assign_head="linear", readout="mean", readout_all_levels=False,
        mlp_hidden=(32,), aux_weights=(("ortho", 0.0),)),
}


def preset(name: str, **overrides) -> DiffPoolConfig:
  """The named preset (a key of PRESETS), with overrides."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}; expected one of "
                     f"{tuple(PRESETS)}")
  return PRESETS[name].replace(**overrides)
