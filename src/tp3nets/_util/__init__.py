"""Private helpers shared across the package: argument checks and warnings."""
