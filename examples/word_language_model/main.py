#!/usr/bin/env python3
"""Word-level LSTM language model: training with a compression schedule (AGP or Baidu's RNN pruner),
post-training quantization of the LSTM gates and the embedding, perplexity on the test split.

From the repository root (see README.md beside this file for the measured results)::

    python examples/word_language_model/main.py --epochs 6 -n lm_dense --quantize-eval
    python examples/word_language_model/main.py --epochs 6 -n lm_agp \\
        --compress examples/word_language_model/lm.schedule_agp.yaml --quantize-eval

Without ``--data`` the corpus is the docstrings of Python's standard library (``--max-words`` tokens);
``--data DIR`` reads a WikiText-2 style directory (``train.txt``, ``valid.txt``, ``test.txt``).
"""
import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

import distiller
from distiller.apputils import sequence_app as app
from distiller.apputils.app_runner import run_cli
from distiller.apputils.stdlib_text import stdlib_docstring_corpus
from distiller.apputils.text_data import WordCorpus, batchify, bptt_batches, read_word_corpus
from distiller.cli.common import ArgumentParser, fraction, positive_float, positive_int

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_model import RNNModel, State  # noqa: E402

msglogger = logging.getLogger(__name__)
ARCH = "word_lstm_lm"
Batches = list[tuple[torch.Tensor, torch.Tensor]]


def get_args_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Word-level LSTM language model with compression")
    app.add_sequence_app_args(parser, epochs=6, lr=20.0, batch_size=64)
    group = parser.add_argument_group("Language model arguments")
    group.add_argument("--max-words", type=positive_int, default=200_000,
                       help="tokens of the default corpus, all splits (default: 200000)")
    group.add_argument("--max-vocab", type=positive_int, default=10_000,
                       help="largest vocabulary; rarer training words become <unk> (default: 10000)")
    group.add_argument("--emsize", type=positive_int, default=128, help="embedding size (default: 128)")
    group.add_argument("--nhid", type=positive_int, default=128, help="LSTM hidden size (default: 128)")
    group.add_argument("--nlayers", type=positive_int, default=2, help="LSTM layers (default: 2)")
    group.add_argument("--dropout", type=fraction(True, False), default=0.3, help="dropout (default: 0.3)")
    group.add_argument("--tied", action="store_true", help="tie the decoder's weight to the embedding")
    group.add_argument("--bptt", type=positive_int, default=35, help="steps of back-propagation through time")
    group.add_argument("--clip", type=positive_float, default=0.25, help="gradient norm clipping (default: 0.25)")
    group.add_argument("--eval-batch-size", type=positive_int, default=32, help="evaluation batch size")
    return parser


@dataclass
class Setup:
    corpus: WordCorpus
    model: RNNModel
    model_args: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: distiller.CompressionScheduler


