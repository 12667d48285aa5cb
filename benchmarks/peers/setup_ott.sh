#!/usr/bin/env bash
# Creates a separate virtual env with OTT-JAX (CPU jax) for benchmarks/peers/ott_w2.py.
# Optional, outside the otmap package: otmap itself never imports jax.
#
#   bash benchmarks/peers/setup_ott.sh [VENV]      # default VENV: /tmp/ott-venv
#
# The pins are the versions this peer was verified with (see benchmarks/peers/README.md);
# override them with OTT_PIP_SPEC="ott-jax[neural]==X jax==Y ..." if you must.
set -euo pipefail

VENV="${1:-/tmp/ott-venv}"
PYTHON="${PYTHON:-python3}"
# verified set (2026-12, Python 3.11.7, CPU): jax 0.8.1, not the newest 0.10.x, whose CPU build runs
# the vmapped L-BFGS conjugate solve of W2NeuralDual ~15x slower (see README.md)
SPEC="${OTT_PIP_SPEC:-ott-jax[neural]==0.6.0 jax==0.8.1 jaxlib==0.8.1 jaxopt==0.8.5 flax==0.12.6 optax==0.2.8 lineax==0.1.0 equinox==0.13.8 diffrax==0.7.2 numpy==2.4.6}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
# CPU jax only: plain "jax" from PyPI has no CUDA plugin unless jax[cuda*] is asked for
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet $SPEC

echo "installed into $VENV:"
"$VENV/bin/python" -m pip freeze | grep -i -E "ott|jax|flax|optax|numpy" || true
"$VENV/bin/python" - <<'EOF'
import jax
import ott
print(f"ott {ott.__version__}, jax {jax.__version__}, backend {jax.default_backend()}, "
      f"devices {jax.devices()}")
EOF
