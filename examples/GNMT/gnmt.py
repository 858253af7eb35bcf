#!/usr/bin/env python3
"""A small GNMT-style translation model: training, post-training quantization with per-layer overrides from a
YAML file, and evaluation of greedy translations (token accuracy, exact sentences, and BLEU with sacrebleu when
it is installed).

From the repository root (see README.md beside this file for the measured results)::

    python examples/GNMT/gnmt.py -n gnmt --quantize-eval --qe-config-file examples/GNMT/gnmt_ptq.yaml
    python examples/GNMT/gnmt.py --data DIR --src-ext en --tgt-ext de ...   # DIR/{train,valid,test}.{en,de}

Without ``--data`` the task is generated: translate a sentence into its reversal with every word mapped to a
word of its own (see gnmt_data.py).
"""
import argparse
import importlib.util
import logging
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

import distiller
from distiller.apputils import sequence_app as app
from distiller.apputils.app_runner import run_cli
from distiller.apputils.text_data import BOS, EOS, ParallelCorpus, Vocabulary, read_parallel_corpus
from distiller.cli.common import ArgumentParser, fraction, positive_float, positive_int

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gnmt_data import Batch, generated_translation_task, make_batches, vocabularies  # noqa: E402
from gnmt_model import GNMT  # noqa: E402

msglogger = logging.getLogger(__name__)
ARCH = "gnmt_small"
BLEU_MISSING = "BLEU skipped: sacrebleu is not installed (pip install sacrebleu)"


def get_args_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description="GNMT-style translation with post-training quantization")
    app.add_sequence_app_args(parser, epochs=8, lr=2e-3, batch_size=64)
    group = parser.add_argument_group("Translation arguments")
    group.add_argument("--src-ext", default="src", help="source file extension with --data (default: src)")
    group.add_argument("--tgt-ext", default="tgt", help="target file extension with --data (default: tgt)")
    group.add_argument("--train-pairs", type=positive_int, default=6000,
                       help="generated task: training pairs (validation and test: a twentieth each; default 6000)")
    group.add_argument("--max-vocab", type=positive_int, default=16_000, help="largest vocabulary per language")
    group.add_argument("--hidden", type=positive_int, default=128, help="embedding and LSTM size (default: 128)")
    group.add_argument("--decoder-layers", type=positive_int, default=2, help="decoder LSTM layers (default: 2)")
    group.add_argument("--dropout", type=fraction(True, False), default=0.1, help="dropout (default: 0.1)")
    group.add_argument("--clip", type=positive_float, default=1.0, help="gradient norm clipping (default: 1.0)")
    group.add_argument("--max-len-extra", type=positive_int, default=5,
                       help="greedy decoding stops at the longest source length plus this many words")
    return parser


@dataclass
class Setup:
    corpus: ParallelCorpus
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    model: GNMT
    model_args: dict[str, Any]
    optimizer: torch.optim.Optimizer
    scheduler: distiller.CompressionScheduler


def teacher_forced_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy of the next target word given the reference prefix (padding ignored)."""
    logits = model(batch.src, batch.tgt_in)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.tgt_out.reshape(-1), ignore_index=0)


def token_accuracy(hypotheses: list[list[str]], references: list[list[str]]) -> float:
    """Words equal to the reference word at the same position, over the longer of each pair's lengths."""
    correct = sum(sum(h == r for h, r in zip(hyp, ref)) for hyp, ref in zip(hypotheses, references))
    return correct / max(1, sum(max(len(hyp), len(ref)) for hyp, ref in zip(hypotheses, references)))


def bleu(hypotheses: list[list[str]], references: list[list[str]]) -> Optional[float]:
    """sacrebleu's corpus BLEU of the tokenised sentences, or None (with a logged note) without sacrebleu."""
    if importlib.util.find_spec("sacrebleu") is None:
        msglogger.info(BLEU_MISSING)
        return None
    import sacrebleu
    return float(sacrebleu.corpus_bleu([" ".join(h) for h in hypotheses], [[" ".join(r) for r in references]],
                                       tokenize="none").score)


