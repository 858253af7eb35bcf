"""distiller.apputils.text_data and stdlib_text: vocabularies, corpus readers, batching."""
import pytest
import torch

from distiller.apputils.stdlib_text import stdlib_docstring_corpus, tokenize_words
from distiller.apputils.text_data import (EOS, UNK, Vocabulary, batchify, bptt_batches, read_parallel_corpus,
                                          read_word_corpus)
from distiller.errors import ArgumentError, CheckpointError, InputFileError


def test_vocabulary_orders_by_frequency_then_word_and_caps_size():
    vocab = Vocabulary.from_tokens("b a c a b a d".split(), max_size=4)
    assert vocab.words == [UNK, EOS, "a", "b"]
    assert vocab.encode(["a", "c", "b"]).tolist() == [2, 0, 3]  # c was cut: <unk>
    assert vocab.decode([3, 2]) == ["b", "a"]


def test_vocabulary_without_unk_refuses_unknown_words():
    with pytest.raises(ArgumentError, match="'z' is not in the vocabulary"):
        Vocabulary(["a", "b"]).encode(["z"])
    with pytest.raises(ArgumentError, match="'a' more than once"):
        Vocabulary(["a", "a"])


def test_vocabulary_check_same_names_the_first_difference():
    vocab = Vocabulary([UNK, EOS, "a", "b"])
    vocab.check_same([UNK, EOS, "a", "b"], "x.pth")
    with pytest.raises(CheckpointError, match=r"'x.pth' was trained with a target vocabulary of 4 words, this data "
                                              r"has 4 \(first difference at index 3: 'c' in the checkpoint, 'b' here"):
        vocab.check_same([UNK, EOS, "a", "c"], "x.pth", which="target")
    with pytest.raises(CheckpointError, match="3 words.*index 3: '\\(end\\)' in the checkpoint"):
        vocab.check_same([UNK, EOS, "a"], "x.pth")


def _write(directory, files):
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")


def test_read_word_corpus_builds_the_vocabulary_from_train_and_ends_lines_with_eos(tmp_path):
    _write(tmp_path, {"train.txt": " the cat sat \n\n the dog \n", "valid.txt": "the bird\n", "test.txt": "cat\n"})
    corpus = read_word_corpus(str(tmp_path))
    assert corpus.vocab.decode(corpus.train) == ["the", "cat", "sat", EOS, "the", "dog", EOS]
    assert corpus.vocab.decode(corpus.valid) == ["the", UNK, EOS]
    assert corpus.vocab.decode(corpus.test) == ["cat", EOS]


@pytest.mark.parametrize("missing", ["train.txt", "test.txt"])
def test_read_word_corpus_names_the_missing_file(tmp_path, missing):
    _write(tmp_path, {name: "a b\n" for name in ("train.txt", "valid.txt", "test.txt") if name != missing})
    with pytest.raises(InputFileError, match=rf"'{tmp_path}' has no {missing}: it needs WikiText-2 style"):
        read_word_corpus(str(tmp_path))


def test_read_word_corpus_refuses_a_missing_directory_and_non_utf8(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        read_word_corpus(str(tmp_path / "nowhere"))
    _write(tmp_path, {"valid.txt": "a\n", "test.txt": "a\n"})
    (tmp_path / "train.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(InputFileError, match="train.txt' is not UTF-8 text"):
        read_word_corpus(str(tmp_path))


def test_read_parallel_corpus_pairs_lines_and_refuses_uneven_files(tmp_path):
    for split in ("train", "valid", "test"):
        _write(tmp_path, {f"{split}.en": "a b\nc\n", f"{split}.de": "x\ny z\n"})
    corpus = read_parallel_corpus(str(tmp_path), "en", "de")
    assert corpus.splits["valid"] == ([["a", "b"], ["c"]], [["x"], ["y", "z"]])
    _write(tmp_path, {"test.de": "x\n"})
    with pytest.raises(InputFileError, match=r"test.en' has 2 lines but '.de' has 1"):
        read_parallel_corpus(str(tmp_path), "en", "de")
    with pytest.raises(InputFileError, match="has no train.fr"):
        read_parallel_corpus(str(tmp_path), "fr", "de")


def test_batchify_and_bptt_windows_shift_targets_by_one_step():
    data = batchify(torch.arange(23), 4)  # 5 rows, 3 tokens dropped
    assert data.shape == (5, 4)
    assert data[:, 1].tolist() == [5, 6, 7, 8, 9]  # each column is a contiguous stretch
    windows = list(bptt_batches(data, 3))
    assert [w[0].shape[0] for w in windows] == [3, 1]
    for inputs, targets in windows:
        assert torch.equal(targets - inputs, torch.ones_like(inputs))
    with pytest.raises(ArgumentError, match="cannot fill 2 rows of batch size 8"):
        batchify(torch.arange(10), 8)


def test_tokenize_words_lowercases_and_replaces_numbers():
    assert tokenize_words("Return 3.5 items, don't fail!") == ["return", "N", "items", ",", "don't", "fail", "!"]


def test_stdlib_corpus_splits_paragraphs_deterministically_and_drops_code(tmp_path):
    lines = ['"""Module docstring with enough words in it."""']
    for i in range(25):
        lines += [f"def f{i}():", f'    """Function number {i} does one thing well.', "", "    >>> f()",
                  '    """']
    (tmp_path / "mod.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text('"""Tests are skipped entirely here."""\n')
    corpus = stdlib_docstring_corpus(max_words=10_000, root=str(tmp_path))
    words = corpus.vocab.decode(torch.cat([corpus.train, corpus.valid, corpus.test]))
    assert "tests" not in words and ">>>" not in words and "f" not in words
    # ast.walk visits the module, then the functions in order: paragraphs 18 and 19 (functions 17 and 18)
    assert corpus.vocab.decode(corpus.valid) == "function number N does one thing well . <eos>".split()
    assert corpus.test.numel() == corpus.valid.numel()
    again = stdlib_docstring_corpus(max_words=10_000, root=str(tmp_path))
    assert torch.equal(again.train, corpus.train)
    with pytest.raises(ArgumentError, match="leaves no test paragraph"):
        stdlib_docstring_corpus(max_words=10_000, root=str(tmp_path / "tests"))
