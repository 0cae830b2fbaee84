"""Day-2 operations on a running stack: doctor, failover drills, benchmarks."""
