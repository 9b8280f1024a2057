"""Connection protocols: bytes in, per-stream events out (h1, h2, h3)."""
