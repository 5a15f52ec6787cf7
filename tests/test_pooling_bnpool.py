"""BN-Pool against a float64 NumPy reference of its definitions (stick
breaking, the balanced reconstruction, the Beta KL, the prior on K), graph
by graph with node and cluster masks; its sampling, its parameters in the
classifier, and its refusals."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffpool_jax as dp
from diffpool_jax.models import layers
from diffpool_jax.models.classifier import DiffPool, rng_streams
from diffpool_jax.models.pooling import POOLING, bnpool
from tests.test_pooling_family import REAL_CLUSTERS, inputs, normalized

CLUSTERS = 6


def softplus(v):
  return np.log1p(np.exp(-np.abs(v))) + np.maximum(v, 0)


def digamma(v):
  """psi by recurrence to v >= 6 and the asymptotic series (float64)."""
  v = np.asarray(v, np.float64).copy()
  shift = np.zeros_like(v)
  while np.any(v < 6):
    small = v < 6
    shift -= np.where(small, 1 / v, 0)
    v = np.where(small, v + 1, v)
  w = 1 / v ** 2
  return shift + np.log(v) - 0.5 / v - w * (1 / 12 - w * (1 / 120 - w / 252))


def betaln(a, b):
  return np.vectorize(lambda x, y: math.lgamma(x) + math.lgamma(y)
                      - math.lgamma(x + y), otypes=[float])(a, b)


def kl_reference(a, b, prior):
  return (-np.log(prior) - betaln(a, b) + (a - 1) * digamma(a)
          + (b - prior) * digamma(b) + (1 + prior - a - b) * digamma(a + b))


def sticks_to_s(v, k):
  """[n, k] pi from sticks v [n, >= k-1], node by node."""
  n = len(v)
  s = np.zeros((n, k))
  for i in range(n):
    left = 1.0
    for c in range(k - 1):
      s[i, c] = v[i, c] * left
      left *= 1 - v[i, c]
    s[i, k - 1] = left
  return s


def graph_losses(s, a, blocks, alpha, beta, prior, k_mu=10.0, k_var=1.0):
  n, k = s.shape
  z = s @ blocks[:k, :k] @ s.T
  edges = np.count_nonzero(a)
  edge_weight = max(n * n - edges, 1) / max(edges, 1)
  total = 0.0
  for i in range(n):
    for j in range(n):
      t = min(max(a[i, j], 0.0), 1.0)
      bce = softplus(z[i, j]) - t * z[i, j]
      total += (edge_weight if a[i, j] != 0 else 1.0) * bce
  mean = k_mu * (2 * np.eye(k) - 1)
  return {"reconstruction": total / n ** 2,
          "kl": kl_reference(alpha[:, :k - 1], beta[:, :k - 1],
                             prior).sum() / n ** 2,
          "k_prior": ((blocks[:k, :k] - mean) ** 2).sum() / (2 * k_var)
          / n ** 2}


def batch_inputs(seed, weighted=False):
  dense, _, _, _ = inputs(seed, weighted)
  rng = np.random.default_rng(seed + 10)
  nodes = dense.x.shape[1]
  logits = rng.normal(size=(len(dense.n_node), nodes,
                            bnpool.logit_columns(CLUSTERS))).astype(np.float32)
  cluster_mask = (np.arange(CLUSTERS)[None]
                  < np.array(REAL_CLUSTERS)[:, None])
  blocks = rng.normal(size=(CLUSTERS + 2, CLUSTERS + 2)).astype(np.float32)
  return dense, logits, cluster_mask, {"K": jnp.asarray(blocks)}


def concentrations(logits):
  c = np.clip(softplus(logits.astype(np.float64)), 1e-3, 1e3)
  return c[..., 0::2], c[..., 1::2]


@pytest.mark.parametrize("weighted", [False, True])
def test_evaluation_matches_float64_reference(weighted):
  """No rng: the sticks are their Beta means alpha / (alpha + beta)."""
  dense, logits, cluster_mask, params = batch_inputs(0, weighted)
  out = bnpool.dense_bn_pool(dense.x, dense.adj, logits, dense.node_mask,
                             cluster_mask=cluster_mask, params=params,
                             alpha_dp=3.0)
  blocks = np.asarray(params["K"], np.float64)
  losses = []
  for i, (n, k) in enumerate(zip(dense.n_node, REAL_CLUSTERS)):
    if n == 0:
      assert not np.any(np.asarray(out.s[i]))
      continue
    alpha, beta = concentrations(logits[i, :n])
    s = sticks_to_s(alpha / (alpha + beta), k)
    a = dense.adj[i, :n, :n].astype(np.float64)
    np.testing.assert_allclose(np.asarray(out.s[i, :n, :k]), s, rtol=1e-5,
                               atol=1e-6)
    assert not np.any(np.asarray(out.s[i, :, k:]))
    assert not np.any(np.asarray(out.s[i, n:]))
    np.testing.assert_allclose(np.asarray(out.x[i, :k]),
                               s.T @ dense.x[i, :n].astype(np.float64),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.adj[i, :k, :k]),
                               normalized(s.T @ a @ s), rtol=1e-5, atol=1e-6)
    losses.append(graph_losses(s, a, blocks, alpha, beta, 3.0))
  for key in bnpool.AUX_NAMES:
    np.testing.assert_allclose(float(out.aux[key]),
                               np.mean([l[key] for l in losses]), rtol=1e-5,
                               err_msg=key)


def test_training_samples_beta_sticks():
  """With an rng: rows of S sum to 1 over a graph's clusters; the
  reconstruction is the reference's on the sampled S, the KL and the
  prior do not depend on the draw; over many draws the sticks average
  alpha / (alpha + beta)."""
  dense, logits, cluster_mask, params = batch_inputs(1)
  run = jax.jit(lambda key: bnpool.dense_bn_pool(
      dense.x, dense.adj, logits, dense.node_mask,
      cluster_mask=cluster_mask, params=params, rng=key))
  mean = bnpool.dense_bn_pool(dense.x, dense.adj, logits, dense.node_mask,
                              cluster_mask=cluster_mask, params=params)
  out = run(jax.random.key(0))
  blocks = np.asarray(params["K"], np.float64)
  recon = []
  for i, (n, k) in enumerate(zip(dense.n_node, REAL_CLUSTERS)):
    if n == 0:
      continue
    s = np.asarray(out.s[i, :n, :k], np.float64)
    np.testing.assert_allclose(s.sum(1), 1.0, rtol=1e-5)
    alpha, beta = concentrations(logits[i, :n])
    recon.append(graph_losses(s, dense.adj[i, :n, :n].astype(np.float64),
                              blocks, alpha, beta, 1.0)["reconstruction"])
  np.testing.assert_allclose(float(out.aux["reconstruction"]),
                             np.mean(recon), rtol=1e-5)
  for key in ("kl", "k_prior"):
    np.testing.assert_allclose(float(out.aux[key]), float(mean.aux[key]),
                               rtol=1e-6)
  assert not np.allclose(np.asarray(out.s), np.asarray(mean.s))
  # The first stick of graph 0's nodes: v = s_0, mean over 400 draws.
  draws = jax.vmap(lambda key: run(key).s[0, :, 0])(
      jax.random.split(jax.random.key(1), 400))
  alpha, beta = concentrations(logits[0])
  n = dense.n_node[0]
  expected = (alpha / (alpha + beta))[:n, 0]
  spread = np.sqrt(alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
                   )[:n, 0]
  assert np.all(np.abs(np.asarray(draws.mean(0))[:n] - expected)
                < 5 * spread / np.sqrt(400) + 1e-3)


def gamma_draw_slope(concentration, draw):
  """d x / d a of a Gamma(a, 1) draw x held at its quantile (implicit
  reparameterisation): -(d P(a, x) / d a) / p(x; a), float64, the
  derivative of the regularised incomplete gamma P by central
  differences."""
  from scipy import special
  step = 1e-6 * concentration
  slope_p = (special.gammainc(concentration + step, draw)
             - special.gammainc(concentration - step, draw)) / (2 * step)
  density = np.exp((concentration - 1) * np.log(draw) - draw
                   - special.gammaln(concentration))
  return -slope_p / density


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_beta_draws_are_jax_draws_with_the_implicit_gradient(make_key):
  """beta_draw draws what jax.random.beta draws, bit for bit (raw and typed
  keys); its gradient is that of x = G_a / (G_a + G_b) with each Gamma
  draw's implicit reparameterisation slope, against a float64
  reference."""
  rng = np.random.default_rng(0)
  alpha = np.exp(rng.normal(0.0, 1.2, 64)).astype(np.float32)
  beta = np.exp(rng.normal(0.0, 1.2, 64)).astype(np.float32)
  keys = jax.random.split(make_key(7), 64)
  draws = jax.vmap(bnpool.beta_draw)(keys, alpha, beta)
  np.testing.assert_array_equal(
      np.asarray(draws), np.asarray(jax.vmap(jax.random.beta)(keys, alpha,
                                                               beta)))
  split = jax.vmap(jax.random.split)(keys)
  gamma = lambda k, a: np.exp(np.asarray(
      jax.vmap(jax.random.loggamma)(k, a), np.float64))
  g_alpha, g_beta = gamma(split[:, 0], alpha), gamma(split[:, 1], beta)
  total = (g_alpha + g_beta) ** 2
  expected = (g_beta / total * gamma_draw_slope(alpha.astype(np.float64),
                                                g_alpha),
              -g_alpha / total * gamma_draw_slope(beta.astype(np.float64),
                                                  g_beta))
  grads = jax.vmap(jax.grad(bnpool.beta_draw, argnums=(1, 2)))(keys, alpha,
                                                                beta)
  for got, want in zip(grads, expected):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5)


def test_stick_draw_gradients_are_jax_beta_gradients():
  """Differentiated as training does (the gradient of a loss over all
  sticks, through their vmap), including concentrations so small that
  draws underflow, the gradients are jax.random.beta's to float32
  rounding."""
  rng = np.random.default_rng(1)
  shape = (2, 5, 3)
  alpha = np.exp(rng.normal(0.0, 1.5, shape)).astype(np.float32)
  alpha[0, 0] = 0.005
  beta = np.exp(rng.normal(0.0, 1.5, shape)).astype(np.float32)
  weights = rng.normal(size=shape).astype(np.float32)
  key = jax.random.PRNGKey(5)

  def loss(draw):
    def total(a, b):
      keys = layers.position_keys(key, shape).reshape(-1, 2)
      draws = jax.vmap(draw)(keys, a.reshape(-1), b.reshape(-1))
      return jnp.sum(weights * draws.reshape(shape))
    return jax.jit(jax.grad(total, argnums=(0, 1)))(alpha, beta)

  for got, want in zip(loss(bnpool.beta_draw), loss(jax.random.beta)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                               rtol=2e-5, atol=1e-30)


@pytest.mark.parametrize("make_key", [jax.random.key, jax.random.PRNGKey])
def test_draws_take_typed_and_raw_keys_and_ignore_padding(make_key):
  """The trainer's keys are raw uint32 pairs; a graph's draws are the same
  whatever the batch's padding."""
  dense, logits, cluster_mask, params = batch_inputs(5)
  run = lambda x, adj, s_logits, mask: bnpool.dense_bn_pool(
      x, adj, s_logits, mask, cluster_mask=cluster_mask, params=params,
      rng=make_key(3))
  small = run(dense.x, dense.adj, logits, dense.node_mask)
  pad = 5
  grow = lambda v, axes: np.pad(v, [(0, pad) if a in axes else (0, 0)
                                    for a in range(v.ndim)])
  big = run(grow(dense.x, (1,)), grow(dense.adj, (1, 2)),
            grow(logits, (1,)), grow(dense.node_mask, (1,)))
  nodes = dense.x.shape[1]
  np.testing.assert_allclose(np.asarray(big.s[:, :nodes]),
                             np.asarray(small.s), rtol=1e-6, atol=1e-7)
  for key in bnpool.AUX_NAMES:
    np.testing.assert_allclose(float(big.aux[key]), float(small.aux[key]),
                               rtol=1e-5)


