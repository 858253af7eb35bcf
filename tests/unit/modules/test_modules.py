"""distiller.modules: functional ops as modules, the quantization-friendly LSTM, fx conversion."""
import copy

import pytest
import torch
from torch import nn

from distiller.errors import ArgumentError
from distiller.modules import (BatchMatmul, Chunk, Concat, DistillerLSTM, DistillerLSTMCell, EltwiseAdd, EltwiseDiv,
                               EltwiseMult, EltwiseSub, Matmul, Mean, Split, Stack, View, convert_functional_ops,
                               convert_model_to_distiller_lstm, find_functional_ops)


def test_modules_compute_their_functions():
    a, b, c = torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(EltwiseAdd()(a, b, c), a + b + c)
    assert torch.equal(EltwiseSub()(a, b), a - b)
    assert torch.equal(EltwiseMult()(a, b), a * b)
    assert torch.equal(EltwiseDiv()(a, b), a / b)
    inplace = a.clone()
    assert EltwiseAdd(inplace=True)(inplace, b) is inplace and torch.equal(inplace, a + b)
    assert torch.equal(Concat(dim=1)(a, b), torch.cat([a, b], 1))
    assert torch.equal(Concat(dim=0)([a, b]), torch.cat([a, b], 0))
    assert torch.equal(Stack(dim=0)(a, b), torch.stack([a, b]))
    assert [t.shape for t in Split(2, dim=1)(a)] == [(2, 2), (2, 1)]
    assert len(Chunk(3, dim=1)(a)) == 3
    assert torch.equal(Mean((0, 1))(a), a.mean((0, 1)))
    assert View(-1)(a).shape == (6,) and View(3, 1, keep_batch=True)(a).shape == (2, 3, 1)
    m, n = torch.randn(4, 2, 3), torch.randn(4, 3, 5)
    assert torch.allclose(Matmul()(m, n), m @ n) and torch.allclose(BatchMatmul()(m, n), torch.bmm(m, n))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_distiller_lstm_equals_torch_lstm(bidirectional, batch_first):
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, num_layers=2, bidirectional=bidirectional, batch_first=batch_first)
    ours = DistillerLSTM.from_pytorch_impl(lstm)
    x = torch.randn(3, 4, 5)
    directions = 2 if bidirectional else 1
    state = (torch.randn(2 * directions, 3 if batch_first else 4, 7), torch.randn(2 * directions, 3 if batch_first else 4, 7))
    for h in (None, state):
        expected, (h_n, c_n) = lstm(x, h)
        output, (our_h, our_c) = ours(x, h)
        assert torch.allclose(output, expected, atol=1e-6)
        assert torch.allclose(our_h, h_n, atol=1e-6) and torch.allclose(our_c, c_n, atol=1e-6)
    assert torch.allclose(ours.to_pytorch_impl()(x)[0], lstm(x)[0], atol=1e-6)


@pytest.mark.parametrize("build, argument", [
    (lambda: DistillerLSTM(5, 7, num_layers=0), "num_layers"),
    (lambda: DistillerLSTM.from_pytorch_impl(nn.LSTM(5, 7, proj_size=3)), "lstm"),
])
def test_distiller_lstm_refuses_what_it_cannot_compute_as_argument_errors(build, argument):
    with pytest.raises(ArgumentError) as info:
        build()
    assert info.value.argument == argument


def test_lstm_cell_and_model_conversion():
    torch.manual_seed(1)
    cell = nn.LSTMCell(4, 6)
    ours = DistillerLSTMCell.from_pytorch_impl(cell)
    x, h, c = torch.randn(2, 4), torch.randn(2, 6), torch.randn(2, 6)
    for got, want in zip(ours(x, (h, c)), cell(x, (h, c))):
        assert torch.allclose(got, want, atol=1e-6)
    model = nn.Sequential(nn.Linear(3, 4), nn.LSTM(4, 4))
    converted = convert_model_to_distiller_lstm(copy.deepcopy(model))
    assert isinstance(converted[1], DistillerLSTM)
    assert isinstance(ours.eltwiseadd_gate, EltwiseAdd) and isinstance(ours.eltwisemult_hidden, EltwiseMult)
    with pytest.raises(TypeError, match="PackedSequence"):
        converted[1](nn.utils.rnn.pack_padded_sequence(torch.randn(3, 2, 4), [3, 2]))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        y = self.conv(x)
        scale = x.size(1) * 2  # integer arithmetic on sizes stays functional
        return torch.cat([y + x, y * x], dim=1) / scale


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = _Block()
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.block(x)
        return self.head(x) + x[:, :2]


