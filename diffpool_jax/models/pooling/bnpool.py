"""BN-Pool, Bayesian nonparametric pooling (Castellana and Bianchi,
"BN-Pool: Bayesian nonparametric graph pooling", arXiv 2501.09821).

Each node draws its cluster membership from a truncated Dirichlet process:
K - 1 stick fractions v_ik ~ Beta(alpha_ik, beta_ik), whose concentrations
come from the node's assignment logits, break a unit stick into
pi_ik = v_ik prod_{j<k} (1 - v_ij), the last cluster taking what is left;
S = pi. The graph is explained by a stochastic block model with logits
Z = S K S^T, K a learned K x K block matrix (an operator parameter). The
losses are the negative evidence lower bound: the reconstruction of A from
Z, the KL divergence of the sticks from their Dirichlet process prior
Beta(1, alpha_DP), and a Gaussian prior on K. A Dirichlet process uses
few clusters unless the data asks for more, so the number of non-empty
clusters per graph is learned; all K columns stay in the pooled graph, as
in the authors' code. The pooled graph is MinCutPool's (S^T A S without
its diagonal, symmetrically normalised).

Differences from the authors' code and tgp 1.0.2, each to keep a graph's
result independent of its batch and bucket:

- Evaluation (no `rng`) uses the sticks' posterior means
  alpha / (alpha + beta); both implementations sample there too, so their
  test scores vary from call to call.
- The losses are normalised per graph by its n_i^2 node pairs (tgp's
  batched form); the authors divide by n_i. tgp's K prior carries an extra
  1/B (the batch size), not used here.
- The reconstruction target is A clipped to [0, 1] (the operator may be
  given a weighted or normalised adjacency); on 0/1 graphs it is A.

Dense only: the reconstruction compares Z with A over all n^2 pairs.
"""

from __future__ import annotations

from typing import Mapping, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma

from diffpool_jax.adjacency import EdgeList
from diffpool_jax.models.layers import position_keys
from diffpool_jax.models.pooling.common import (PoolOutput, check_logits,
                                                coarsen,
                                                normalized_pooled_adjacency,
                                                per_graph_mean, prepare_graph)

AUX_NAMES = ("reconstruction", "kl", "k_prior")
# Concentrations are softplus(logits) clipped to this range (the authors'
# and tgp's bounds): Beta draws stay away from 0 and 1.
CONCENTRATION_RANGE = (1e-3, 1e3)
# Sampled sticks are kept inside (STICK_EPSILON, 1 - STICK_EPSILON).
STICK_EPSILON = 1e-6


def logit_columns(clusters: int) -> int:
  """The assignment logits a level of `clusters` clusters needs: one
  (alpha, beta) pair per stick, 2 (K - 1)."""
  return 2 * (clusters - 1)


def initial_parameters(clusters: int, k_init: float = 1.0
                       ) -> Mapping[str, jax.Array]:
  """The operator's parameters for up to `clusters` clusters: the block
  matrix "K" [K, K], k_init on the diagonal and -k_init off it (the
  authors' and tgp's start)."""
  return {"K": k_init * block_prior_mean(clusters)}


def block_prior_mean(clusters: int) -> jax.Array:
  """[K, K] 2 I - 1 1^T: +1 on the diagonal, -1 off it."""
  return 2.0 * jnp.eye(clusters) - 1.0


def stick_concentrations(s_logits: jax.Array):
  """(alpha, beta), each [B, N, K-1], from interleaved logits
  [B, N, 2(K-1)] (columns 2k, 2k+1: stick k), so that the first 2(k-1)
  columns are those of k clusters."""
  low, high = CONCENTRATION_RANGE
  concentration = jnp.clip(jax.nn.softplus(s_logits), low, high)
  return concentration[..., 0::2], concentration[..., 1::2]


def stick_breaking(sticks: jax.Array, cluster_mask: jax.Array) -> jax.Array:
  """[B, N, K] cluster probabilities from stick fractions [B, N, K-1]:
  pi_k = v_k prod_{j<k} (1 - v_j) for graph i's first K_i - 1 clusters,
  the rest of the stick to its cluster K_i (cluster_mask [B, K] holds its
  K_i real clusters first), 0 beyond."""
  batch, nodes, _ = sticks.shape
  clusters = cluster_mask.shape[1]
  last = (jnp.sum(cluster_mask, axis=1) - 1)[:, None, None]       # [B,1,1]
  index = jnp.arange(clusters)[None, None, :]
  padded = jnp.concatenate(
      [sticks, jnp.ones((batch, nodes, 1), sticks.dtype)], axis=-1)
  fraction = jnp.where(index < last, padded,
                       jnp.where(index == last, 1.0, 0.0))
  remaining = jnp.cumprod(1.0 - fraction, axis=-1)
  before = jnp.concatenate(
      [jnp.ones((batch, nodes, 1), sticks.dtype), remaining[..., :-1]],
      axis=-1)
  return fraction * before