def test_gradients_through_the_draws_are_finite_and_reach_the_logits():
  dense, logits, cluster_mask, params = batch_inputs(2)

  def loss(s_logits, blocks):
    out = bnpool.dense_bn_pool(dense.x, dense.adj, s_logits,
                               dense.node_mask, cluster_mask=cluster_mask,
                               params={"K": blocks}, rng=jax.random.key(4))
    return sum(out.aux.values()) + jnp.sum(out.x ** 2) + jnp.sum(out.adj)

  grads = jax.grad(loss, argnums=(0, 1))(logits, params["K"])
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  real = dense.node_mask[..., None]
  assert np.any(np.asarray(grads[0]) * real != 0)
  assert not np.any(np.asarray(grads[0]) * ~real)


def test_a_block_model_reconstruction_prefers_the_true_partition():
  """Two triangles joined by nothing: the hard partition into them, with
  K = 10 (I - 1 1^T / 2), reconstructs A far better than one cluster."""
  adj = np.zeros((1, 6, 6), np.float32)
  for block in ((0, 1, 2), (3, 4, 5)):
    for i in block:
      for j in block:
        adj[0, i, j] = float(i != j)
  blocks = {"K": jnp.asarray(10.0 * (2 * np.eye(2) - 1))}
  x = np.ones((1, 6, 1), np.float32)
  split = np.zeros((1, 6, 2), np.float32)
  split[0, :3] = (20.0, -20.0)       # stick ~1: cluster 0
  split[0, 3:] = (-20.0, 20.0)       # stick ~0: cluster 1
  joined = np.tile(np.array([20.0, -20.0], np.float32), (1, 6, 1))
  losses = [bnpool.dense_bn_pool(x, adj, logits, params=blocks)
            .aux["reconstruction"] for logits in (split, joined)]
  assert float(losses[0]) < 0.5 * float(losses[1])


