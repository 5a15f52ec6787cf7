"""`python -m experiments.sweep` in a checkout: the installed command
`diffpool-sweep` (diffpool_jax.cli.sweep)."""

from diffpool_jax.cli.sweep import console_main

if __name__ == "__main__":
  console_main()
