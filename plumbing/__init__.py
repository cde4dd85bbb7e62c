"""A run's I/O, kept out of the method's files: flags, seeds, model and problem-set loading, checkpoints, logs, the
judge watch.

    run.py          Run: the run directory, metrics and groups logs, evaluation, checkpoints, --resume, progress bar
    cli.py          documented dataclass flags (arg, parse_cli) and one-line errors (fail, check_flags)
    common.py       seeds, threads, load_model ('toy' or a save_pretrained directory), load_problem_set, JSON files
    checkpoint.py   resumable training checkpoints: weights, optimiser, RNG, data order; written atomically
    logs.py         metrics.jsonl, TensorBoard / wandb, the progress bar
    judge_watch.py  probe_judge (one request before step 1) and JudgeMonitor (stop after dead steps)

Who imports it: the method at the root, analysis/, scripts/, toy/. It imports the method's lower files (judge.py,
evaluate.py), domains/ and scale/distributed.py; the toy world only through common.toy_path, lazily.
"""
