"""Training infrastructure: optimiser, train state, checkpoints, metric writers, parallelism."""