@jax.custom_jvp
def log_gamma_draw(key: jax.Array, concentration: jax.Array) -> jax.Array:
  """log of Gamma(concentration, 1) draws, `jax.random.loggamma(key,
  concentration)` bit for bit, with the same implicit reparameterisation
  gradient (`jax.lax.random_gamma_grad`; Figurnov et al., NeurIPS 2018)
  evaluated on the whole array at once, where JAX's own rule loops over
  the elements on the CPU.

  Args:
    key: one PRNG key (raw or typed); concentration: float array [...].

  Returns:
    [...], the shape of `concentration`.
  """
  return jax.random.loggamma(key, concentration)


@log_gamma_draw.defjvp
def _log_gamma_draw_jvp(primals, tangents):
  key, concentration = primals
  log_draw = log_gamma_draw(key, concentration)
  concentration = jnp.asarray(concentration, log_draw.dtype)
  draw = jnp.exp(log_draw)
  draw = jnp.where(draw == 0, jnp.finfo(draw.dtype).tiny, draw)
  # d log x / d a = (d x / d a) / x, x held at its quantile
  slope = jax.lax.random_gamma_grad(concentration, draw) / draw
  return log_draw, slope * tangents[1]


def beta_draw(key: jax.Array, alpha: jax.Array, beta: jax.Array
              ) -> jax.Array:
  """Beta(alpha, beta) draws, `jax.random.beta(key, alpha, beta)` bit for
  bit, as G_a / (G_a + G_b) of two Gamma draws in log space
  (`log_gamma_draw`), so that their gradient in alpha and beta is
  computed without a loop.

  Args:
    key: one PRNG key (raw or typed); alpha, beta: float arrays that
      broadcast together to [...].

  Returns:
    [...] draws in [0, 1].
  """
  # as jax.random.beta: the default float type, broadcast together
  alpha, beta = jnp.broadcast_arrays(jnp.asarray(alpha, float),
                                     jnp.asarray(beta, float))
  key_alpha, key_beta = jax.random.split(key)
  log_alpha = log_gamma_draw(key_alpha, alpha)
  log_beta = log_gamma_draw(key_beta, beta)
  largest = jnp.maximum(log_alpha, log_beta)
  scaled_alpha = jnp.exp(log_alpha - largest)
  scaled_beta = jnp.exp(log_beta - largest)
  return scaled_alpha / (scaled_alpha + scaled_beta)


def stick_draws(rng: jax.Array, alpha: jax.Array, beta: jax.Array
                ) -> jax.Array:
  """[B, N, K-1] Beta(alpha, beta) draws, each from a key of its own
  position (graph, node, stick; `layers.position_keys`), so that a graph's
  draws do not depend on how far its batch is padded (nor on the graphs
  after it); kept inside (STICK_EPSILON, 1 - STICK_EPSILON)."""
  keys = position_keys(rng, alpha.shape)
  flat_keys = keys.reshape((-1,) + keys.shape[alpha.ndim:])  # raw or typed
  draws = jax.vmap(beta_draw)(flat_keys, alpha.reshape(-1),
                              beta.reshape(-1)).reshape(alpha.shape)
  return jnp.clip(draws, STICK_EPSILON, 1.0 - STICK_EPSILON)


def beta_kl(alpha: jax.Array, beta: jax.Array, alpha_dp: float
            ) -> jax.Array:
  """KL(Beta(alpha, beta) || Beta(1, alpha_dp)), elementwise, in closed
  form: ln B(1, a_dp) - ln B(alpha, beta) + (alpha - 1) psi(alpha)
  + (beta - a_dp) psi(beta) + (1 + a_dp - alpha - beta) psi(alpha + beta),
  with ln B(1, a_dp) = -ln a_dp."""
  return (-jnp.log(alpha_dp) - betaln(alpha, beta)
          + (alpha - 1.0) * digamma(alpha)
          + (beta - alpha_dp) * digamma(beta)
          + (1.0 + alpha_dp - alpha - beta) * digamma(alpha + beta))


def reconstruction_loss(s: jax.Array, blocks: jax.Array, adj: jax.Array,
                        mask: jax.Array) -> jax.Array:
  """[B] per graph the balanced binary cross-entropy of A (clipped to
  [0, 1]) given the logits Z = S K S^T, summed over its n^2 ordered node
  pairs (the diagonal included), pairs with A != 0 weighted by
  (non-edges / edges), and divided by n^2 (tgp's
  `weighted_bce_reconstruction_loss` with balanced links)."""
  logits = jnp.einsum("bnk,kl,bml->bnm", s, blocks, s)
  target = jnp.clip(adj, 0.0, 1.0)
  pair = mask[:, :, None] & mask[:, None, :]
  edge = pair & (adj != 0)
  pairs = jnp.sum(pair, axis=(1, 2)).astype(s.dtype)
  edges = jnp.sum(edge, axis=(1, 2)).astype(s.dtype)
  edge_weight = jnp.maximum(pairs - edges, 1.0) / jnp.maximum(edges, 1.0)
  weight = jnp.where(edge, edge_weight[:, None, None], 1.0)
  cross_entropy = jax.nn.softplus(logits) - target * logits
  total = jnp.sum(jnp.where(pair, weight * cross_entropy, 0.0), axis=(1, 2))
  return total / jnp.maximum(pairs, 1.0)


