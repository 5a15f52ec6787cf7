"""The models: graph convolutions and layers, the hierarchical classifier,
its presets and the pooling operators (linen; diffpool_jax.nnx derives NNX)."""

from diffpool_jax.models import gatv2  # noqa: F401 (registers conv "gatv2")
