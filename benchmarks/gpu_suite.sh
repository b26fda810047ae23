#!/usr/bin/env bash
# Copyright 2026 The fedhelp_jax Authors. Licensed under the Apache License 2.0.
# Every benchmark in one run on one GPU (see benchmarks/gpu_suite.py):
#   bash benchmarks/gpu_suite.sh              # writes benchmarks/results/*-gpu.json
#   bash benchmarks/gpu_suite.sh --smoke --out_dir "$(mktemp -d)"
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.gpu_suite "$@"
