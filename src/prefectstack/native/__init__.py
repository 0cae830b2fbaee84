"""Native mode: the stack's topology as supervised local processes."""
