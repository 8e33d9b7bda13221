#!/usr/bin/env bash
# Create a throw-away virtual environment holding RecBole 1.2.1 for
# benchmarks/sasrec_vs_recbole.py. RecBole is installed outside the repository only.
#
#   bash benchmarks/recbole_env.sh [VENV_DIR]        # default /tmp/recbole-venv
#
# The venv is made with --system-site-packages so that it reuses this machine's CPU
# torch (the one genrecsys runs on): pip is held to that exact torch version by a
# constraint, so it never downloads another torch (and never a CUDA build).
#
# Pins inside the venv (they shadow the system packages there only), found by trying:
#   numpy==1.23.5       RecBole 1.2.1's MRR metric calls np.float (gone in numpy 1.24) and
#                       ray 2.6.3 (a hard RecBole dependency, ray<=2.6.3) uses np.bool8
#   pandas<2.3, scipy<1.14, scikit-learn<1.6
#                       the releases that still work with numpy 1.23 (pandas 3 needs newer)
#   setuptools>=77,<81  ray 2.6.3 imports pkg_resources, removed from newer setuptools;
#                       torch 2.13 asks for >=77
# Re-running is cheap: an existing venv that already imports RecBole 1.2.1 is kept.
set -euo pipefail

VENV="${1:-/tmp/recbole-venv}"
PYTHON="${PYTHON:-python3}"

check() {
    "$VENV/bin/python" -W ignore - <<'EOF'
import recbole, torch, numpy, pandas
assert recbole.__version__ == "1.2.1", recbole.__version__
assert torch.version.cuda is None, f"a CUDA torch ({torch.__version__}) got into the venv"
from recbole.config import Config  # noqa: F401
from recbole.model.sequential_recommender import SASRec  # noqa: F401
from recbole.trainer import Trainer  # noqa: F401
import recbole.evaluator.metrics as m
m.MRR.metric_info(None, numpy.array([[False, True]]))  # np.float path: fails on numpy>=1.24
print(f"recbole {recbole.__version__}, torch {torch.__version__} ({torch.__file__}), "
      f"numpy {numpy.__version__}, pandas {pandas.__version__}")
EOF
}

if [[ -x "$VENV/bin/python" ]] && check >/dev/null 2>&1; then
    echo "recbole_env: $VENV already holds a working RecBole 1.2.1:" >&2
    check
    exit 0
fi

TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])')"
if [[ "$TORCH_VERSION" != "2.13.0" ]]; then
    echo "recbole_env: note: system torch is $TORCH_VERSION (the benchmark was set up on 2.13.0); pinning to it" >&2
fi

echo "recbole_env: creating $VENV (system site packages, torch==$TORCH_VERSION kept)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv --system-site-packages "$VENV"

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" >"$CONSTRAINTS"

# One resolve: RecBole 1.2.1 with its declared dependencies (ray 2.6.3 included) plus the pins.
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" \
    "recbole==1.2.1" \
    "numpy==1.23.5" "pandas>=2.0,<2.3" "scipy<1.14" "scikit-learn<1.6" \
    "setuptools>=77,<81" \
    2> >(grep -v "dependency conflicts\|which is incompatible\|dependency resolver does not\|is ignored: it is neither" >&2 || true)

check
