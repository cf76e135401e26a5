"""Zero-shot task scoring (lm-evaluation-harness) as a callable the commands hand to the library."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskScorer:
    """Scores the in-memory model on lm-eval tasks each time it is called (the model as it is now)."""

    lm: Any
    tasks: list[str]
    limit: int | None
    batch_size: int
    last: dict[str, Any] = field(default_factory=dict)

    def __call__(self, model: Any = None) -> dict[str, Any]:
        from esa.evaluation.zeroshot import evaluate_tasks

        result = evaluate_tasks(self.lm, self.tasks, limit=self.limit, batch_size=self.batch_size)
        self.last = result.provenance()
        return result.to_dict()

    def provenance(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "limit": self.limit, **self.last}


def task_scorer(lm: Any, tasks: list[str], limit: int | None, batch_size: int) -> TaskScorer:
    return TaskScorer(lm, list(tasks), limit, batch_size)