def test_classifier_owns_the_block_matrix_and_samples_only_in_training():
  config = dp.preset("paper", pooling="bnpool", pool_ratios=(0.5, 0.5))
  assert config.needs_dense and POOLING["bnpool"].stochastic
  dense, _, _, _ = inputs(3)
  model = DiffPool(config, num_classes=2, max_nodes=dense.x.shape[1])
  variables = model.init(jax.random.key(0), dense.x, dense.adj,
                         dense.node_mask)
  widths = config.cluster_counts(dense.x.shape[1])
  for level, width in enumerate(widths):
    blocks = variables["params"][f"pool{level}_K"]
    np.testing.assert_array_equal(np.asarray(blocks),
                                  2 * np.eye(width) - 1)
  assert variables["params"]["assign_head0"]["kernel"].shape[-1] == (
      bnpool.logit_columns(widths[0]))
  evaluate = lambda: model.apply(variables, dense.x, dense.adj,
                                 dense.node_mask)[0]
  np.testing.assert_array_equal(np.asarray(evaluate()),
                                np.asarray(evaluate()))
  train = lambda key: model.apply(variables, dense.x, dense.adj,
                                  dense.node_mask, train=True,
                                  rngs=rng_streams(key),
                                  mutable=["batch_stats"])[0][0]
  assert not np.allclose(np.asarray(train(jax.random.key(1))),
                         np.asarray(train(jax.random.key(2))))
  loss = lambda params: jnp.sum(model.apply(
      {**variables, "params": params}, dense.x, dense.adj, dense.node_mask,
      train=True, rngs=rng_streams(jax.random.key(1)),
      mutable=["batch_stats"])[0][1][0].aux["k_prior"])
  grad = jax.grad(loss)(variables["params"])["pool0_K"]
  assert np.any(np.asarray(grad) != 0)


def test_refusals_name_the_argument():
  dense, logits, cluster_mask, params = batch_inputs(4)
  from tests.test_pooling_family import inputs as both
  _, sparse, _, _ = both(4)
  with pytest.raises(ValueError, match="dense_bn_pool needs the dense"):
    bnpool.dense_bn_pool(sparse.x, sparse.adj, logits, sparse.node_mask,
                         params=params)
  with pytest.raises(ValueError, match="'s_logits' has 5 columns"):
    bnpool.dense_bn_pool(dense.x, dense.adj, logits[..., :5],
                         dense.node_mask, params=params)
  with pytest.raises(ValueError, match=r"parameter 'K' has shape \(3, 3\)"):
    bnpool.dense_bn_pool(dense.x, dense.adj, logits, dense.node_mask,
                         params={"K": jnp.zeros((3, 3))})
  with pytest.raises(ValueError, match="too few for pooling='bnpool'"):
    DiffPool(dp.preset("paper", pooling="bnpool"), 2, 6).init(
        jax.random.key(0), dense.x[:, :6], dense.adj[:, :6, :6],
        dense.node_mask[:, :6])
