"""The mixed toy world: its three formats, the tokenizer, the committed splits (rebuilt byte for byte, no shared
question), the per-domain judges and their routing, and the toy Table 4's driver and report."""

import dataclasses
import json
import os

import pytest

import toy.world as toy
from domains.problems import load_problems, save_problems
from domains.rule_rewards import rule_reward
from plumbing.common import REPO
from scripts import table4, table4_report
from toy import mixed_build, mixed_world
from toy.mixed_judges import CodeJudge, MixedJudge, ScienceJudge, as_arithmetic_reference, chosen_value

MIXED = os.path.join(REPO, "toy_data", "mixed")
EXACT = dict(misunderstand=0, attention=(1.0, 0.0, 1.0), false_alarm=0, fooled=0, partial_credit=0)

# 47 +8 *2 -5 +3: values 55, 110, 105, 108
SCIENCE_Q = "T=47C; heat 8, double, cool 5, heat 3. T? A)102 B)113 C)105 D)108"
SCIENCE_REF = (
    "Heating by 8 and doubling brings it to 110C. Cooling by 5 and heating by 3 brings it to 108C. That is option D."
)
SCIENCE_RIGHT = "47+8=55###55*2=110###110-5=105###105+3=108###Answer: D"
CODE_Q = "Code: read n, add 8, double, subtract 5, add 3, print n."
CODE_RIGHT = "```python\nn=int(input())\nn=n+8\nn=n*2\nn=n-5\nn=n+3\nprint(n)\n```"
CODE_WRONG = CODE_RIGHT.replace("n=n-5", "n=n+5")


def test_science_problem_parts_hand_checked():
    start, ops = mixed_world.parse_science(SCIENCE_Q)
    assert (start, ops) == (47, [("+", 8), ("*", 2), ("-", 5), ("+", 3)])
    # each step misread (sign flipped or doubling read as +2), then skipped: -8 gives 39*2-5+3 = 76, no +8 94-5+3 = 92,
    # +2 for *2 gives 57-5+3 = 55, no *2 53; +5 118, no -5 113; -3 102, no +3 105
    assert mixed_world.misread_values(start, ops) == [76, 92, 55, 53, 118, 113, 102, 105]
    assert as_arithmetic_reference(SCIENCE_REF) == toy.reference_solution(start, ops).rsplit(" The answer", 1)[0]
    assert chosen_value(SCIENCE_Q, SCIENCE_RIGHT) == 108 and chosen_value(SCIENCE_Q, "Answer: E") is None
    assert [mixed_world.LETTER_OF_DIGIT[int(v) % 10] for v in ("102", "113", "105", "108")] == list("ABCD")


def test_every_domain_model_style_is_graded_correct_and_references_differ_in_style():
    for domain in mixed_world.DOMAINS:
        for p in mixed_world.make_problems(domain, 4, 8, 8, seed=5, prefix="t"):
            response = mixed_world.model_response(p)
            assert rule_reward(p, response) == 1.0, (domain, response)  # code: run in the sandbox on its tests
            assert p.domain == domain and "###" not in p.reference
            if domain == "science":
                assert p.answer in "ABCD" and len(set(p.choices)) == 4 and p.choices[ord(p.answer) - 65] in p.question
            if domain == "code":
                assert "n=n" not in p.reference and len(json.loads(p.tests)["inputs"]) == 2


def test_cached_reward_runs_a_program_once():
    p = mixed_world.make_problems("code", 1, 3, 3, seed=9, prefix="c")[0]
    response = mixed_world.model_response(p)
    mixed_world._CODE_CACHE.clear()
    assert mixed_world.cached_reward(p, response) == mixed_world.cached_reward(p, "any words\n" + response) == 1.0
    assert len(mixed_world._CODE_CACHE) == 1  # keyed by the program, not the whole response
    assert mixed_world.cached_reward(p, "no program") == 0.0


