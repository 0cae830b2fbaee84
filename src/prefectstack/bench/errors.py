class BenchError(Exception):
    """A benchmark could not run (a tool is missing, the stack does not answer)."""
