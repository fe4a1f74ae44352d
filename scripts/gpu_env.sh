# Set-up of a device call of scripts/gpu_suite.py; `source` it after
# setting OUT. The device has torch but no package registry: the wheels in .gpu/whl/ (kornia, kornia_rs,
# omegaconf for its Python) are installed into /tmp/site unless NO_WHEELS is set (a CPU check in the venv).
# Defines PY, the T helper (a step with a time limit, logged) and writes $OUT/machine.txt.
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 SSDD_PROGRESS=0 SSDD_CACHE_DIR=${SSDD_CACHE_DIR:-/tmp/ssdd_cache}
PY=${PY:-python3}
if [ -z "${NO_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/site
fi
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; $PY -c "import torch; print(torch.__version__)"; date -u) > "$OUT/machine.txt"
T() { local s=$1; shift; echo "== $(date -u +%T) $* (limit ${s}s)"; timeout "$s" "$@"; echo "== exit $?"; }