def test_tokenizer_keeps_the_arithmetic_ids_and_adds_code_tokens():
    old, new = toy.build_tokenizer(), mixed_build.build_tokenizer()
    assert len(new) == len(old) + 3
    assert new(SCIENCE_RIGHT).input_ids == old(SCIENCE_RIGHT).input_ids  # math and science: the same ids
    ids = new(CODE_RIGHT, add_special_tokens=False).input_ids
    assert new.decode(ids) == CODE_RIGHT and new.convert_ids_to_tokens(ids)[0] == "```python"


# ------------------------------------------------------------------------------------------------ the splits
def test_committed_splits_are_rebuilt_byte_for_byte(tmp_path):
    mining = json.load(open(os.path.join(MIXED, "mining.json")))
    args = mixed_build.DataArgs(**mining["data_args"])
    sets = mixed_build.splits(args)
    sets["stage1_train"] = mixed_build.rebuild_train(args, mining["kept_ids"])
    for name in ("dev", "test", "easy", "stage1_train"):
        save_problems(sets[name], str(tmp_path / f"{name}.jsonl"))
        assert (tmp_path / f"{name}.jsonl").read_bytes() == open(os.path.join(MIXED, f"{name}.jsonl"), "rb").read()


def test_no_question_is_shared_between_files():
    hard = ("stage1_train", "dev", "test")
    files = {name: [p.question for p in load_problems(os.path.join(MIXED, f"{name}.jsonl"))] for name in hard}
    for name in ("stage1_train", "heldout", "test", "easy"):
        files[f"arithmetic {name}"] = [
            p.question for p in load_problems(os.path.join(REPO, "toy_data", f"{name}.jsonl"))
        ]
    for name in hard:
        assert len(files[name]) == len(set(files[name])), name
        for other, questions in files.items():
            if other != name:
                assert not set(files[name]) & set(questions), (name, other)


def test_dev_and_test_interleave_the_domains():
    for name in ("dev", "test"):
        domains = [p.domain for p in load_problems(os.path.join(MIXED, f"{name}.jsonl"))]
        assert domains[:6] == list(mixed_world.DOMAINS) * 2 and len(set(domains[:72])) == 3


# ------------------------------------------------------------------------------------------------ the judges
def test_science_judge_exact_rubric_and_slip():
    judge = ScienceJudge(**EXACT)
    slip = SCIENCE_RIGHT.replace("105+3=108###Answer: D", "105+3=113###Answer: B")  # a wrong sum, its letter
    no_letter = SCIENCE_RIGHT.replace("Answer: D", "")
    scores = judge.score_outcome([SCIENCE_Q] * 3, [SCIENCE_REF] * 3, [SCIENCE_RIGHT, slip, no_letter]).scores
    assert scores == [1.0, 0.25, 0.5]  # 5; a wrong answer after one checkpoint 2; on track, no answer 3
    segments = [part + "###" for part in SCIENCE_RIGHT.split("###")[:-1]] + ["Answer: D"]
    prefixes = judge.score_process([SCIENCE_Q], [SCIENCE_REF], [segments]).scores[0]
    assert prefixes == [0.75, 1.0, 1.0, 1.0, 1.0]  # a step on the path 4, then a checkpoint reached 5


def test_code_judge_reads_the_program_with_or_without_a_reference():
    judge = CodeJudge(skim=0, false_alarm=0, style_doubt=0, trust_reference=0, attention=(1.0, 0.0, 1.0))
    reference = "One expression does it:\n```python\nn = int(input())\nprint((((n + 8) * 2) - 5) + 3)\n```"
    with_ref = judge.score_outcome([CODE_Q] * 2, [reference] * 2, [CODE_RIGHT, CODE_WRONG]).scores
    without = judge.score_no_reference([CODE_Q] * 2, [CODE_RIGHT, CODE_WRONG]).scores
    assert with_ref == without == [1.0, 0.5]  # the flaw at line 3 of 4, in the last two: "the last stretch" = 3
    assert judge.score_outcome([CODE_Q], [reference], ["no code"]).scores == [0.0]


