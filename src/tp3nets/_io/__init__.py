"""Private file helpers shared by weights, checkpoints and exports: regular-file reads
with size and digest checks, and atomic writes."""
