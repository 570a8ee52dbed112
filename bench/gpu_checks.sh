#!/usr/bin/env bash
# The quality issue's GPU numbers in one go, on a lent GPU machine with torch alone (plus
# pydantic, PyYAML, safetensors and ART): the GPU profile end to end (bench/gpu_quality.py) and
# the adversarial GPU profile's PGD and TRADES models, trained from the start and measured with
# PGD-20 and AutoAttack (bench/robustness.py), side by side on the one GPU (the networks are
# small: one process alone leaves most of it idle). The standard row is a saved default model.
#
#   STANDARD=checkpoints/quality/gan_seed0 OUT=/tmp/gpu bash bench/gpu_checks.sh 420
#
# The argument is the wall-clock budget in seconds of the longest job (each job sizes its steps
# and epochs to it from a few timed steps, never raising them). Writes gpu_quality.{md,json},
# robustness.{md,json}, each model's robustness_<model>.json and one log per job under $OUT
# (else bench/results); PARTS="pgd trades" runs only those jobs. A dry run of the
# same code path on CPU: ADV_CONFIG=<a from_start profile on cpu> QUALITY_ARGS="--quick
# --device cpu" (each job then fights for the CPU's cores).
# Each adversarial job keeps RESERVE_S of its budget for calibration and measuring: on an H200
# shared by two jobs, calibration and FGSM and PGD-20 at three radii on 1,000 images took ~17 s
# together, and AutoAttack (5,000 Square queries) had not finished ~120 s later.
set -u
budget=${1:-420}
out=${OUT:-bench/results}
standard=${STANDARD:?STANDARD=DIR: a saved default classifier (bench/quality.py keeps one a seed)}
config=${ADV_CONFIG:-pipelines/configs/train_adversarial_gpu.yaml}
models=$(mktemp -d)
mkdir -p "$out"
python=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
robustness() { "$python" bench/robustness.py --config "$config" --standard "$standard" \
  --models-dir "$models" "$@"; }

# shellcheck disable=SC2086  # QUALITY_ARGS holds several words
parts=${PARTS:-quality pgd trades standard}
for part in $parts; do
  case $part in
    quality) "$python" bench/gpu_quality.py --budget-s $((budget - 60)) --gan-share 0.15 \
      ${QUALITY_ARGS:-} >"$out/gpu_quality.log" 2>&1 & ;;
    pgd | trades) robustness --only "$part" --budget-s "$budget" --reserve-s "${RESERVE_S:-240}" \
      >"$out/robustness_$part.log" 2>&1 & ;;
    standard) robustness --only standard >"$out/robustness_standard.log" 2>&1 & ;;
    *) echo "unknown part $part (quality, pgd, trades, standard)" >&2; exit 2 ;;
  esac
done
failed=0
for job in $(jobs -p); do wait "$job" || failed=1; done
# each model's measurements, to merge with rows measured elsewhere (bench/robustness.py --report)
for folder in "$models"/*/; do
  name=$(basename "$folder")
  [ -f "$folder/robustness.json" ] && cp "$folder/robustness.json" "$out/robustness_$name.json"
done
robustness --only --report --out "$out" || failed=1
rm -rf "$models"
exit $failed
