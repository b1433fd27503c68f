#!/usr/bin/env bash
# Regenerates docker/requirements-{gpu,cpu,bootstrap}.lock from the human-edited *.in files.
# Needs uv on PATH (install it in a throwaway venv, never in the project's .venv).
# Run from the repository root:  bash docker/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."

common=(--generate-hashes --python-platform x86_64-manylinux_2_28 --index-url https://pypi.org/simple
        --custom-compile-command "bash docker/lock.sh" --quiet)

# GPU: paper era. --exclude-newer keeps every transitive dependency at a release that existed
# when the pinned Unsloth pair came out (2025-12-08), so the set is one that could be
# installed then, not today's latest.
uv pip compile docker/requirements-gpu.in "${common[@]}" --python-version 3.11 \
    --exclude-newer 2025-12-09T00:00:00Z -o docker/requirements-gpu.lock

# Bootstrap: the uv that installs Python 3.11 in the GPU image (run by Ubuntu 22.04's python3.10).
uv pip compile docker/requirements-bootstrap.in "${common[@]}" --python-version 3.10 \
    --exclude-newer 2025-12-09T00:00:00Z -o docker/requirements-bootstrap.lock

# CPU: the pins of pyproject.toml. torch==2.13.0+cpu lives on the PyTorch CPU index, which this
# script reads when reachable; TORCH_CPU_WHEELS may name a folder holding that exact wheel instead.
cpu_src=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
if [[ -n "${TORCH_CPU_WHEELS:-}" ]]; then cpu_src=(--find-links "$TORCH_CPU_WHEELS"); fi
uv pip compile docker/requirements-cpu.in "${common[@]}" --python-version 3.11 "${cpu_src[@]}" \
    -o docker/requirements-cpu.lock
