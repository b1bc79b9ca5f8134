"""Detection rules as data (YARA, heuristics, IOCs) and the loader that validates them."""
