"""Provenance: what can be known about how an image was built, and Tollgate's signed verdict about it."""