def test_default_judges_err_per_response_and_can_reorder_a_group():
    # Over 60 hard problems per domain: some wrong response scores >= 4 and some right one below 5 (errors on single
    # responses, not only per problem), as the paper's judge does.
    judge = MixedJudge()
    for domain in ("science", "code"):
        problems = mixed_world.make_problems(domain, 60, 8, 8, seed=21, prefix="j")
        right = [mixed_world.model_response(p) for p in problems]
        if domain == "science":  # right steps, then the next letter: a wrong final answer
            wrong = [r[:-1] + "ABCDA"["ABCD".index(r[-1]) + 1] for r in right]
        else:  # one operation too many
            wrong = [r.replace("\nprint", "\nn=n+1\nprint") for r in right]
        questions, refs = [p.question for p in problems] * 2, [p.reference for p in problems] * 2
        scores = judge.score_outcome(questions, refs, right + wrong, domains=[domain] * 120).scores
        assert any(s < 1.0 for s in scores[:60]) and any(s >= 0.75 for s in scores[60:]), domain


def test_mixed_judge_routes_by_domain_and_rejects_bad_domains():
    judge = MixedJudge()
    math_q, math_ref = "47 +8 *2", "Add 8, then double: that gives 110. The answer is 110."
    math_resp = "47+8=55###55*2=110###\\boxed{110}"
    routed = judge.score_outcome([math_q, CODE_Q], [math_ref, ""], [math_resp, CODE_RIGHT], domains=["math", "code"])
    alone = toy.LLMLikeJudge().score_outcome([math_q], [math_ref], [math_resp])
    assert routed.texts[0] == alone.texts[0] and routed.num_requests == 2
    assert judge.score_outcome([math_q], [math_ref], [math_resp]).texts == alone.texts  # domains=None: math
    process = judge.score_process(
        [math_q], [math_ref], [["47+8=55###", "55*2=110###", "\\boxed{110}"]], domains=["math"]
    )
    assert len(process.scores[0]) == 3
    with pytest.raises(ValueError, match="unknown \\['chemistry'\\]"):
        judge.score_outcome([math_q], [math_ref], [math_resp], domains=["chemistry"])
    with pytest.raises(ValueError, match="2 entries for 1 rows"):
        judge.score_outcome([math_q], [math_ref], [math_resp], domains=["math", "math"])


# ------------------------------------------------------------------------------------------------ Table 4
def test_table4_commands_route_the_judge_and_evaluate_the_dev_split():
    args = table4.Args(output_dir="out")
    run_dir, base = table4.stage1_command(args, "base", 1)
    assert run_dir == os.path.join("out", "s1", "base") and base[0] == "evaluate.py"
    assert base[base.index("--output_dir") + 1] == os.path.join(run_dir, "eval", "step_0000")
    _, process = table4.stage1_command(args, "process", 2)
    assert process[:5] == ["train_stage1.py", "--reward", "process", "--judge", "toy-mixed"]
    assert process[process.index("--model") + 1] == "toy_mixed_base" and "--steps" in process
    _, sft = table4.stage1_command(args, "sft", 0)
    assert sft[:2] == ["baselines.py", "sft"] and "--epochs" in sft and "--steps" not in sft
    with pytest.raises(SystemExit, match="unknown 'grpo'"):
        table4.stage1_command(args, "grpo", 0)


