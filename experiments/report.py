"""`python -m experiments.report` in a checkout: the installed command
`diffpool-report` (diffpool_jax.cli.report)."""

from diffpool_jax.cli.report import console_main

if __name__ == "__main__":
  console_main()
