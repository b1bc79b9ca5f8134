"""Who signed an image: cosign keyed and keyless signatures and attestations, found in the registry and verified."""
