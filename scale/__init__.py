"""What scales the method up, behind the method's own calls; nothing here changes a number.

    logprobs_fast.py   exact fast paths of logprobs.token_logprobs: a GRPO group's prompt read once, the LM head in
                       chunks for long responses (loaded only when a call uses them)
    vllm_engine.py     VLLMSampler: in-process vLLM (GPU), weights pushed from the trainer after each update
    openai_engine.py   OpenAIEngine: the judge served over HTTP (vLLM's OpenAI-compatible server, the paper's layout)
    distributed.py     torchrun: process group, DDP / FSDP2 wrappers, the global mini-batch; no-ops in one process

Who imports it: train_stage1.py and plumbing/ (distributed.py), config.build_judge (openai_engine.py, for an http
judge), train_stage1.make_sampler (vllm_engine.py, for --engine vllm), logprobs.py and rollout.py (logprobs_fast.py,
lazily). It imports torch, transformers, vLLM and the openai client, and of the project only rollout.Rollout.
"""
