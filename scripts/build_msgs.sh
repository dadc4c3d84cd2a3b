#!/usr/bin/env bash
# Build and install the uva_msgs interface package into the venv with plain cmake.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
# The wheels' exported cmake files name the wheel builder's Python/numpy include dirs; point
# them at this venv's (see DESIGN.md section 4).
PYINC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
NPINC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
grep -rl "/opt/python/cp311-cp311" "$VENV/share" --include='*Export*.cmake' 2>/dev/null | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/core/include#$NPINC#g" "$f"
done || true
source "$ROOT/scripts/ros_env.sh"
BUILD="${UVA_MSGS_BUILD_DIR:-$ROOT/build/uva_msgs}"  # override for a build tree of another checkout
mkdir -p "$(dirname "$BUILD")"
cmake -S "$ROOT/ros2_ws/src/uva_msgs" -B "$BUILD" -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF > "$BUILD.log" 2>&1 \
  || { tail -30 "$BUILD.log"; exit 1; }
cmake --build "$BUILD" -j2 >> "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
cmake --install "$BUILD" >> "$BUILD.log" 2>&1 || { tail -30 "$BUILD.log"; exit 1; }
# make the generated Python package importable from the venv
SITE="$("$PY" -c 'import site; print(site.getsitepackages()[0])')"
for d in "$VENV"/lib/python3*/site-packages/uva_msgs "$VENV"/local/lib/python3*/dist-packages/uva_msgs; do
  if [ -d "$d" ] && [ "$(dirname "$d")" != "$SITE" ]; then ln -sfn "$d" "$SITE/uva_msgs"; fi
done || true
echo "uva_msgs built and installed into $VENV"
