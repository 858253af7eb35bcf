"""A quantization-friendly LSTM: every gate matmul, add, product and activation is its own module.

``torch.nn.LSTM`` is one fused kernel, so a quantizer cannot give its gates their own ranges.
``DistillerLSTM`` computes the same function (Hochreiter & Schmidhuber 1997, with the gate layout of
``torch.nn.LSTM``) from ``nn.Linear``, ``EltwiseAdd``/``EltwiseMult`` and activation modules, so each
gate is wrapped, calibrated and quantized separately.
"""
from __future__ import annotations

import typing
from typing import Optional

import torch
from torch import nn

from ..errors import ArgumentError
from .eltwise import EltwiseAdd, EltwiseMult
from .tensor_ops import Chunk, Concat

#: An LSTM's ``(h, c)`` state.
_State = tuple[torch.Tensor, torch.Tensor]


class DistillerLSTMCell(nn.Module):
    """One LSTM step, gate order (input, forget, cell, output) as in ``torch.nn.LSTMCell``.

    Args:
        input_size: features of the input ``x``.
        hidden_size: features of the hidden and cell states.
        bias: add the input and hidden biases.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.fc_gate_x = nn.Linear(input_size, 4 * hidden_size, bias=bias)
        self.fc_gate_h = nn.Linear(hidden_size, 4 * hidden_size, bias=bias)
        self.eltwiseadd_gate = EltwiseAdd()
        self.chunk_gates = Chunk(4, dim=1)
        self.act_i, self.act_f, self.act_o = nn.Sigmoid(), nn.Sigmoid(), nn.Sigmoid()
        self.act_g = nn.Tanh()
        self.eltwisemult_cell_forget = EltwiseMult()
        self.eltwisemult_cell_input = EltwiseMult()
        self.eltwiseadd_cell = EltwiseAdd()
        self.act_h = nn.Tanh()
        self.eltwisemult_hidden = EltwiseMult()

    def forward(self, x: torch.Tensor, h: Optional[_State] = None) -> _State:
        """Returns ``(h, c)`` after one step; ``h`` is the ``(h, c)`` state (zeros when None)."""
        h_prev, c_prev = h if h is not None else self.init_hidden(x.size(0), x)
        gates = self.eltwiseadd_gate(self.fc_gate_x(x), self.fc_gate_h(h_prev))
        i, f, g, o = self.chunk_gates(gates)
        i, f, g, o = self.act_i(i), self.act_f(f), self.act_g(g), self.act_o(o)
        c = self.eltwiseadd_cell(self.eltwisemult_cell_forget(f, c_prev), self.eltwisemult_cell_input(i, g))
        hidden = self.eltwisemult_hidden(o, self.act_h(c))
        return hidden, c

    def init_hidden(self, batch_size: int, like: torch.Tensor) -> _State:
        """Zero ``(h, c)`` states for ``batch_size`` samples, with the dtype and device of ``like``."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return zeros, zeros.clone()

    @classmethod
    def from_pytorch_impl(cls, cell: nn.LSTMCell) -> DistillerLSTMCell:
        """Builds a cell with the weights of a ``torch.nn.LSTMCell``."""
        new = cls(cell.input_size, cell.hidden_size, cell.bias)
        _copy_gate_weights(new, cell.weight_ih, cell.weight_hh,
                           getattr(cell, "bias_ih", None), getattr(cell, "bias_hh", None))
        return new.to(cell.weight_ih.device)

    def to_pytorch_impl(self) -> nn.LSTMCell:
        """Returns an equivalent ``torch.nn.LSTMCell``."""
        cell = nn.LSTMCell(self.input_size, self.hidden_size, self.bias).to(self.fc_gate_x.weight.device)
        with torch.no_grad():
            cell.weight_ih.copy_(self.fc_gate_x.weight)
            cell.weight_hh.copy_(self.fc_gate_h.weight)
            if self.bias:
                cell.bias_ih.copy_(self.fc_gate_x.bias)
                cell.bias_hh.copy_(self.fc_gate_h.bias)
        return cell


def _copy_gate_weights(cell: DistillerLSTMCell, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                       bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor]) -> None:
    with torch.no_grad():
        cell.fc_gate_x.weight.copy_(weight_ih)
        cell.fc_gate_h.weight.copy_(weight_hh)
        if bias_ih is not None and bias_hh is not None:
            cell.fc_gate_x.bias.copy_(bias_ih)
            cell.fc_gate_h.bias.copy_(bias_hh)


