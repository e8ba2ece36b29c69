#!/usr/bin/env bash
# On a machine with a GPU: run the default study on it and print images/s per trial, trials in
# parallel and GPU memory per trial. Usage: bash bench/gpu_check.sh   (after `make install`)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
$BIN/python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("device:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
DB=$(mktemp -d)/gpu.duckdb
sed -e 's/resources: {cpu: 1, gpu: 0}/resources: {cpu: 1, gpu: 0.25}/' -e 's/max_concurrent: 2/max_concurrent: 4/' \
    -e 's/^name: ddsm-demo/name: gpu-check/' search_spaces/ddsm.yaml > /tmp/gpu_check.yaml
start=$(date +%s)
$BIN/study run /tmp/gpu_check.yaml --db "$DB" --no-report
echo "wall: $(( $(date +%s) - start )) s"
$BIN/python - "$DB" <<'PY'
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for tid, epochs, sec, gpu, n in con.execute("""SELECT trial_id, epochs_done, trial_seconds, gpu_mb,
        json_extract(config_json, '$.data.n_train')::INT FROM trials WHERE trial_seconds IS NOT NULL ORDER BY trial_id""").fetchall():
    print(f"trial {tid}: {n * epochs / sec:.0f} train images/s over {epochs} epochs ({sec:.1f} s incl. evaluation), peak GPU memory {gpu or 0:.0f} MiB")
PY
