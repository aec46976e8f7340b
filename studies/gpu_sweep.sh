#!/bin/bash
# Run study configs in parallel on a GPU machine (the `run` tool's device; the repo root is the working directory).
# usage: bash studies/gpu_sweep.sh DATA_DIR CONFIG...   (DATA_DIR holds cifar10_subset.npz; writes $OUT/summary.md)
data_dir=$(realpath "$1"); shift
export PYTHONPATH=$PWD/src PADHASH_SHARED_DATA=$data_dir OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  ( start=$(date +%s)
    timeout "${RUN_LIMIT_S:-480}" python3 -m padhash attack padhash --config "$cfg" --out "/tmp/runs/$name" --device cuda --no-progress \
      > "/tmp/$name.log" 2>&1
    echo "$name rc=$? wall_s=$(( $(date +%s) - start ))" >> /tmp/walls.txt ) &
done
wait
cat /tmp/walls.txt
python3 studies/summarize.py /tmp/runs/* > "$OUT/summary.md" 2>&1; cat "$OUT/summary.md"
tar czf "$OUT/results.tgz" --exclude="*.safetensors" --exclude="*.pt" --exclude="*.png" -C /tmp runs $(cd /tmp && ls *.log) 2>/dev/null
for f in /tmp/*.log; do grep -q Traceback "$f" && { echo "== $f"; tail -5 "$f"; }; done
