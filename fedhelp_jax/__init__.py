# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
"""fedhelp_jax: compiled cross-silo federated learning on medical images."""
