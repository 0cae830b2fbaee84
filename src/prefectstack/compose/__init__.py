"""Docker Compose mode: the compose runtime, day-2 operations through it, the
registry-free local images, and what runs inside the stack's containers."""
