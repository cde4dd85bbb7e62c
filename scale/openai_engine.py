"""The HTTP judge engine: a judge model served behind an OpenAI-compatible endpoint (e.g. `vllm serve` on the judge
GPUs, the paper's layout), with the `chat` interface that judge.LLMJudge calls (`--judge http://host:port/v1`).

Needs the openai client (`pip install openai`); it is imported lazily. plumbing/judge_watch.py probes such a judge and
stops a run when it fails; tests/test_judge_server.py runs it against real local servers.
"""


class OpenAIEngine:
    """A judge served behind an OpenAI-compatible chat endpoint (e.g. `vllm serve` on the judge GPUs).

    Requests run concurrently in threads (at most `concurrency` at a time); each has `timeout` seconds to answer (and
    `connect_timeout` to connect, so an unreachable host fails in seconds, not minutes) and `max_retries` retries (the
    openai client backs off between them: about 0.5 s, 1 s, 2 s, ...). A request that still fails returns "", which the
    judge counts as a parse failure: never a crash, and nothing is logged per request. Instead, each `chat` call leaves
    `last_failures` (how many of its requests failed) and `last_errors` (up to MAX_ERRORS distinct one-line messages)
    for plumbing.judge_watch.JudgeMonitor and plumbing.judge_watch.probe_judge to report. The constructor checks that
    the openai package is installed and makes no connection; the HTTP client is built on the first `chat`.

    Example (a closed port: the request fails, the call does not):
        >>> engine = OpenAIEngine("http://127.0.0.1:9/v1", "judge", max_retries=0)
        >>> engine.chat([[{"role": "user", "content": "hi"}]], max_tokens=8), engine.last_failures
        ([''], 1)
        >>> engine.last_errors[0].split(" (")[0]
        'APIConnectionError: Connection error.'
    """

    MAX_ERRORS = 3  # distinct error messages kept per call

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str = "EMPTY",
        timeout: float = 600.0,
        max_retries: int = 3,
        concurrency: int = 64,
        connect_timeout: float = 10.0,
    ):
        try:
            import openai  # noqa: F401  (lazy: only HTTP judging needs the openai package)
        except ImportError:
            raise ImportError("an HTTP judge needs the openai package: pip install openai") from None
        self.base_url, self.model, self.api_key = base_url, model, api_key
        self.timeout, self.max_retries, self.concurrency = timeout, max_retries, concurrency
        self.connect_timeout = connect_timeout
        self.client = None  # built on the first chat()
        self.last_failures, self.last_errors = 0, []

    def with_options(self, **changes) -> "OpenAIEngine":
        """A new engine on the same server and model with some constructor arguments changed (e.g. max_retries=0)."""
        names = ("base_url", "model", "api_key", "timeout", "max_retries", "concurrency", "connect_timeout")
        return OpenAIEngine(**({name: getattr(self, name) for name in names} | changes))

    def chat(self, messages_list: list[list[dict]], max_tokens: int) -> list[str]:
        """Greedy answers to a batch of chat prompts, in order; "" for a request that failed (see last_errors)."""
        from concurrent.futures import ThreadPoolExecutor

        if self.client is None:
            from openai import OpenAI, Timeout

            timeout = Timeout(self.timeout, connect=min(self.connect_timeout, self.timeout))
            self.client = OpenAI(
                base_url=self.base_url, api_key=self.api_key, timeout=timeout, max_retries=self.max_retries
            )

        def one(messages) -> tuple[str, str | None]:  # (answer, error message or None)
            try:
                out = self.client.chat.completions.create(
                    model=self.model, messages=messages, temperature=0.0, max_tokens=max_tokens
                )
                return out.choices[0].message.content or "", None
            except Exception as error:  # noqa: BLE001  (a lost request is a parse failure, not a crashed run)
                return "", describe_error(error)

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            answers = list(pool.map(one, messages_list))
        errors = [error for _, error in answers if error is not None]
        self.last_failures = len(errors)
        self.last_errors = list(dict.fromkeys(errors))[: self.MAX_ERRORS]
        return [text for text, _ in answers]


def describe_error(error: BaseException, limit: int = 200) -> str:
    """One short line for an exception: its type, its message and its cause (where the real reason often is).

    Example:
        >>> try:
        ...     raise ValueError("bad\\nvalue") from OSError("[Errno 111] Connection refused")
        ... except ValueError as error:
        ...     describe_error(error)
        'ValueError: bad value ([Errno 111] Connection refused)'
    """
    text = f"{type(error).__name__}: {error}"
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({cause})"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
