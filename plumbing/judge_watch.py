"""A broken judge stops the run loudly instead of training on nothing.

An ExpRL step whose every judge request failed (server down, wrong model name, HTTP 500) or whose judge never wrote a
parseable "Score: N" has no reward at all: every rollout is dropped from the loss and the run silently learns nothing.
Two checks around the judge (judge.py) turn that into one clear error:

    probe_judge    before training: one tiny outcome request; JudgeError if it fails or does not parse,
    JudgeMonitor   after each step's judging: JudgeError after `patience` dead steps in a row, a warning line on a
                   step where more than `warn_rate` of the requests gave no score.

The error lines name the judge (`where`: its URL or model path), what it answered, and what to check.
"""

import copy

from judge import JudgeResult

# The probe's outcome request: a problem any judge scores, written so both toy judges (toy/llm_like_judge.py) parse it
# too (its reference states the checkpoint "that gives 2", the response reaches it with a valid equation, 1+1=2, and
# boxes 2).
PROBE_SAMPLE = ("What is 1+1?", "Add 1 to 1: that gives 2. The answer is 2.", "1+1=2. \\boxed{2}")
# One retry: a server that drops one request (a restart, a transient 500) passes; a down server fails after two
# connection attempts and one backoff of about 0.5 s.
PROBE_RETRIES = 1


class JudgeError(RuntimeError):
    """The judge gave no usable score: the message is one line naming the judge, what it answered, what to check."""


def _leaves(items: list) -> list:
    """The scores (or texts) of a JudgeResult as one flat list (process judging nests one list per response)."""
    return [leaf for item in items for leaf in (_leaves(item) if isinstance(item, list) else [item])]


