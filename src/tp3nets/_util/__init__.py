"""Private helpers shared across the package: argument checks, warnings, and a cheap walk
over a module's tensors."""
