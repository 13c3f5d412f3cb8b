#!/usr/bin/env bash
# Build IonPlan's one-folder binary: dist/ionplan/ionplan (+ LICENSE, THIRD_PARTY_LICENSES.txt).
#
#   bash packaging/build.sh            # from the repository root or anywhere
#
# Creates (or reuses) the build environment build/venv/ (git-ignored), installs
# IonPlan with its runtime dependencies and PyInstaller into it, runs PyInstaller on
# packaging/ionplan.spec, and prints the size and build time. Environment variables:
#   PYTHON      interpreter for the build environment (default python3; 3.11-3.13)
#   BUILD_VENV  build environment folder (default build/venv)
#   DISTPATH    output folder (default dist); WORKPATH PyInstaller's work folder (default build)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
BUILD_VENV=${BUILD_VENV:-build/venv}
DISTPATH=${DISTPATH:-dist}
WORKPATH=${WORKPATH:-build}

start=$(date +%s)
if [ ! -x "$BUILD_VENV/bin/python" ]; then
  "$PYTHON" -m venv "$BUILD_VENV"
fi
"$BUILD_VENV/bin/python" -m pip install -q -c packaging/constraints.txt --upgrade pip
# A regular (not editable) install: the build sees exactly what a user install would, with the
# versions the binary was verified with (packaging/constraints.txt).
"$BUILD_VENV/bin/python" -m pip install -q -c packaging/constraints.txt . "pyinstaller>=6.10,<7"

"$BUILD_VENV/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath "$DISTPATH" --workpath "$WORKPATH" packaging/ionplan.spec

end=$(date +%s)
out="$DISTPATH/ionplan"
"$out/ionplan" --version
echo "built $out: $(du -s --si "$out" | cut -f1) ($(find "$out" -type f | wc -l) files) in $((end - start)) s"
