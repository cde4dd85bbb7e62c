"""Math, science and code problems: the problem record, loading and the policy prompt, benchmarks' column layouts,
the rule-based final-answer rewards, the sandbox that runs model-written code, and the judge's texts per domain.

    records.py       Problem, DOMAINS, LETTERS, DataError
    problems.py      load_problems (JSONL, HF datasets), save_problems, policy_messages (the question only), mine_hard
    benchmarks.py    SciKnowEval, LiveCodeBench, GPQA, OlympiadBench rows -> records
    rule_rewards.py  answer_reward (math-verify), choice_reward, code_reward(s), rule_rewards
    sandbox.py       run_program: model-written code behind namespaces, Landlock, seccomp and limits (docs/sandbox.md)
    judge_texts.py   the judge's science and code instructions; process_level (per prefix or per response)

Who imports it: the method at the root, plumbing/, toy/, analysis/, scripts/. It imports nothing of the project
outside this folder.
"""
