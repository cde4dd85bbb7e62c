#!/bin/bash
cd /work/mech-wt
export PYTHONPATH=. OMP_NUM_THREADS=1
PY=/work/venv/bin/python
R=runs/mech/rollouts
O=/work/main/results/calibration-start-check/test_1004
mkdir -p $O
[ -s $R/test1004_base.jsonl ] || $PY evaluate.py --model toy --data toy_data/test.jsonl --n 16 --seed 12 --threads 1 --output_dir $R/test1004_base --rollouts $R/test1004_base.jsonl
[ -s $R/test1004_fixed_s3.jsonl ] || $PY evaluate.py --model runs/mech/fixed_delta_s3/checkpoint --data toy_data/test.jsonl --n 8 --seed 11 --threads 1 --output_dir $R/test1004_fixed_s3 --rollouts $R/test1004_fixed_s3.jsonl
for f in test1004_base test1004_fixed_s3; do for lv in outcome process; do
  $PY -m analysis.calibrate --rollouts $R/$f.jsonl --judge toy --level $lv --bootstrap_unit problem --process_limit 0 --out $O/${f}_toy_${lv} > $O/${f}_toy_${lv}.log 2>&1
done; done
echo calib done
