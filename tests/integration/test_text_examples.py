"""The sequence examples end to end, in-process and for a few seconds each: word language model, NCF, GNMT,
and their refusals of bad input (exit status 2, one line naming the item and the fix)."""
import contextlib
import glob
import io
import json
import os

import pytest

from distiller.apputils.app_runner import run_cli

from ..unit.examples_text.conftest import EXAMPLES, load_example

pytestmark = pytest.mark.slow


def _run(app, out_dir, *argv):
    """Runs ``app`` with ``argv`` (writing under ``out_dir``); returns (status, stderr, summary or None)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = run_cli(app.main, app.get_args_parser(), [str(a) for a in (*argv, "-o", out_dir)])
    summaries = sorted(glob.glob(os.path.join(out_dir, "*", "summary.json")), key=os.path.getmtime)
    summary = json.load(open(summaries[-1])) if summaries and status == 0 else None
    return status, stderr.getvalue(), summary


@pytest.fixture(scope="module")
def lm_app():
    return load_example("word_language_model", "main")


@pytest.fixture
def small_schedule(tmp_path):
    path = tmp_path / "agp.yaml"
    path.write_text("version: 1\npruners:\n  p:\n    class: AutomatedGradualPruner\n"
                    "    initial_sparsity: 0.3\n    final_sparsity: 0.5\n"
                    "    weights: [encoder.weight, 'rnn\\.cells\\.0\\.fc_gate_[xh]\\.weight']\n"
                    "policies:\n  - pruner: {instance_name: p}\n    starting_epoch: 0\n    ending_epoch: 2\n"
                    "    frequency: 1\n")
    return path


LM_TINY = ("--max-words", 3000, "--emsize", 16, "--nhid", 16, "-b", 8, "--bptt", 10)


def test_word_lm_trains_prunes_quantizes_and_reloads(lm_app, tmp_path, small_schedule):
    status, err, summary = _run(lm_app, str(tmp_path / "a"), *LM_TINY, "--epochs", 2, "--compress", small_schedule,
                                "--quantize-eval")
    assert status == 0, err
    assert summary["sparsity"] > 20 and summary["test_ppl"] < summary["vocabulary"] / 2  # better than uniform
    assert abs(summary["quantized_ppl_change"]) < 0.05
    checkpoint = glob.glob(str(tmp_path / "a" / "*" / "checkpoint.pth.tar"))[0]
    status, err, again = _run(lm_app, str(tmp_path / "b"), *LM_TINY, "--epochs", 0, "--load", checkpoint)
    assert status == 0, err
    assert again["test_ppl"] == pytest.approx(summary["test_ppl"], rel=1e-5)
    status, err, _ = _run(lm_app, str(tmp_path / "c"), "--max-words", 4000, "--epochs", 0, "--load", checkpoint)
    assert status == 2 and "was trained with a words vocabulary of" in err
    assert not os.path.exists(tmp_path / "c")  # refused before the run directory was created


def test_word_lm_refuses_a_corpus_without_train_txt(lm_app, tmp_path):
    (tmp_path / "valid.txt").write_text("a b\n")
    status, err, _ = _run(lm_app, str(tmp_path / "out"), "--data", tmp_path)
    assert status == 2 and f"'{tmp_path}' has no train.txt, test.txt: it needs WikiText-2 style" in err


def test_ncf_trains_and_quantizes(tmp_path):
    app = load_example("ncf", "ncf")
    status, err, summary = _run(app, str(tmp_path), "--num-users", 80, "--num-items", 150, "--per-user", 10,
                                "--epochs", 2, "--quantize-eval", "--qe-mode", "asym_u")
    assert status == 0, err
    assert summary["hr"] > 0.1 and abs(summary["quantized_hr_change"]) <= 0.05
    status, err, _ = _run(app, str(tmp_path / "x"), "--data", tmp_path)
    assert status == 2 and "has no ratings.dat" in err
    checkpoint = glob.glob(str(tmp_path / "*" / "checkpoint.pth.tar"))[0]
    status, err, _ = _run(app, str(tmp_path / "y"), "--num-users", 90, "--num-items", 150, "--per-user", 10,
                          "--epochs", 0, "--load", checkpoint)
    assert status == 2 and "was trained on 80 users and 150 items, this data has 90 and 150" in err


def test_gnmt_trains_and_quantizes_with_the_yaml_overrides(tmp_path):
    app = load_example("GNMT", "gnmt")
    config = os.path.join(EXAMPLES, "GNMT", "gnmt_ptq.yaml")
    status, err, summary = _run(app, str(tmp_path), "--train-pairs", 200, "--hidden", 16, "--epochs", 1,
                                "--quantize-eval", "--qe-config-file", config)
    assert status == 0, err
    assert 0 <= summary["quantized_test"]["token_accuracy"] <= 1 and "bleu" in summary["test"]
    status, err, _ = _run(app, str(tmp_path / "x"), "--data", tmp_path, "--src-ext", "en", "--tgt-ext", "de")
    assert status == 2 and "has no train.en, train.de" in err
