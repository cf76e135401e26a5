"""evaluate_tasks: lm-eval's own figures on the in-memory model, local tasks, provenance, one-line errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from esa.errors import EsaError
from esa.models import load_model

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from esa.evaluation.zeroshot import evaluate_tasks  # noqa: E402

TASKS = Path(__file__).resolve().parents[1] / "tasks"
MC, ROLLING = str(TASKS / "facts_mc.yaml"), str(TASKS / "stories_rolling.yaml")
BATCH = 16  # few forward passes: the suite stays fast


@pytest.fixture(scope="module")
def lm():
    return load_model("tiny-llama")


def direct_lm_eval(lm, task_names, monkeypatch, batch_size=BATCH):
    """What a user gets from plain lm_eval: the YAML folder as include path, run from that folder."""
    monkeypatch.chdir(TASKS)  # lm-eval reads relative data_files against the working directory
    wrapper = HFLM(pretrained=lm.model, tokenizer=lm.tokenizer, batch_size=batch_size)
    manager = TaskManager(include_path=str(TASKS), include_defaults=False)
    return lm_eval.simple_evaluate(model=wrapper, tasks=task_names, task_manager=manager,
                                   log_samples=False)


def test_figures_equal_direct_simple_evaluate(lm, monkeypatch):
    ours = evaluate_tasks(lm, [MC, ROLLING], batch_size=BATCH)
    theirs = direct_lm_eval(lm, ["esa_facts_mc", "esa_stories_rolling"], monkeypatch)["results"]
    mc = ours["esa_facts_mc"]
    assert (mc.acc, mc.acc_stderr) == (theirs["esa_facts_mc"]["acc,none"], theirs["esa_facts_mc"]["acc_stderr,none"])
    assert (mc.acc_norm, mc.acc_norm_stderr) == (
        theirs["esa_facts_mc"]["acc_norm,none"], theirs["esa_facts_mc"]["acc_norm_stderr,none"])
    assert mc.n_items == mc.n_items_total == 62
    rolling = ours["esa_stories_rolling"]
    for metric in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert rolling.metrics[metric] == theirs["esa_stories_rolling"][f"{metric},none"]
    assert rolling.acc is None and rolling.n_items == 12


def test_deterministic_and_leaves_caller_state_alone(lm):
    random.seed(7)
    torch.manual_seed(7)
    expected_python, expected_torch = random.random(), torch.rand(1)
    random.seed(7)
    torch.manual_seed(7)
    lm.model.train()
    first = evaluate_tasks(lm, [MC], limit=10, batch_size=BATCH)
    assert lm.model.training
    assert (random.random(), torch.rand(1)) == (expected_python, expected_torch)
    lm.model.eval()
    second = evaluate_tasks(lm, [MC], limit=10, batch_size=BATCH)
    assert first == second
    assert first["esa_facts_mc"].n_items == 10 and first.limit == 10
    json.dumps(first.to_dict())


def test_provenance_names_data_not_location(lm, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(TASKS, copy)
    monkeypatch.chdir(tmp_path)  # relative data_files resolve against the YAML, not the working directory
    here = evaluate_tasks(lm, [MC], limit=4)
    there = evaluate_tasks(lm, ["copy/facts_mc.yaml"], limit=4)
    assert there["esa_facts_mc"].config_sha256 == here["esa_facts_mc"].config_sha256
    assert there["esa_facts_mc"].acc == here["esa_facts_mc"].acc
    data = copy / "facts_mc.jsonl"
    data.write_text(data.read_text().replace("Paris", "Lyon", 1))
    changed = evaluate_tasks(lm, ["copy/facts_mc.yaml"], limit=4)
    assert changed["esa_facts_mc"].config_sha256 != here["esa_facts_mc"].config_sha256
    provenance = here.provenance()
    assert provenance["lm_eval_version"] == lm_eval.__version__
    assert provenance["n_items"] == {"esa_facts_mc": 4}


def test_local_task_errors(lm, tmp_path):
    with pytest.raises(EsaError, match="task YAML 'missing.yaml' does not exist"):
        evaluate_tasks(lm, ["missing.yaml"])
    (tmp_path / "nameless.yaml").write_text("dataset_path: json\n")
    with pytest.raises(EsaError, match="has no `task:` name"):
        evaluate_tasks(lm, [str(tmp_path / "nameless.yaml")])
    broken = tmp_path / "broken.yaml"
    broken.write_text((TASKS / "facts_mc.yaml").read_text().replace("facts_mc.jsonl", "absent.jsonl"))
    with pytest.raises(EsaError, match="its data could not be loaded .*HF_DATASETS_OFFLINE") as caught:
        evaluate_tasks(lm, [str(broken)])
    assert "\n" not in str(caught.value)
    with pytest.raises(EsaError, match="task 'esa_facts_mc' is given twice"):
        evaluate_tasks(lm, [MC, MC])
    with pytest.raises(EsaError, match="--limit must be at least 1"):
        evaluate_tasks(lm, [MC], limit=0)
    with pytest.raises(EsaError, match="no tasks given"):
        evaluate_tasks(lm, [])


def test_named_tasks_unknown_or_offline(lm, monkeypatch):
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with pytest.raises(EsaError, match="unknown lm-eval task 'no_such_task'"):
        evaluate_tasks(lm, ["no_such_task"])
    with pytest.raises(EsaError, match="task 'piqa': its data could not be loaded .*HF_DATASETS_OFFLINE") as caught:
        evaluate_tasks(lm, ["piqa"], limit=2)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_smollm2_equals_direct_simple_evaluate(monkeypatch):
    smol = load_model("smollm2-135m")
    ours = evaluate_tasks(smol, [MC], batch_size=8)["esa_facts_mc"]
    theirs = direct_lm_eval(smol, ["esa_facts_mc"], monkeypatch, batch_size=8)["results"]["esa_facts_mc"]
    assert (ours.acc, ours.acc_norm, ours.acc_stderr) == (
        theirs["acc,none"], theirs["acc_norm,none"], theirs["acc_stderr,none"])
    assert ours.acc > 0.5  # a real model knows most of these facts; the tiny random one scores near 1/4
