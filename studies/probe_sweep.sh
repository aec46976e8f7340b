#!/bin/bash
# usage: bash studies/probe_sweep.sh "args1" "args2" ...   runs each probe setting in parallel on the GPU
cd "$(dirname "$0")/.."  # repo root; the data file travels in runs/probe (gitignored, carried)
i=0
for a in "$@"; do
  i=$((i+1))
  mkdir -p /tmp/pc_$i; OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 python3 studies/probe.py dev=cuda data=runs/probe/cifar10_subset.npz cache=/tmp/pc_$i $a > /tmp/log_$i.txt 2>&1 &
done
wait
for f in /tmp/log_*.txt; do echo "== $f"; grep -v "^public\|^victim" $f | tail -8; done > $OUT/all.txt; grep -h SUMMARY /tmp/log_*.txt
