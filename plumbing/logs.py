"""What a training run writes as it goes: one JSON line per step (`MetricsLog`: metrics.jsonl, judge_samples.jsonl,
groups.jsonl), and the same numbers to TensorBoard or Weights & Biases when asked (`Reporter`, --report_to).
"""

import json
import os
import time


class Reporter:
    """A step's metrics also to TensorBoard or Weights & Biases (--report_to), through those libraries' own writers;
    metrics.jsonl stays the record. "none" does nothing. TensorBoard events go to output_dir/tensorboard/
    (`tensorboard --logdir runs`); wandb reads WANDB_PROJECT (default "exprl") and its usual login or offline mode."""

    def __init__(self, kind: str, output_dir: str, config: dict):
        self.kind, self.writer = kind, None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(os.path.join(output_dir, "tensorboard"))
        elif kind == "wandb":
            import wandb

            name = os.path.basename(os.path.normpath(output_dir))
            self.writer = wandb.init(
                project=os.environ.get("WANDB_PROJECT", "exprl"), name=name, dir=output_dir, config=config
            )

    def log(self, step: int, metrics: dict, prefix: str = "train") -> None:
        """Every number of `metrics` as prefix/name at `step`."""
        if self.writer is None:
            return
        values = {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        if self.kind == "tensorboard":
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        else:
            self.writer.log(values, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close() if self.kind == "tensorboard" else self.writer.finish()


class MetricsLog:
    """Append one JSON line per step to metrics.jsonl (flushed, so a killed run keeps every finished step)."""

    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "a")
        self.start = time.time()

    def log(self, step: int, metrics: dict) -> None:
        row = {"step": step, "time": round(time.time() - self.start, 2), **metrics}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
