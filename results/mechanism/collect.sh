#!/bin/bash
# copy the compact results of every finished mechanism run to results/mechanism/ and rewrite summary.md
cd /work/mech-wt
R=/work/main/results/mechanism
for d in runs/mech/*/checkpoint; do
  run=$(dirname $d); name=$(basename $run); mkdir -p $R/$name
  cp $run/config.json $run/metrics.jsonl $run/miscopy.jsonl $run/dev_pass_at_k.json $run/judge_samples.jsonl $R/$name/ 2>/dev/null
done
PYTHONPATH=. /work/venv/bin/python -m analysis.miscopy summary $(ls -d runs/mech/*/checkpoint | xargs -n1 dirname) --output $R/summary.md > /dev/null
