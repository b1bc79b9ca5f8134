"""The image corpora: real Debian roots the pipeline must find clean, and harmless attack reproductions it must not."""