def dense_bn_pool(x: jax.Array,
                  adj: jax.Array,
                  s_logits: jax.Array,
                  mask: Optional[jax.Array] = None,
                  cluster_mask: Optional[jax.Array] = None,
                  *,
                  params: Mapping[str, jax.Array],
                  rng: Optional[jax.Array] = None,
                  alpha_dp: float = 1.0,
                  k_mu: float = 10.0,
                  k_var: float = 1.0) -> PoolOutput:
  """One BN-Pool coarsening step on a padded batch.

  Args:
    x: [B, N, F] node features.
    adj: [B, N, N] dense adjacency (an EdgeList is refused: see the module
      docstring).
    s_logits: [B, N, 2(K-1)] stick logits, interleaved (columns 2k and
      2k+1 give stick k's alpha and beta through softplus).
    mask: [B, N] bool, True for real nodes (None: all real).
    cluster_mask: [B, K] bool, the clusters each graph may use, its first
      ones (None: all K).
    params: the operator's parameters (`initial_parameters`); "K" is the
      block matrix, at least K x K (its top-left K x K block is used).
    rng: PRNG key to sample the sticks (training; see `stick_draws`);
      None takes their means.
    alpha_dp: the Dirichlet process concentration (tgp 1.0; the authors'
      configurations 10): larger spreads nodes over more clusters.
    k_mu, k_var: mean scale and variance of the Gaussian prior on K,
      N(k_mu (2 I - 1 1^T), k_var) entrywise (both implementations' 10, 1).

  Returns:
    `PoolOutput(x [B,K,F] = S^T X, adj [B,K,K] normalised S^T A S without
    its diagonal, s [B,N,K], aux {"reconstruction", "kl", "k_prior"})`,
    each averaged over real graphs: `reconstruction_loss`; the KL of each
    real node's K_i - 1 sticks from Beta(1, alpha_dp), summed, over n_i^2;
    sum_{k,l<K_i} (K_kl - mu_kl)^2 / (2 k_var), over n_i^2.
  """
  where = "dense_bn_pool"
  if isinstance(adj, EdgeList):
    raise ValueError(f"{where} needs the dense [B,N,N] adjacency (its "
                     "reconstruction loss compares all node pairs); got an "
                     "EdgeList")
  check_logits(s_logits, x, where)
  if s_logits.shape[2] % 2:
    raise ValueError(f"{where}: argument 's_logits' has "
                     f"{s_logits.shape[2]} columns; expected an even 2(K-1) "
                     "(an alpha and a beta per stick)")
  clusters = s_logits.shape[2] // 2 + 1
  blocks = params["K"]
  if blocks.ndim != 2 or min(blocks.shape) < clusters:
    raise ValueError(f"{where}: parameter 'K' has shape {blocks.shape}; "
                     f"expected at least ({clusters}, {clusters})")
  blocks = blocks[:clusters, :clusters]
  x, adj, mask, cluster_mask = prepare_graph(x, adj, mask, cluster_mask,
                                             clusters, where)
  # Graph i's real nodes use its first K_i - 1 sticks; the other logits
  # are replaced (by selection) before anything reads them.
  real_sticks = (mask[:, :, None]
                 & (jnp.arange(clusters - 1)[None, None, :]
                    < jnp.sum(cluster_mask, axis=1)[:, None, None] - 1))
  s_logits = jnp.where(jnp.repeat(real_sticks, 2, axis=-1), s_logits,
                       jnp.zeros((), s_logits.dtype))
  alpha, beta = stick_concentrations(s_logits)
  if rng is None:
    sticks = alpha / (alpha + beta)
  else:
    sticks = stick_draws(rng, alpha, beta)
  s = jnp.where(mask[..., None], stick_breaking(sticks, cluster_mask), 0.0)
  pooled_x, pooled_adj = coarsen(x, adj, s)

  graph_mask = jnp.any(mask, axis=1)
  pairs = jnp.maximum(jnp.sum(mask, axis=1), 1).astype(s.dtype) ** 2
  kl = jnp.sum(jnp.where(real_sticks, beta_kl(alpha, beta, alpha_dp), 0.0),
               axis=(1, 2)) / pairs
  block_pair = cluster_mask[:, :, None] & cluster_mask[:, None, :]
  squared = (blocks - k_mu * block_prior_mean(clusters)) ** 2 / (2 * k_var)
  k_prior = jnp.sum(jnp.where(block_pair, squared[None], 0.0),
                    axis=(1, 2)) / pairs
  aux = {"reconstruction": per_graph_mean(
             reconstruction_loss(s, blocks, adj, mask), graph_mask),
         "kl": per_graph_mean(kl, graph_mask),
         "k_prior": per_graph_mean(k_prior, graph_mask)}
  return PoolOutput(pooled_x, normalized_pooled_adjacency(pooled_adj), s, aux)
