"""The judge over HTTP against a real local server: OpenAIEngine's failure accounting, probe_judge, JudgeMonitor.

The server is the standard library's http.server on 127.0.0.1 (port 0: the OS picks a free one; no network) speaking
the part of the OpenAI chat completions API the judge uses. Its behaviours are the ways a judge server breaks in a
real run. Nothing here depends on the machine's speed: the tests count the requests the server received instead of
timing them.
"""

import json
import logging
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from judge import JudgeResult, LLMJudge
from plumbing.judge_watch import PROBE_RETRIES, JudgeError, JudgeMonitor, probe_judge
from scale.openai_engine import OpenAIEngine

SERVED_MODEL = "judge"
HEALTHY_ANSWER = "Reasoning: ok.\nScore: 4"
MUTE_ANSWER = "Reasoning: the student's steps look fine to me."  # no "Score:" line
PROMPT = [{"role": "user", "content": "Judge this."}]


class JudgeServer:
    """An OpenAI-compatible judge on 127.0.0.1 with one behaviour:

    healthy   every request answers HEALTHY_ANSWER
    flaky     HTTP 500 on odd-numbered requests (1st, 3rd, ...), HEALTHY_ANSWER on even ones
    error500  HTTP 500 on every request
    numbered  HTTP 500 on every request, with the request's number in the error (every error message differs)
    mute      every request answers MUTE_ANSWER (no Score line)
    varied    "Score: N" with N = 1 + (request number mod 5), so a group's scores differ and training has a signal
    dies_at_K varied up to request K, then HTTP 500 on every request (a judge server that goes down mid-run)
    Whatever the behaviour, a request for a model other than SERVED_MODEL gets HTTP 404, as from `vllm serve`.
    """

    def __init__(self, behaviour: str):
        self.behaviour, self.requests, self.lock = behaviour, 0, threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()

    def answer(self, body: dict) -> tuple[int, dict]:
        """(HTTP status, JSON body) for one chat completions request."""
        with self.lock:
            self.requests += 1
            number = self.requests
        if body.get("model") != SERVED_MODEL:
            return 404, error_body(f"The model `{body.get('model')}` does not exist.", "NotFoundError", 404)
        failing = {"flaky": number % 2 == 1, "error500": True, "numbered": True}.get(self.behaviour, False)
        if self.behaviour.startswith("dies_at_"):
            failing = number > int(self.behaviour[len("dies_at_") :])
        if failing:
            suffix = f" (request {number})" if self.behaviour == "numbered" else ""
            return 500, error_body("internal error" + suffix, "InternalServerError", 500)
        text = MUTE_ANSWER if self.behaviour == "mute" else HEALTHY_ANSWER
        if self.behaviour == "varied" or self.behaviour.startswith("dies_at_"):
            text = f"Reasoning: ok.\nScore: {1 + number % 5}"
        return 200, {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, reply = server.answer(body) if self.path == "/v1/chat/completions" else (404, {})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep the test output clean
                pass

        return Handler


def error_body(message: str, kind: str, code: int) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@pytest.fixture
def judge_server():
    """Start a JudgeServer with the given behaviour; every server started is stopped after the test."""
    servers = []

    def start(behaviour: str) -> JudgeServer:
        servers.append(JudgeServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def closed_port_url() -> str:
    """The URL of a port nothing listens on: bind a socket to a free port, note it, close it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# --- OpenAIEngine -----------------------------------------------------------------------------------------------------


def test_engine_records_failures_and_distinct_errors_without_logging(judge_server, caplog):
    caplog.set_level(logging.DEBUG)
    server = judge_server("flaky")
    engine = OpenAIEngine(server.url, SERVED_MODEL, max_retries=0, concurrency=2)
    answers = engine.chat([PROMPT] * 4, max_tokens=16)
    # requests 1..4 reach the server (in whichever order the threads send them): 1 and 3 get HTTP 500
    assert sorted(answers) == ["", "", HEALTHY_ANSWER, HEALTHY_ANSWER]
    assert engine.last_failures == 2
    assert len(engine.last_errors) == 1  # the same error twice is kept once
    assert engine.last_errors[0].startswith("InternalServerError: Error code: 500")
    assert "internal error" in engine.last_errors[0]
    assert server.requests == 4  # max_retries=0: no retry
    # the counters describe the LAST call only: request 5 fails, request 6 succeeds
    assert engine.chat([PROMPT], max_tokens=16) == [""] and engine.last_failures == 1
    assert engine.chat([PROMPT], max_tokens=16) == [HEALTHY_ANSWER]
    assert (engine.last_failures, engine.last_errors) == (0, [])
    # nothing logged per request: no warning from anyone, no record at all from judge.py
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING or r.name == "judge"] == []


def test_engine_keeps_at_most_three_distinct_errors(judge_server):
    server = judge_server("numbered")
    engine = OpenAIEngine(server.url, SERVED_MODEL, max_retries=0, concurrency=1)
    assert engine.chat([PROMPT] * 5, max_tokens=16) == [""] * 5
    assert engine.last_failures == 5
    # concurrency=1: requests 1, 2, 3 are the first three distinct messages
    assert engine.last_errors == [
        "InternalServerError: Error code: 500 - internal error (request 1)",
        "InternalServerError: Error code: 500 - internal error (request 2)",
        "InternalServerError: Error code: 500 - internal error (request 3)",
    ]


def test_engine_retries_a_failed_request(judge_server):
    server = judge_server("flaky")
    engine = OpenAIEngine(server.url, SERVED_MODEL, max_retries=1, concurrency=1)
    assert engine.chat([PROMPT], max_tokens=16) == [HEALTHY_ANSWER]  # request 1: HTTP 500, its retry (2): answered
    assert (server.requests, engine.last_failures) == (2, 0)


def test_engine_constructor_needs_openai_and_connects_to_nothing(monkeypatch):
    engine = OpenAIEngine(closed_port_url(), SERVED_MODEL)  # no server there: the constructor does not connect
    assert engine.client is None and (engine.timeout, engine.max_retries, engine.concurrency) == (600.0, 3, 64)
    monkeypatch.setitem(sys.modules, "openai", None)  # as if the package were not installed
    with pytest.raises(ImportError, match="pip install openai") as caught:
        OpenAIEngine("http://127.0.0.1:8000/v1", SERVED_MODEL)
    assert "\n" not in str(caught.value)


# --- probe_judge ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour, requests", [("healthy", 1), ("flaky", 2)])
def test_probe_passes(judge_server, behaviour, requests):
    # flaky: request 1 gets HTTP 500, the probe's one retry (PROBE_RETRIES = 1) gets the answer
    server = judge_server(behaviour)
    engine = OpenAIEngine(server.url, SERVED_MODEL)
    judge = LLMJudge(engine, max_tokens=64)
    probe_judge(judge, server.url)
    assert server.requests == requests
    assert judge.engine is engine and engine.max_retries == 3  # the probe used a copy; the judge is untouched


@pytest.mark.parametrize(
    "behaviour, model, requests, says",
    [
        # HTTP 500 is retried once: 1 + PROBE_RETRIES requests
        ("error500", SERVED_MODEL, 1 + PROBE_RETRIES, ["did not answer", "Error code: 500", "internal error"]),
        # a wrong model name: HTTP 404, which the openai client does not retry
        ("healthy", "qwen-judge", 1, ["did not answer", "Error code: 404", "`qwen-judge` does not exist"]),
        # the server answers, but without a Score line: not retried, the answer is quoted
        ("mute", SERVED_MODEL, 1, ["without a parseable score", repr(MUTE_ANSWER), "'Score: N' line"]),
    ],
)
def test_probe_raises_one_clear_line(judge_server, behaviour, model, requests, says):
    server = judge_server(behaviour)
    with pytest.raises(JudgeError) as caught:
        probe_judge(LLMJudge(OpenAIEngine(server.url, model), max_tokens=64), server.url)
    message = str(caught.value)
    assert message.startswith(f"judge {server.url} ") and "\n" not in message
    for fragment in says:
        assert fragment in message
    if behaviour != "mute":  # a failed request: what to check
        assert f"Check that a server is up at {server.url}" in message and f"'{model}' (--judge_model)" in message
    assert server.requests == requests


def test_probe_raises_when_nothing_listens():
    url = closed_port_url()
    with pytest.raises(JudgeError) as caught:
        probe_judge(LLMJudge(OpenAIEngine(url, SERVED_MODEL), max_tokens=64), url)
    message = str(caught.value)
    assert message.startswith(f"judge {url} did not answer the probe request: APIConnectionError: Connection error.")
    assert "Connection refused" in message and f"Check that a server is up at {url}" in message


def test_probe_on_the_toy_judge_and_on_an_untrained_hf_judge():
    import torch

    import toy.world as toy
    from rollout import HFSampler

    probe_judge(toy.CheckpointJudge(), "toy")  # the toy judge parses the probe sample
    torch.manual_seed(0)
    tok = toy.build_tokenizer()
    model = toy.build_tiny_model(tok, hidden_size=64, num_layers=1)
    with pytest.raises(JudgeError, match="judge tiny-model answered the probe without a parseable score: '"):
        probe_judge(LLMJudge(HFSampler(model, tok), tok, max_tokens=6), "tiny-model")


# --- JudgeMonitor -----------------------------------------------------------------------------------------------------

HEALTHY = JudgeResult(scores=[0.75, 0.5, 0.0, 1.0], texts=["Score: 4", "Score: 3", "Score: 1", "Score: 5"])
DEAD = JudgeResult(scores=[None] * 4, texts=["I cannot tell.", "", "", ""])


class EngineAfterCall:
    """What an OpenAIEngine shows after a call whose every request failed."""

    last_failures, last_errors = 4, ["APIConnectionError: Connection error. ([Errno 111] Connection refused)"]


def test_monitor_stops_on_the_third_dead_step_in_a_row():
    monitor = JudgeMonitor("http://judge:8000/v1", patience=3)
    # dead, dead, healthy (resets), dead, dead: still running, with a countdown in the warnings
    warnings = [monitor.update(result) for result in (DEAD, DEAD, HEALTHY, DEAD, DEAD)]
    assert warnings[2] is None
    assert [w.split("(")[1].split(")")[0] for w in warnings if w] == [
        "100%; dead step 1 of 3",
        "100%; dead step 2 of 3",
        "100%; dead step 1 of 3",
        "100%; dead step 2 of 3",
    ]
    with pytest.raises(JudgeError) as caught:
        monitor.update(DEAD)
    message = str(caught.value)
    assert message.startswith(
        "judge http://judge:8000/v1: 4 of 4 judge requests failed or gave no score in each of the last 3 steps"
    )
    assert "no 'Score: N' in e.g. 'I cannot tell.'" in message and "\n" not in message


def test_monitor_names_the_request_error_from_the_engine():
    monitor = JudgeMonitor("http://judge:8000/v1", patience=2)
    failed = JudgeResult(scores=[None] * 4, texts=[""] * 4)
    assert "4 failed requests: APIConnectionError" in monitor.update(failed, EngineAfterCall())
    with pytest.raises(JudgeError, match=r"last 2 steps \(4 failed requests: APIConnectionError: .*refused\)"):
        monitor.update(failed, EngineAfterCall())
    # some requests failed, others answered without a score: both are named
    mixed = JudgeResult(scores=[None, None, 0.5], texts=["", "Looks right.", "Score: 3"])
    engine = EngineAfterCall()
    engine.last_failures, engine.last_errors = 1, ["APITimeoutError: Request timed out."]
    assert monitor.update(mixed, engine) == (
        "judge http://judge:8000/v1: 2 of 3 requests gave no score (67%); 1 failed requests: APITimeoutError: "
        "Request timed out.; no 'Score: N' in e.g. 'Looks right.'"
    )


def test_monitor_counts_process_segments():
    # process judging: 2 responses with 3 + 1 segments = 4 judged items, all without a score
    dead = JudgeResult(scores=[[None, None, None], [None]], texts=[["a", "b", "c"], ["d"]])
    monitor = JudgeMonitor("judge-model", patience=1)
    with pytest.raises(JudgeError, match="judge judge-model: 4 of 4 judge requests .* last 1 steps .*'a'"):
        monitor.update(dead)
    # 3 of 4 segments without a score (75% > 50%) is a warning, not a dead step
    partial = JudgeResult(scores=[[None, 0.5, None], [None]], texts=[["a", "Score: 3", "c"], ["d"]])
    assert (
        JudgeMonitor("judge-model", patience=1)
        .update(partial)
        .startswith("judge judge-model: 3 of 4 requests gave no score (75%); no 'Score: N' in e.g. 'a'")
    )


def test_monitor_warns_above_the_rate_only():
    monitor = JudgeMonitor("judge-model", patience=3, warn_rate=0.5)
    texts = ["Score: 4", "oops", "Score: 4", "oops", "oops"]
    sixty = JudgeResult(scores=[0.75, None, 0.75, None, None], texts=texts)  # 3 of 5 = 60% > 50%
    assert (
        monitor.update(sixty) == "judge judge-model: 3 of 5 requests gave no score (60%); no 'Score: N' in e.g. 'oops'"
    )
    forty = JudgeResult(scores=[0.75, None, 0.75, None, 0.75], texts=texts)  # 2 of 5 = 40%
    half = JudgeResult(scores=[0.75, None], texts=["Score: 4", "oops"])  # 1 of 2 = 50%, not above
    assert monitor.update(forty) is None and monitor.update(half) is None
    assert monitor.update(HEALTHY) is None


def test_monitor_patience_zero_never_stops():
    monitor = JudgeMonitor("judge-model", patience=0)
    warnings = [monitor.update(DEAD) for _ in range(10)]
    assert (
        warnings[-1]
        == "judge judge-model: 4 of 4 requests gave no score (100%); no 'Score: N' in e.g. 'I cannot tell.'"
    )


def test_monitor_ignores_a_step_with_nothing_judged():
    monitor = JudgeMonitor("judge-model", patience=2)
    assert monitor.update(DEAD) is not None
    assert monitor.update(JudgeResult(scores=[], texts=[])) is None  # neither dead nor healthy: the count stays 1
    with pytest.raises(JudgeError):
        monitor.update(DEAD)


def test_monitor_on_a_real_failing_server(judge_server):
    # two training steps of 2 outcome requests each against a server that always answers HTTP 500
    server = judge_server("error500")
    engine = OpenAIEngine(server.url, SERVED_MODEL, max_retries=0)
    judge, monitor = LLMJudge(engine, max_tokens=64), JudgeMonitor(server.url, patience=2)
    step = judge.score_outcome(["q1", "q2"], ["r1", "r2"], ["y1", "y2"])
    assert monitor.update(step, engine).startswith(f"judge {server.url}: 2 of 2 requests gave no score (100%")
    step = judge.score_outcome(["q1", "q2"], ["r1", "r2"], ["y1", "y2"])
    with pytest.raises(
        JudgeError, match=r"2 of 2 judge requests .* \(2 failed requests: InternalServerError: Error code"
    ):
        monitor.update(step, engine)
    assert server.requests == 4


# --- the training loop against real judge servers (train_stage1.main) ----------------------------------------------


def stage1_args(tiny_args, url: str, **overrides):
    """The tests' short run (conftest.tiny_args) judged by the server at `url`: 2 prompts x 2 rollouts, 2 steps."""
    values = dict(judge=url, judge_model=SERVED_MODEL, group_size=2, prompts_per_step=2, steps=2, log_group_every=0)
    return tiny_args(**{**values, **overrides})


@pytest.mark.parametrize("behaviour", ["varied", "flaky"])
def test_healthy_and_flaky_judges_train(judge_server, tiny_args, tmp_path, behaviour):
    from train_stage1 import main

    server = judge_server(behaviour)
    main(stage1_args(tiny_args, server.url))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]
    assert server.requests >= 1 + 2 * 4  # the probe, then 2 steps x 4 rollouts (flaky: plus the retries)
    if behaviour == "varied":
        assert [r["judge_parse_failures"] for r in rows] == [0, 0] and rows[0]["skipped_update"] == 0.0


def test_mute_judge_stops_before_training(judge_server, tiny_args, tmp_path):
    from train_stage1 import main

    server = judge_server("mute")
    with pytest.raises(JudgeError, match=f"judge {server.url} answered the probe without a parseable score"):
        main(stage1_args(tiny_args, server.url))
    assert server.requests == 1 and not (tmp_path / "metrics.jsonl").exists()


def test_down_judge_stops_the_script_with_one_line_and_no_traceback(tiny_problems, tmp_path):
    import subprocess

    from plumbing.common import REPO

    url = closed_port_url()
    out = subprocess.run(
        [
            sys.executable,
            "train_stage1.py",
            "--judge",
            url,
            "--train_data",
            tiny_problems,
            "--eval_data",
            "",
            "--output_dir",
            str(tmp_path),
            "--threads",
            "1",
            "--steps",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: judge {url} did not answer the probe request") and "Connection" in last
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "checkpoint").exists()


def test_judge_dying_mid_run_stops_with_a_checkpoint_and_resume_continues(judge_server, tiny_args, tmp_path):
    from train_stage1 import main

    # requests: 1 probe + 4 per step. Step 1 is judged; from request 6 on every request fails: steps 2 and 3 are
    # dead, so with patience 2 the run stops at step 3, after a checkpoint of step 2 (the last update it made).
    server = judge_server("dies_at_5")
    args = stage1_args(tiny_args, server.url, steps=4, judge_patience=2)
    with pytest.raises(JudgeError, match="4 of 4 judge requests failed or gave no score in each of the last 2 steps"):
        main(args)
    assert [json.loads(line)["step"] for line in open(tmp_path / "metrics.jsonl")] == [1, 2]
    assert json.load(open(tmp_path / "checkpoints" / "step_000002" / "trainer_state.json")) == {"step": 2}
    server.behaviour = "varied"  # the judge is back
    args.resume = True
    main(args)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[2]["judge_parse_failures"] == 0
