"""Private file helpers shared by weights, checkpoints and exports: regular-file reads
with size and digest checks, the reading of weight and checkpoint files (what a file is,
and its tensors), and atomic writes."""
