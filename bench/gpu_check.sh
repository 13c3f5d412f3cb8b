#!/usr/bin/env bash
# GPU check of IonPlan on a bare CUDA machine (NumPy, SciPy, CuPy installed; no internet).
#
#   bash bench/gpu_check.sh            # from the repository root or anywhere
#
# Wheels of the other packages the check needs (pydicom, array-api-strict, reportlab; the
# download command is in docs/benchmarks.md) are installed from the folder .whl/ (ignored by
# git) into a private folder, then
# the compiled CPU extensions are built in place (bench/build_extensions.py), then
# bench/gpu_check.py runs the CuPy tests, the kernel compilation cold and warm, bench_influence
# on CPU and GPU, bench_plan tg119 on GPU and CPU and `ionplan plan` on a TG-119-sized DICOM on
# the GPU, the CPU engine on 1-16 threads, and prints one table (also written to
# $OUT/table.md, beside $OUT/gpu_check.log). All of it within 9 minutes (a lent machine runs one
# command for at most 10): the steps get what the set-up leaves of 540 s and skip what no
# longer fits (the table says which).
set -uo pipefail
start=$SECONDS
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/ionplan-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/ionplan-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
# The compiled CPU extensions for this machine's Python (those built here do not load there):
# the CPU columns measure the engine as installed, not its NumPy fallback.
timeout 150 "$PYTHON" bench/build_extensions.py > /tmp/ionplan-build-extensions.log 2>&1 \
  || echo "building the CPU extensions failed (rc $?): /tmp/ionplan-build-extensions.log"
tail -n 1 /tmp/ionplan-build-extensions.log
exec "$PYTHON" bench/gpu_check.py --budget-s $((540 - (SECONDS - start))) "$@"
