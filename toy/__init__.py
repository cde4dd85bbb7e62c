"""The toy world: a task, a 1M-parameter base and judges small enough for a laptop CPU (docs/toy-world.md).

    world.py            the task (multi-step arithmetic, "###" steps), the char tokenizer, the base's pretraining,
                        the problem sets (python -m toy.world data | test)
    reading.py          how the toy judges read a text: stated results, the reference's checkpoints
    llm_like_judge.py   the default stand-in judge (--judge toy): a rubric read the way an LLM judge errs
    exact_judges.py     the exact rubric, the checkpoint counter and the no-reference judge (--judge toy-rubric, ...)
    mixed_world.py      the mixed toy world: math, science and code problems (docs/toy-mixed.md)
    mixed_build.py      its tokenizer, base and problem sets (python -m toy.mixed_build pretrain | data)
    mixed_judges.py     its stand-in judge per domain (--judge toy-mixed)

Who imports it: config.build_judge (lazily, for --judge toy*), plumbing.common (lazily, for --model toy and the
toy:* problem sets), the analyses, scripts and tests. It imports the method's files (judge.py's score parsing), the
domains and the plumbing; the method never imports it.
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOY_BASE = os.path.join(REPO, "toy_base")  # the committed, pretrained toy base model (python -m toy.world base)
TOY_DATA = {  # the committed toy problem sets (python -m toy.world data)
    "toy:train": os.path.join(REPO, "toy_data", "stage1_train.jsonl"),  # HARD problems the base fails in 512 samples
    "toy:heldout": os.path.join(REPO, "toy_data", "heldout.jsonl"),  # fresh HARD problems, not mined: development
    "toy:test": os.path.join(REPO, "toy_data", "test.jsonl"),  # the untouched test split: the final reproduction only
}
