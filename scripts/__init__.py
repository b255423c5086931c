"""Scripts run from the repository root (a package so tests reuse them)."""