class StatefulLoss:
    """The next-word cross-entropy of one BPTT window, carrying the LSTM state over from the previous window
    (detached: gradients stop at the window's start)."""

    def __init__(self) -> None:
        self.hidden: Optional[State] = None

    def __call__(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        inputs, targets = batch
        hidden = None if self.hidden is None else (self.hidden[0].detach(), self.hidden[1].detach())
        output, self.hidden = model(inputs, hidden)
        return F.cross_entropy(output.reshape(-1, output.size(-1)), targets.reshape(-1))


def evaluate(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Mean next-word cross-entropy (nats) over ``batches`` and its perplexity."""
    model.eval()
    loss_of = StatefulLoss()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            total += loss_of(model, batch).item() * batch[1].numel()
            count += batch[1].numel()
    loss = total / count
    return {"loss": loss, "ppl": math.exp(loss) if loss < 700 else math.inf}


def load_corpus(args: argparse.Namespace) -> WordCorpus:
    if args.data:
        return read_word_corpus(args.data, args.max_vocab)
    return stdlib_docstring_corpus(args.max_words, args.max_vocab)


def setup(args: argparse.Namespace) -> Setup:
    """Reads the corpus, builds (or loads) the model, the optimizer and the schedule; checks the PTQ flags."""
    torch.manual_seed(args.seed)
    corpus = load_corpus(args)
    msglogger.info("Corpus: %d words of vocabulary; %d / %d / %d tokens (train / valid / test)", len(corpus.vocab),
                   corpus.train.numel(), corpus.valid.numel(), corpus.test.numel())
    if args.load:
        model_args = app.read_model_checkpoint(args.load, ARCH, {"words": corpus.vocab})
    else:
        model_args = dict(ntoken=len(corpus.vocab), ninp=args.emsize, nhid=args.nhid, nlayers=args.nlayers,
                          dropout=args.dropout, tie_weights=args.tied)
    model, optimizer, scheduler = app.prepare_model(RNNModel, model_args, args,
                                                    lambda params: torch.optim.SGD(params, lr=args.lr))
    return Setup(corpus, model, model_args, optimizer, scheduler)


def train(args: argparse.Namespace, s: Setup, run_dir: str, valid: Batches) -> dict[str, Any]:
    """Trains for ``--epochs`` (the schedule's learning-rate policies set the learning rate)."""
    train_data = batchify(s.corpus.train, args.batch_size)
    history = []
    for epoch in range(args.epochs):
        batches = list(bptt_batches(train_data, args.bptt))
        train_loss = app.train_one_epoch(s.model, batches, StatefulLoss(), s.optimizer, epoch, s.scheduler,
                                         grad_clip=args.clip)
        result = evaluate(s.model, valid)
        sparsity = app.weight_sparsity(s.model)
        msglogger.info("Epoch %d: train loss %.3f | valid loss %.3f ppl %.2f | weight sparsity %.2f%%", epoch,
                       train_loss, result["loss"], result["ppl"], sparsity)
        history.append({"epoch": epoch, "train_loss": train_loss, "valid_ppl": result["ppl"], "sparsity": sparsity})
        app.save_model(run_dir, ARCH, s.model, epoch, s.model_args, {"words": s.corpus.vocab}, s.scheduler)
    return {"epochs": history}


def run(args: argparse.Namespace, s: Setup, run_dir: str) -> dict[str, Any]:
    valid = list(bptt_batches(batchify(s.corpus.valid, args.eval_batch_size), args.bptt))
    test = list(bptt_batches(batchify(s.corpus.test, args.eval_batch_size), args.bptt))
    summary = train(args, s, run_dir, valid) if args.epochs else {}
    result = evaluate(s.model, test)
    summary.update(test_loss=result["loss"], test_ppl=result["ppl"], sparsity=app.weight_sparsity(s.model),
                   vocabulary=len(s.corpus.vocab), train_tokens=s.corpus.train.numel())
    msglogger.info("Test: loss %.4f ppl %.2f | weight sparsity %.2f%%", result["loss"], result["ppl"],
                   summary["sparsity"])
    if args.quantize_eval:
        portion = args.qe_calibration or 0.1
        calibration = valid[:max(1, math.ceil(portion * len(valid)))]
        app.quantize_post_training(s.model, args, lambda m: evaluate(m, calibration), test[0][0], run_dir)
        quantized = evaluate(s.model, test)
        summary.update(quantized_test_loss=quantized["loss"], quantized_test_ppl=quantized["ppl"],
                       quantized_ppl_change=quantized["ppl"] / result["ppl"] - 1.0)
        msglogger.info("Quantized test: loss %.4f ppl %.2f (%+.2f%%)", quantized["loss"], quantized["ppl"],
                       100 * summary["quantized_ppl_change"])
    return summary


def main(args: argparse.Namespace) -> dict[str, Any]:
    return app.run_app(args, lambda: setup(args), lambda s, run_dir: run(args, s, run_dir))


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
