#!/usr/bin/env bash
# The Python packages the GPU benches need beyond a lent machine's torch, as wheels to carry there:
# pydantic and its dependencies, PyYAML and safetensors (the configs, the saved models) and Pillow
# (the OOD guard's complexity score, bench/guard_devices.py), at the versions requirements.lock
# pins, for the machine's Python (3.12, x86-64 manylinux). Run here, where the package index is
# reachable:
#
#   bash bench/gpu_wheels.sh            # -> .whl/ (ignored: .git/info/exclude)
#
# then, on the device, carry .whl and data and begin the command with
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#   export PYTHONPATH=/tmp/site
# (bench/label_efficiency_gpu.sh and bench/gpu_checks.sh say what each bench runs there).
set -euo pipefail
dest=${1:-.whl}
python=${PYTHON:-python3}
packages="pydantic pydantic-core annotated-types typing-inspection typing-extensions pyyaml
  safetensors pillow"
pins=()
for name in $packages; do
  pin=$(grep -i "^${name}==" requirements.lock) || { echo "requirements.lock pins no $name" >&2; exit 1; }
  pins+=("$pin")
done
exclude=.git/info/exclude
if [ -d .git ] && [ "${dest#/}" = "$dest" ] && ! grep -qx "/$dest/" "$exclude" 2>/dev/null; then
  mkdir -p .git/info && echo "/$dest/" >>"$exclude"
fi
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${platforms[@]}" -d "$dest" "${pins[@]}"
ls "$dest"
echo "on the device (carry $dest): python3 -m pip install -q --no-index --no-deps --target /tmp/site $dest/*.whl && export PYTHONPATH=/tmp/site"
