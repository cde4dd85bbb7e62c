#!/bin/bash
# The mechanism runs (docs/results.md, pre-registered): resumable, 2 at a time, one torch thread each.
cd /work/mech-wt
export PYTHONPATH=. OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
PY=/work/venv/bin/python
COMMON="--reward process --threads 1 --eval_data toy_data/heldout.jsonl --eval_n 64 --eval_limit 48 --steps 40 --group_size 8 --prompts_per_step 8 --eval_before false --log_group_every 1"
one() {  # name seed judge advantage train_data
  local out=runs/mech/$1
  [ -d "$out/checkpoint" ] && return 0
  mkdir -p "$out"
  $PY -m analysis.miscopy train -- $COMMON --seed $2 --judge $3 --advantage $4 --train_data $5 --output_dir $out > $out/log.txt 2>&1
  echo "$(date +%T) done $1 rc=$?"
}
export -f one; export COMMON PY
T=toy_data/stage1_train.jsonl
{
echo "v3_delta_s3 3 toy-v3 delta $T"; echo "v3_delta_s4 4 toy-v3 delta $T"
echo "fixed_delta_s3 3 toy delta $T"; echo "fixed_delta_s4 4 toy delta $T"
echo "v3_fromzero_s3 3 toy-v3 delta_from_zero $T"; echo "v3_fromzero_s4 4 toy-v3 delta_from_zero $T"
echo "v3_end_s3 3 toy-v3 end $T"; echo "v3_end_s4 4 toy-v3 end $T"
echo "v3_groupnorm_s3 3 toy-v3 group_norm $T"; echo "v3_groupnorm_s4 4 toy-v3 group_norm $T"
echo "v3_delta_s2 2 toy-v3 delta $T"
for s in 0 1 2; do echo "fixed_delta_s$s $s toy delta $T"; done
for s in 0 1 2 3 4; do echo "fresh_delta_s$s $s toy-fresh delta $T"; done
} | xargs -P 2 -L 1 bash -c 'one "$@"' _
# (c): seed 2 with seed 3's data order and seed 3 with seed 2's (the files permute the rows; see analysis/miscopy.py)
$PY -m analysis.miscopy reorder --seed_run runs/mech/v3_delta_s2 --order_run runs/mech/v3_delta_s3 --output runs/mech/data/seed2_order3.jsonl
$PY -m analysis.miscopy reorder --seed_run runs/mech/v3_delta_s3 --order_run runs/mech/v3_delta_s2 --output runs/mech/data/seed3_order2.jsonl
{ echo "v3_delta_s2_order3 2 toy-v3 delta runs/mech/data/seed2_order3.jsonl"; echo "v3_delta_s3_order2 3 toy-v3 delta runs/mech/data/seed3_order2.jsonl"; } | xargs -P 2 -L 1 bash -c 'one "$@"' _
echo "$(date +%T) all done"
