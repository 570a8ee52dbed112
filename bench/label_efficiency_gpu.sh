#!/usr/bin/env bash
# The whole label-efficiency study in one go on a lent GPU machine (the core with torch alone,
# plus pydantic, PyYAML and safetensors): every arm and seed of the GPU config as parallel
# processes on the one GPU (the networks are small: one process alone leaves most of it idle).
#
#   OUT=/tmp/le bash bench/label_efficiency_gpu.sh 450 0.75
#
# Arguments: the wall-clock budget in seconds (a guard: a job still training there stops and
# says so) and the share of the config's steps every arm runs, fixed in advance so that every
# arm has the same steps whatever the machine's load (bench/label_efficiency.py --scale).
# Writes label_efficiency.{md,json}, the log, and the per-job results (G's samples included) as
# one archive, label_efficiency_runs.tgz, under $OUT (else bench/results). JOBS sets the number
# of parallel processes (default 16, one per CPU core of the H100 machine). A dry run of the same
# path on CPU: DEVICE=cpu JOBS=2 STUDY_ARGS=--quick OUT=/tmp/le bash bench/label_efficiency_gpu.sh.
set -u
# shellcheck disable=SC2086  # STUDY_ARGS holds several words
budget=${1:-450}
scale=${2:-0.75}
out=${OUT:-bench/results}
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
"$python" bench/label_efficiency.py --device "${DEVICE:-cuda}" --jobs "${JOBS:-16}" \
  --budget-seconds "$budget" --scale "$scale" --config "${CONFIG:-pipelines/configs/label_efficiency.yaml}" \
  --out "$out" --runs "$out/label_efficiency_runs" ${STUDY_ARGS:-} >"$out/label_efficiency.log" 2>&1
status=$?
tail -n 1 "$out/label_efficiency.log"
tar czf "$out/label_efficiency_runs.tgz" -C "$out" label_efficiency_runs && rm -rf "$out/label_efficiency_runs"
exit $status