class DistillerLSTM(nn.Module):
    """Multi-layer, optionally bidirectional LSTM with the interface of ``torch.nn.LSTM``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as in ``torch.nn.LSTM``
            (``proj_size`` and packed sequences are not supported).
        dropout: dropout probability on the outputs of every layer but the last (in training). Distiller's
            default, 0.5, is kept (``torch.nn.LSTM``'s is 0); :meth:`from_pytorch_impl` copies the LSTM's.
        bidirectional_type: how a bidirectional LSTM stacks its layers (the two types of PyTorch issue 4930):
            2 (``torch.nn.LSTM``'s): every layer reads both directions' outputs of the layer below; 1: each
            direction is a stack of its own, and the stacks' top outputs are concatenated.
    Raises:
        ArgumentError: ``num_layers < 1`` or ``bidirectional_type`` not 1 or 2.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.5, bidirectional: bool = False,
                 bidirectional_type: int = 2) -> None:
        super().__init__()
        if num_layers < 1:
            raise ArgumentError(f"DistillerLSTM: num_layers must be >= 1, got {num_layers}", argument="num_layers")
        if bidirectional_type not in (1, 2):
            raise ArgumentError(f"DistillerLSTM: bidirectional_type must be 1 or 2, got {bidirectional_type!r}",
                                argument="bidirectional_type")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.bidirectional = bias, batch_first, bidirectional
        self.bidirectional_type = bidirectional_type
        self.dropout = dropout
        upper_input = hidden_size * 2 if bidirectional and bidirectional_type == 2 else hidden_size
        self.cells = nn.ModuleList(
            DistillerLSTMCell(input_size if layer == 0 else upper_input, hidden_size, bias)
            for layer in range(num_layers))
        self.cells_reverse = nn.ModuleList(
            DistillerLSTMCell(input_size if layer == 0 else upper_input, hidden_size, bias)
            for layer in range(num_layers)) if bidirectional else None
        self.concat_directions = Concat(dim=2) if bidirectional else None
        self.dropout_layer = nn.Dropout(dropout)

    @property
    def _directions(self) -> int:
        return 2 if self.bidirectional else 1

    def init_hidden(self, batch_size: int) -> _State:
        """Zero ``(h_0, c_0)``, each ``[num_layers * directions, batch_size, hidden_size]``, with the dtype and
        device of the LSTM's weights."""
        weight = next(self.parameters())
        zeros = weight.new_zeros(self.num_layers * self._directions, batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, h: Optional[_State] = None) -> tuple[torch.Tensor, _State]:
        """Returns ``(output, (h_n, c_n))`` with the shapes of ``torch.nn.LSTM`` (``h_n[2 * layer + d]`` is
        direction ``d`` of ``layer``)."""
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise TypeError("DistillerLSTM does not accept PackedSequence inputs; pad the batch instead")
        if self.batch_first:
            x = x.transpose(0, 1)
        if h is None:
            zeros = x.new_zeros(self.num_layers * self._directions, x.size(1), self.hidden_size)
            h = (zeros, zeros.clone())
        if self.bidirectional and self.bidirectional_type == 1:
            output, states = self._forward_separate_stacks(x, h)
        else:
            output, states = self._forward_layer_by_layer(x, h)
        output = output.transpose(0, 1) if self.batch_first else output
        return output, (torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states]))

    def _between_layers(self, out: torch.Tensor, layer: int) -> torch.Tensor:
        return self.dropout_layer(out) if layer < self.num_layers - 1 else out

    def _forward_layer_by_layer(self, x: torch.Tensor, h: _State) -> tuple[torch.Tensor, list[_State]]:
        """Type 2 (and unidirectional): each layer runs over the whole sequence in both directions."""
        states = []
        for layer in range(self.num_layers):
            index = layer * self._directions
            out, state = self._run_direction(self.cells[layer], x, h[0][index], h[1][index], reverse=False)
            states.append(state)
            if self.cells_reverse is not None and self.concat_directions is not None:
                out_r, state_r = self._run_direction(self.cells_reverse[layer], x, h[0][index + 1],
                                                     h[1][index + 1], reverse=True)
                states.append(state_r)
                out = self.concat_directions(out, out_r)
            x = self._between_layers(out, layer)
        return x, states

    def _forward_separate_stacks(self, x: torch.Tensor, h: _State) -> tuple[torch.Tensor, list[_State]]:
        """Type 1: the forward stack reads the sequence forwards, the reverse stack backwards, each its own
        layers' outputs; their top outputs are concatenated."""
        cells_reverse = typing.cast(nn.ModuleList, self.cells_reverse)
        states, forward, backward = [], x, x
        for layer in range(self.num_layers):
            forward, state = self._run_direction(self.cells[layer], forward, h[0][2 * layer], h[1][2 * layer],
                                                 reverse=False)
            backward, state_r = self._run_direction(cells_reverse[layer], backward, h[0][2 * layer + 1],
                                                    h[1][2 * layer + 1], reverse=True)
            states += [state, state_r]
            forward, backward = self._between_layers(forward, layer), self._between_layers(backward, layer)
        return typing.cast(Concat, self.concat_directions)(forward, backward), states

    @staticmethod
    def _run_direction(cell: nn.Module, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                       reverse: bool) -> tuple[torch.Tensor, _State]:
        steps = range(x.size(0) - 1, -1, -1) if reverse else range(x.size(0))
        outputs = []
        for t in steps:
            h, c = cell(x[t], (h, c))
            outputs.append(h)
        if reverse:
            outputs.reverse()
        return torch.stack(outputs), (h, c)

    @classmethod
    def from_pytorch_impl(cls, lstm: nn.LSTM) -> DistillerLSTM:
        """Builds a DistillerLSTM with the weights of a ``torch.nn.LSTM``."""
        if isinstance(lstm, nn.LSTM) and lstm.proj_size:
            raise ArgumentError("DistillerLSTM does not support nn.LSTM with proj_size > 0", argument="lstm")
        new = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bias, lstm.batch_first,
                  lstm.dropout, lstm.bidirectional)
        for layer in range(lstm.num_layers):
            for suffix, cells in (("", new.cells), ("_reverse", new.cells_reverse)):
                if cells is None:
                    continue
                at = f"_l{layer}{suffix}"  # nn.LSTM has no bias attributes when built with bias=False
                _copy_gate_weights(typing.cast(DistillerLSTMCell, cells[layer]), getattr(lstm, "weight_ih" + at),
                                   getattr(lstm, "weight_hh" + at), getattr(lstm, "bias_ih" + at, None),
                                   getattr(lstm, "bias_hh" + at, None))
        return new.to(next(lstm.parameters()).device)

    def to_pytorch_impl(self) -> nn.LSTM:
        """Returns an equivalent ``torch.nn.LSTM``.

        Raises:
            ArgumentError: for ``bidirectional_type=1``, which ``torch.nn.LSTM`` cannot compute.
        """
        if self.bidirectional and self.bidirectional_type == 1:
            raise ArgumentError("a bidirectional DistillerLSTM of bidirectional_type=1 (separate direction stacks) has "
                                "no torch.nn.LSTM equivalent (torch.nn.LSTM is type 2)", argument="bidirectional_type")
        lstm = nn.LSTM(self.input_size, self.hidden_size, self.num_layers, self.bias, self.batch_first,
                       self.dropout, self.bidirectional).to(next(self.parameters()).device)
        with torch.no_grad():
            for layer in range(self.num_layers):
                for suffix, cells in (("", self.cells), ("_reverse", self.cells_reverse)):
                    if cells is None:
                        continue
                    cell = typing.cast(DistillerLSTMCell, cells[layer])
                    getattr(lstm, f"weight_ih_l{layer}{suffix}").copy_(cell.fc_gate_x.weight)
                    getattr(lstm, f"weight_hh_l{layer}{suffix}").copy_(cell.fc_gate_h.weight)
                    if self.bias:
                        getattr(lstm, f"bias_ih_l{layer}{suffix}").copy_(cell.fc_gate_x.bias)
                        getattr(lstm, f"bias_hh_l{layer}{suffix}").copy_(cell.fc_gate_h.bias)
        return lstm


def convert_model_to_distiller_lstm(model: nn.Module) -> nn.Module:
    """Replaces every ``nn.LSTM``/``nn.LSTMCell`` in ``model`` by its Distiller equivalent, in place.

    Returns:
        The model (a new object only when ``model`` itself is an LSTM).
    """
    if isinstance(model, nn.LSTM):
        return DistillerLSTM.from_pytorch_impl(model)
    if isinstance(model, nn.LSTMCell):
        return DistillerLSTMCell.from_pytorch_impl(model)
    for name, child in model.named_children():
        setattr(model, name, convert_model_to_distiller_lstm(child))
    return model
