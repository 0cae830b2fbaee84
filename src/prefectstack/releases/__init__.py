"""Prefect releases the stack runs: which are verified, the environment each
runs from, their schema migrations, and the upgrade from one to the next."""
