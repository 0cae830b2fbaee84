"""PostgreSQL backups: one layout for both deployment modes, verify, restore."""
