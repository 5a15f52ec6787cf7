"""`python -m experiments.table` in a checkout: the installed command
`diffpool-table` (diffpool_jax.cli.table)."""

from diffpool_jax.cli.table import console_main

if __name__ == "__main__":
  console_main()
