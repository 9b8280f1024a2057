"""Master process supervising workers (the process-model issue wires this up)."""

from __future__ import annotations

from roadrunner.config import Config, ConfigError


def run_supervised(config: Config) -> int:
    """Multi-worker and reload modes are not available yet: say so instead of ignoring them."""
    feature = "--reload" if config.reload else f"--workers {config.workers}"
    raise ConfigError(f"{feature} is not available yet in this roadrunner version (single process only).")
