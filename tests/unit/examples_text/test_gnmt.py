"""examples/GNMT: the generated task, batches, the encoder-decoder, its metrics and PTQ with the YAML overrides."""
import os

import pytest
import torch

from distiller.quantization.range_linear.wrappers import RangeLinearQuantWrapper

from .conftest import EXAMPLES, load_example


@pytest.fixture(scope="module")
def gnmt_data():
    return load_example("GNMT", "gnmt_data")


@pytest.fixture(scope="module")
def gnmt_model():
    return load_example("GNMT", "gnmt_model")


@pytest.fixture(scope="module")
def tiny(gnmt_data):
    corpus = gnmt_data.generated_translation_task(0, train_pairs=160, words=6)
    return corpus, *gnmt_data.vocabularies(corpus, 100)


def test_generated_task_reverses_and_maps_one_to_one(gnmt_data):
    corpus = gnmt_data.generated_translation_task(1, words=10)
    assert [len(corpus.splits[s][0]) for s in ("train", "valid", "test")] == [6000, 300, 300]
    mapping = {}
    for source, target in zip(*corpus.splits["train"]):
        assert len(source) == len(target) and 3 <= len(source) <= 10
        for s, t in zip(source, reversed(target)):
            assert mapping.setdefault(s, t) == t
    assert len(set(mapping.values())) == len(mapping) == 10
    assert gnmt_data.generated_translation_task(1, words=10).splits == corpus.splits


def test_batches_pad_and_shift_the_target(tiny, gnmt_data):
    corpus, src_vocab, tgt_vocab = tiny
    batch = gnmt_data.make_batches(corpus.splits["test"], src_vocab, tgt_vocab, 5)[0]
    longest = max(len(s) for s in corpus.splits["test"][0][:5])
    assert batch.src.shape == (longest, 5) and batch.tgt_in.shape == batch.tgt_out.shape == (longest + 1, 5)
    assert (batch.tgt_in[0] == tgt_vocab.index["<bos>"]).all()
    assert torch.equal(batch.tgt_in[1:2], batch.tgt_out[0:1])
    length = len(batch.references[0])
    assert batch.tgt_out[length, 0] == tgt_vocab.index["<eos>"]


def test_model_shapes_and_greedy_translation(tiny, gnmt_data, gnmt_model):
    corpus, src_vocab, tgt_vocab = tiny
    torch.manual_seed(0)
    model = gnmt_model.GNMT(len(src_vocab), len(tgt_vocab), hidden=8, dropout=0.0).eval()
    batch = gnmt_data.make_batches(corpus.splits["test"], src_vocab, tgt_vocab, 4)[0]
    assert model(batch.src, batch.tgt_in).shape == (*batch.tgt_in.shape, len(tgt_vocab))
    translations = model.translate(batch.src, 2, 3, max_len=7)
    assert len(translations) == 4 and all(len(t) <= 7 and 3 not in t for t in translations)
    # padding a sentence further does not change what the attention reads
    padded = torch.cat([batch.src, torch.zeros(2, 4, dtype=torch.int64)])
    memory_mask = gnmt_model._padding(padded)
    assert memory_mask.shape == (4, 1, padded.size(0)) and memory_mask[:, 0, -2:].all()


def test_token_accuracy_and_missing_sacrebleu(gnmt_app, monkeypatch, caplog):
    assert gnmt_app.token_accuracy([["a", "b", "c"], ["x"]], [["a", "c"], ["x"]]) == pytest.approx(2 / 4)
    monkeypatch.setattr(gnmt_app.importlib.util, "find_spec", lambda name: None)
    with caplog.at_level("INFO"):
        assert gnmt_app.bleu([["a"]], [["a"]]) is None
    assert "sacrebleu is not installed (pip install sacrebleu)" in caplog.text


def test_bleu_with_sacrebleu(gnmt_app):
    pytest.importorskip("sacrebleu")
    sentence = "the quick brown fox jumps".split()
    assert gnmt_app.bleu([sentence], [sentence]) == pytest.approx(100.0)


def test_ptq_with_the_example_overrides_keeps_logits_close(tiny, gnmt_data, gnmt_model, gnmt_app, tmp_path):
    corpus, src_vocab, tgt_vocab = tiny
    torch.manual_seed(0)
    model = gnmt_model.GNMT(len(src_vocab), len(tgt_vocab), hidden=8, dropout=0.0).eval()
    batch = gnmt_data.make_batches(corpus.splits["valid"], src_vocab, tgt_vocab, 8)[0]
    expected = model(batch.src, batch.tgt_in).detach()
    args = gnmt_app.get_args_parser().parse_args(
        ["--quantize-eval", "--qe-config-file", os.path.join(EXAMPLES, "GNMT", "gnmt_ptq.yaml")])
    gnmt_app.app.check_sequence_app_args(model, args)
    gnmt_app.app.quantize_post_training(model, args, lambda m: m(batch.src, batch.tgt_in), (batch.src, batch.tgt_in),
                                        str(tmp_path))
    softmax = model.decoder.attention.softmax
    assert isinstance(softmax, RangeLinearQuantWrapper) and softmax.num_bits_acts == 16  # the YAML override
    assert isinstance(model.encoder.rnn_bidirectional.cells_reverse[0].fc_gate_x, RangeLinearQuantWrapper)
    output = model(batch.src, batch.tgt_in)
    assert not torch.equal(output, expected)
    torch.testing.assert_close(output, expected, atol=0.1 * float(expected.abs().max()), rtol=0.0)