def _quote(text: str, limit: int = 200) -> str:
    """The first `limit` characters of a judge output on one line, quoted: repr("Reasoning: ok. Score: 4")."""
    flat = " ".join((text or "").split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...")


def probe_judge(judge, where: str, sample: tuple[str, str, str] = PROBE_SAMPLE) -> None:
    """Send ONE outcome request (question, reference, response) = `sample` through `judge`; JudgeError if no score.

    `judge` is anything with score_outcome (LLMJudge on an OpenAIEngine or an HF/vLLM sampler, a toy judge).
    On an OpenAIEngine the probe runs on a copy with max_retries=PROBE_RETRIES (the engine's timeouts stay), so a
    closed port fails within about a second and a server that answers HTTP 500 costs exactly 2 requests. The judge's
    own max_tokens is kept: a judge whose verdict does not fit in it fails here, as it would in training.

    The two errors (one line each):
        the request failed:  "judge http://h:8000/v1 did not answer the probe request: NotFoundError: Error code:
                             404 - ... Check that a server is up at http://h:8000/v1 and that 'qwen' (--judge_model)
                             is a model it serves: curl http://h:8000/v1/models"
        no parseable score:  "judge http://h:8000/v1 answered the probe without a parseable score: 'Looks right.'.
                             The judge must end its answer with a 'Score: N' line (N = 1..5): ..."

    Example:
        >>> class Scripted:  # a judge that gives every response the same score and text
        ...     def __init__(self, score, text):
        ...         self.score, self.text = score, text
        ...     def score_outcome(self, questions, references, responses):
        ...         return JudgeResult([self.score] * len(questions), [self.text] * len(questions))
        >>> probe_judge(Scripted(1.0, "Score: 5"), "judge")  # a score: no error
        >>> try:
        ...     probe_judge(Scripted(None, "Looks right."), "judge")
        ... except JudgeError as error:
        ...     print(str(error)[:72])
        judge judge answered the probe without a parseable score: 'Looks right.'
    """
    engine = getattr(judge, "engine", None)
    if hasattr(engine, "with_options"):  # an HTTP engine (scale/openai_engine.py): fail fast on a closed port
        judge = copy.copy(judge)  # the caller's judge and engine stay as they are
        judge.engine = engine = engine.with_options(max_retries=PROBE_RETRIES)
    question, reference, response = sample
    result = judge.score_outcome([question], [reference], [response])
    if result.scores[0] is not None:
        return
    errors = getattr(engine, "last_errors", [])
    if errors:
        model, error = getattr(engine, "model", "?"), errors[0].rstrip(".")
        raise JudgeError(
            f"judge {where} did not answer the probe request: {error}. Check that a server is up at {where} and "
            f"that {model!r} (--judge_model) is a model it serves: curl {where.rstrip('/')}/models"
        )
    raise JudgeError(
        f"judge {where} answered the probe without a parseable score: {_quote(result.texts[0])}. The judge must end "
        "its answer with a 'Score: N' line (N = 1..5): check the judge model, its chat template, and that "
        "--judge_max_tokens leaves room for the verdict."
    )


class JudgeMonitor:
    """Watch each training step's judging; stop the run after `patience` dead steps in a row.

    A step is DEAD when every judged item has no score: each request failed or its output did not parse
    (result.num_failures == the number of judged items, counting every process-judging segment). `update` raises
    JudgeError on the `patience`-th consecutive dead step (patience 0: never); a step with at least one score resets
    the count. Otherwise it returns a one-line warning when more than `warn_rate` of the step's items have no score
    (for the progress bar or the log), else None. `engine` (optional) is the judge's engine: its `last_failures` and
    `last_errors` (OpenAIEngine, for its last chat call) tell failed requests from unparseable answers.

    Example (patience 2: the second dead step in a row stops the run):
        >>> monitor = JudgeMonitor("judge:8000", patience=2)
        >>> dead = JudgeResult(scores=[None, None], texts=["Looks fine.", ""])
        >>> print(monitor.update(dead))
        judge judge:8000: 2 of 2 requests gave no score (100%; dead step 1 of 2); no 'Score: N' in e.g. 'Looks fine.'
        >>> print(monitor.update(JudgeResult(scores=[0.5, None], texts=["Score: 3", "?"])))  # 50% is not above 0.5
        None
        >>> print(monitor.update(dead))  # the healthy step reset the count
        judge judge:8000: 2 of 2 requests gave no score (100%; dead step 1 of 2); no 'Score: N' in e.g. 'Looks fine.'
        >>> import textwrap
        >>> try:
        ...     monitor.update(dead)
        ... except JudgeError as error:
        ...     print(textwrap.fill(str(error), 100))
        judge judge:8000: 2 of 2 judge requests failed or gave no score in each of the last 2 steps (no
        'Score: N' in e.g. 'Looks fine.'). Stopping rather than training on no reward: check the judge
        server, --judge_model and that the judge ends its answer with 'Score: N'.
    """

    def __init__(self, where: str, patience: int = 3, warn_rate: float = 0.5):
        self.where, self.patience, self.warn_rate = where, patience, warn_rate
        self.dead_totals: list[int] = []  # items judged in each step of the current run of dead steps

    def update(self, result: JudgeResult, engine=None) -> str | None:
        """Count this step; raise JudgeError on the patience-th dead step in a row, else a warning line or None."""
        scores, texts = _leaves(result.scores), _leaves(result.texts)
        total, failed = len(scores), result.num_failures
        if total == 0:  # nothing was judged this step: no evidence either way
            return None
        self.dead_totals = self.dead_totals + [total] if failed == total else []
        failures, errors = getattr(engine, "last_failures", 0), getattr(engine, "last_errors", [])
        unparsed = [text for score, text in zip(scores, texts) if score is None and text]
        why = [f"{failures} failed requests: {' | '.join(errors)}"] if failures and errors else []
        why += [f"no 'Score: N' in e.g. {_quote(unparsed[0])}"] if unparsed else []
        why = "; ".join(why) or "the judge's answers were empty"

        if self.patience and len(self.dead_totals) >= self.patience:
            last = self.dead_totals[-self.patience :]
            counts = f"{total} of {total}" if len(set(last)) == 1 else f"all ({', '.join(map(str, last))})"
            raise JudgeError(
                f"judge {self.where}: {counts} judge requests failed or gave no score in each of the last "
                f"{self.patience} steps ({why}). Stopping rather than training on no reward: check the judge server, "
                "--judge_model and that the judge ends its answer with 'Score: N'."
            )
        if failed / total <= self.warn_rate:
            return None
        dead = f"; dead step {len(self.dead_totals)} of {self.patience}" if self.dead_totals and self.patience else ""
        return f"judge {self.where}: {failed} of {total} requests gave no score ({failed / total:.0%}{dead}); {why}"