def evaluate(model: GNMT, batches: list[Batch], tgt_vocab: Vocabulary, max_len_extra: int,
             with_bleu: bool = True) -> dict[str, Any]:
    """Greedy translations of ``batches`` scored against their references (BLEU only ``with_bleu``)."""
    model.eval()
    hypotheses: list[list[str]] = []
    references: list[list[str]] = []
    for batch in batches:
        ids = model.translate(batch.src, tgt_vocab.index[BOS], tgt_vocab.index[EOS], batch.src.size(0) + max_len_extra)
        hypotheses += [tgt_vocab.decode(sentence) for sentence in ids]
        references += batch.references
    exact = sum(h == r for h, r in zip(hypotheses, references)) / len(references)
    return {"token_accuracy": token_accuracy(hypotheses, references), "exact_match": exact,
            "bleu": bleu(hypotheses, references) if with_bleu else None, "example": " ".join(hypotheses[0])}


def setup(args: argparse.Namespace) -> Setup:
    """Reads or generates the sentence pairs, builds the vocabularies and (or loads) the model."""
    torch.manual_seed(args.seed)
    corpus = (read_parallel_corpus(args.data, args.src_ext, args.tgt_ext) if args.data
              else generated_translation_task(args.seed, args.train_pairs))
    src_vocab, tgt_vocab = vocabularies(corpus, args.max_vocab)
    msglogger.info("%d / %d / %d sentence pairs; vocabularies %d (source) and %d (target) words",
                   *(len(corpus.splits[s][0]) for s in ("train", "valid", "test")), len(src_vocab), len(tgt_vocab))
    if args.load:
        model_args = app.read_model_checkpoint(args.load, ARCH, {"source": src_vocab, "target": tgt_vocab})
    else:
        model_args = dict(src_vocab=len(src_vocab), tgt_vocab=len(tgt_vocab), hidden=args.hidden,
                          decoder_layers=args.decoder_layers, dropout=args.dropout)
    model, optimizer, scheduler = app.prepare_model(GNMT, model_args, args,
                                                    lambda params: torch.optim.Adam(params, lr=args.lr))
    return Setup(corpus, src_vocab, tgt_vocab, model, model_args, optimizer, scheduler)


def run(args: argparse.Namespace, s: Setup, run_dir: str) -> dict[str, Any]:
    def batches(split: str, shuffle_seed: Optional[int] = None) -> list[Batch]:
        return make_batches(s.corpus.splits[split], s.src_vocab, s.tgt_vocab, args.batch_size, shuffle_seed)

    valid, test = batches("valid"), batches("test")
    history = []
    for epoch in range(args.epochs):
        loss = app.train_one_epoch(s.model, batches("train", args.seed + epoch), teacher_forced_loss, s.optimizer,
                                   epoch, s.scheduler, grad_clip=args.clip)
        result = evaluate(s.model, valid, s.tgt_vocab, args.max_len_extra, with_bleu=False)
        msglogger.info("Epoch %d: train loss %.4f | valid token accuracy %.4f exact %.4f", epoch, loss,
                       result["token_accuracy"], result["exact_match"])
        history.append({"epoch": epoch, "train_loss": loss, "valid_token_accuracy": result["token_accuracy"]})
        app.save_model(run_dir, ARCH, s.model, epoch, s.model_args, {"source": s.src_vocab, "target": s.tgt_vocab},
                       s.scheduler)
    result = evaluate(s.model, test, s.tgt_vocab, args.max_len_extra)
    summary: dict[str, Any] = {"epochs": history, "test": result, "sparsity": app.weight_sparsity(s.model)}
    msglogger.info("Test: %s", result)
    if args.quantize_eval:
        calibration = valid[:max(1, math.ceil((args.qe_calibration or 0.1) * len(valid)))]

        def calibrate(model: nn.Module) -> None:
            model.eval()
            with torch.no_grad():
                for batch in calibration:
                    model(batch.src, batch.tgt_in)

        app.quantize_post_training(s.model, args, calibrate, (calibration[0].src, calibration[0].tgt_in), run_dir)
        summary["quantized_test"] = evaluate(s.model, test, s.tgt_vocab, args.max_len_extra)
        msglogger.info("Quantized test: %s", summary["quantized_test"])
    return summary


def main(args: argparse.Namespace) -> dict[str, Any]:
    return app.run_app(args, lambda: setup(args), lambda s, run_dir: run(args, s, run_dir))


if __name__ == "__main__":
    sys.exit(run_cli(main, get_args_parser()))