class _Untraceable(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            return x + 1
        return x


def test_convert_functional_ops_keeps_computation_and_names():
    torch.manual_seed(2)
    net = _Net().eval()
    x = torch.randn(2, 4, 5, 5)
    expected, keys = net(x), set(net.state_dict())
    # the division by a size-derived number is not tensor-tensor arithmetic: it stays functional
    assert find_functional_ops(net) == [("", "add"), ("block", "add"), ("block", "mul"), ("block", "cat")]
    assert convert_functional_ops(net) is net
    assert torch.equal(net(x), expected)
    assert set(net.state_dict()) == keys  # no parameter renamed or dropped (the unused layer stays)
    assert isinstance(net.add, EltwiseAdd) and isinstance(net.block.cat, Concat) and isinstance(net.block, _Block)
    assert find_functional_ops(net) == []
    assert torch.equal(copy.deepcopy(net)(x), expected)


def test_untraceable_module_is_left_alone():
    module = _Untraceable()
    convert_functional_ops(module)
    assert list(module.children()) == [] and type(module) is _Untraceable


class _OptionalBias(nn.Module):
    def forward(self, x, bias=None):
        if bias is None:  # torch.fx would trace this as False: a converted forward could not take bias=None
            bias = torch.ones_like(x)
        return x + bias


def test_module_with_arguments_defaulting_to_none_is_left_alone():
    module = _OptionalBias()
    assert find_functional_ops(module) == []
    convert_functional_ops(module)
    assert type(module) is _OptionalBias
    x = torch.zeros(2)
    assert torch.equal(module(x), torch.ones(2)) and torch.equal(module(x, bias=x), x)


def test_distiller_lstm_takes_distillers_arguments_and_defaults():
    lstm = DistillerLSTM(5, 7, 2, True, False, 0.5, True, 2)
    assert (lstm.dropout, lstm.bidirectional_type) == (0.5, 2)
    assert DistillerLSTM(5, 7, 2).dropout == 0.5  # Distiller's default (torch.nn.LSTM's is 0)
    h, c = lstm.init_hidden(3)
    assert h.shape == c.shape == (4, 3, 7) and not h.any() and h is not c
    h64, _ = DistillerLSTM(5, 7, 1).double().init_hidden(2)
    assert h64.dtype == torch.float64 and h64.shape == (1, 2, 7)
    with pytest.raises(ArgumentError, match="bidirectional_type must be 1 or 2") as info:
        DistillerLSTM(5, 7, 1, bidirectional=True, bidirectional_type=3)
    assert info.value.argument == "bidirectional_type"


def test_distiller_lstm_with_dropout_matches_nn_lstm_in_eval_mode():
    torch.manual_seed(0)
    lstm = nn.LSTM(5, 7, num_layers=3, dropout=0.5).eval()
    ours = DistillerLSTM.from_pytorch_impl(lstm).eval()
    assert ours.dropout == 0.5
    x = torch.randn(4, 2, 5)
    torch.testing.assert_close(ours(x)[0], lstm(x)[0], atol=1e-6, rtol=1e-5)


def test_bidirectional_type_1_runs_each_direction_through_its_own_stack():
    torch.manual_seed(0)
    forward_stack, backward_stack = nn.LSTM(5, 7, num_layers=2), nn.LSTM(5, 7, num_layers=2)
    ours = DistillerLSTM(5, 7, 2, dropout=0.0, bidirectional=True, bidirectional_type=1)
    assert ours.cells[1].input_size == ours.cells_reverse[1].input_size == 7  # not 14, as in type 2
    ours.cells = DistillerLSTM.from_pytorch_impl(forward_stack).cells
    ours.cells_reverse = DistillerLSTM.from_pytorch_impl(backward_stack).cells
    x = torch.randn(6, 3, 5)
    state = ours.init_hidden(3)
    state = (torch.randn_like(state[0]), torch.randn_like(state[1]))
    expected_f, (h_f, c_f) = forward_stack(x, (state[0][0::2], state[1][0::2]))
    expected_b, (h_b, c_b) = backward_stack(x.flip(0), (state[0][1::2], state[1][1::2]))
    output, (h_n, c_n) = ours(x, state)
    torch.testing.assert_close(output, torch.cat([expected_f, expected_b.flip(0)], dim=2), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(h_n, torch.stack([h_f[0], h_b[0], h_f[1], h_b[1]]), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(c_n, torch.stack([c_f[0], c_b[0], c_f[1], c_b[1]]), atol=1e-6, rtol=1e-5)
    with pytest.raises(ArgumentError, match="no torch.nn.LSTM equivalent"):
        ours.to_pytorch_impl()


class _Patches(nn.Module):
    """Size bookkeeping as in torchvision's ViT (``n_h * n_w`` of floor divisions) and MaxViT (``p * p`` of an int
    argument), next to one real tensor product."""

    def forward(self, x: torch.Tensor, p: int) -> torch.Tensor:
        n, c, h, w = x.shape
        patches = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        patches = patches.reshape(n, (h // p) * (w // p), p * p, c)
        return patches * patches


def test_arithmetic_on_sizes_and_int_arguments_stays_functional():
    module = _Patches()
    assert find_functional_ops(module) == [("", "mul")]  # only the tensor product
    x = torch.randn(2, 3, 4, 4)
    expected = module(x, 2)
    convert_functional_ops(module)
    assert isinstance(module.mul, EltwiseMult) and not hasattr(module, "mul_1")
    assert torch.equal(module(x, 2), expected)
