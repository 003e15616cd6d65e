#!/usr/bin/env bash
# Separate virtualenvs for the libraries the benchmarks compare with, under
# benchmarks/.envs/ (ignored by git), so that none of them touches .venv:
#
#   benchmarks/.envs/pcx         pcx 0.6.3 beside JAX 0.10.2
#   benchmarks/.envs/fabricpc    FabricPC 0.6.0 with JAX 0.10.2, and the Optuna of
#                                the platform for FabricPC's own tuner
#   benchmarks/.envs/pcx-pinned  pcx 0.6.3 with its own pins (PCX_PINNED=1 only)
#
# pcx 0.6.3 requires jax<0.5 and equinox<0.12; with those pins (JAX 0.4.38)
# it trained more slowly than it does beside JAX 0.10.2, so the default env
# installs it with --no-deps next to JAX 0.10.2 and the pure-Python packages
# it imports (equinox, jaxtyping, optax). Running this again brings an
# existing env to these versions.
set -euo pipefail

python=${PYTHON:-python3.11}
envs="$(cd "$(dirname "$0")" && pwd)/.envs"
jax=(jax==0.10.2 jaxlib==0.10.2 numpy==2.4.6)

make_env() {
  [ -x "$envs/$1/bin/python" ] || "$python" -m venv "$envs/$1"
  echo "$envs/$1/bin"
}

bin=$(make_env pcx)
"$bin/pip" install --quiet "${jax[@]}" optax==0.2.8 equinox==0.13.8 jaxtyping==0.3.11
"$bin/pip" install --quiet --no-deps pcx==0.6.3
"$bin/python" -c "import jax, pcx, pcx.predictive_coding; print('pcx ready, jax', jax.__version__)"

bin=$(make_env fabricpc)
"$bin/pip" install --quiet "${jax[@]}" fabricpc==0.6.0 optuna==5.1.0
"$bin/python" -c "import jax, fabricpc; print('fabricpc', fabricpc.__version__, 'ready, jax', jax.__version__)"

if [ "${PCX_PINNED:-0}" = 1 ]; then
  bin=$(make_env pcx-pinned)
  "$bin/pip" install --quiet pcx==0.6.3
  "$bin/python" -c "import jax, pcx; print('pcx (pinned) ready, jax', jax.__version__)"
fi
