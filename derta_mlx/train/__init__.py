"""Training: config, loss, the loop, checkpoints, the run directory, data-parallel ranks, the
memory estimate and the job that ties them together (job.py)."""
