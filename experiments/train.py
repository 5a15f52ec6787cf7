"""`python -m experiments.train` in a checkout: the installed command
`diffpool-train` (diffpool_jax.cli.train)."""

from diffpool_jax.cli.train import console_main

if __name__ == "__main__":
  console_main()