def test_table4_report_on_a_hand_made_run_directory(tmp_path):
    # dev file: math, science, code, math (interleaved); n = 16 samples per problem.
    problems = [mixed_world.make_problems(d, 1, 8, 8, seed=i, prefix="h")[0] for i, d in
                enumerate(["math", "science", "code", "math"])]  # fmt: skip
    dev = str(tmp_path / "dev.jsonl")
    save_problems(problems, dev)
    counts = {0: {"base": [0, 4, 16, 8], "outcome": [16, 0, 0, 0]}, 1: {"base": [2, 4, 0, 0], "outcome": [0, 0, 8, 0]}}
    for seed, by_method in counts.items():
        for method, c in by_method.items():
            out = tmp_path / "runs" / f"s{seed}" / method / "eval" / "step_0030"
            out.mkdir(parents=True)
            (out / "pass_at_k.json").write_text(json.dumps({"n": 16, "correct_counts": c}))
        (tmp_path / "runs" / f"s{seed}" / "base" / "eval" / "step_0000").mkdir()  # an earlier evaluation: not read
    table = table4_report.collect(str(tmp_path / "runs"), ["base", "outcome"], [0, 1], dev)
    # base seed 0: math pass@1 = (0/16 + 8/16) / 2 = 0.25, pass@16 = (0 + 1) / 2 = 0.5; science 4/16; code 16/16
    assert table["base"][0] == {"math": {"pass@1": 0.25, "pass@16": 0.5}, "science": {"pass@1": 0.25, "pass@16": 1.0},
                                "code": {"pass@1": 1.0, "pass@16": 1.0}}  # fmt: skip
    # base seed 1: math (2/16 + 0) / 2 = 0.0625, pass@16 0.5; science 0.25; code 0
    assert table["base"][1]["math"] == {"pass@1": 0.0625, "pass@16": 0.5}
    text = table4_report.report(str(tmp_path / "runs"), ["base", "outcome"], [0, 1], dev)
    row = next(line for line in text.splitlines() if line.startswith("| Base"))
    # math pass@1 over seeds: mean (0.25 + 0.0625) / 2 = 0.156, sample std |0.25 - 0.0625| / sqrt(2) = 0.133
    assert row.split(" | ")[1] == "0.156 ± 0.133"
    outcome = next(line for line in text.splitlines() if line.startswith("| ExpRL-Outcome")).split(" | ")
    assert outcome[1] == "0.250 ± 0.354" and outcome[5] == "0.250 ± 0.354"  # math: 0.5, 0; code: 0, 0.5
    assert os.path.exists(tmp_path / "runs" / "table4.md")


def test_pretrain_defaults_are_the_committed_base_arguments():
    # `python mixed_world.py pretrain` with no flags rebuilds toy_mixed_base/ (the slow rebuild itself is not run here)
    info = json.load(open(os.path.join(REPO, "toy_mixed_base", "toy_info.json")))
    assert info["pretrain_args"] == dataclasses.asdict(mixed_build.PretrainArgs())


def test_a_mixed_stage1_run_prints_pass_at_k_per_domain(tmp_path):
    # one ExpRL-Outcome step of the mixed base on the mixed set, judged by the mixed toy judge; its evaluations (6 dev
    # problems, 2 per domain, x 2 samples) print one line per domain group after the overall line
    import subprocess
    import sys

    command = [sys.executable, "train_stage1.py", "--model", "toy_mixed_base", "--reward", "outcome",
               "--judge", "toy-mixed", "--train_data", "toy_data/mixed/stage1_train.jsonl",
               "--eval_data", "toy_data/mixed/dev.jsonl", "--eval_limit", "6", "--eval_n", "2", "--steps", "1",
               "--prompts_per_step", "3", "--group_size", "4", "--threads", "1",
               "--output_dir", str(tmp_path)]  # fmt: skip
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    for group in ("Math-Agg (math, 2 problems):", "STEM-Agg (science, 2 problems):", "Code (code, 2 problems):"):
        assert out.stdout.count(group) == 2, group  # before and after the step


def test_committed_toy_table4_matches_its_logs():
    # results/table4/table4.json recomputed without the report code: per domain, pass@1 of one run is the mean over
    # its problems of c / n (the unbiased estimator at k = 1), each problem's domain read from the dev file
    import glob

    committed = os.path.join(REPO, "results", "table4")
    table = json.load(open(os.path.join(committed, "table4.json")))
    dev = load_problems(os.path.join(REPO, table["dev_data"]))
    for method, per_seed in table["pass_at_k"].items():
        for seed, cells in zip(table["seeds"], per_seed):
            last = sorted(glob.glob(os.path.join(committed, f"s{seed}", method, "eval", "*", "pass_at_k.json")))[-1]
            run = json.load(open(last))
            for domain, cell in cells.items():
                counts = [c for p, c in zip(dev, run["correct_counts"]) if p.domain == domain]
                assert cell["pass@1"] == pytest.approx(sum(counts) / (len(counts) * run["n"])), (method, seed, domain)
