"""Linear quantization primitives against hand-computed values and independent computations."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from distiller.errors import ArgumentError
from distiller.quantization import q_utils
from distiller.quantization.q_utils import ClipMode, LinearQuantMode
from distiller.spec import check_value


def test_symmetric_params_hand_computed():
    assert q_utils.symmetric_linear_quantization_params(8, 2.0) == (127.5 / 2.0, 0.0)
    assert q_utils.symmetric_linear_quantization_params(8, 2.0, restrict_qrange=True) == (127 / 2.0, 0.0)
    assert q_utils.symmetric_linear_quantization_params(4, 0.0) == (1.0, 0.0)  # degenerate range: scale 1
    scale, zero_point = q_utils.symmetric_linear_quantization_params(8, torch.tensor([1.0, 4.0]))
    assert torch.allclose(scale, torch.tensor([127.5, 127.5 / 4])) and torch.equal(zero_point, torch.zeros(2))


def test_asymmetric_params_hand_computed():
    scale, zero_point = q_utils.asymmetric_linear_quantization_params(8, -1.0, 3.0)
    assert scale == 255 / 4 and zero_point == -64.0  # round(63.75 * -1)
    x = torch.tensor([-1.0, 0.0, 3.0])
    assert q_utils.linear_quantize(x, scale, zero_point).tolist() == [0.0, 64.0, 255.0]
    _, signed_zp = q_utils.asymmetric_linear_quantization_params(8, -1.0, 3.0, signed=True)
    assert signed_zp == 64.0  # -64 + 128: the same grid shifted to [-128, 127]
    # a range that excludes 0 is extended to include it
    assert q_utils.asymmetric_linear_quantization_params(8, 1.0, 3.0) == (85.0, 0.0)
    with pytest.raises(ValueError, match="saturation_min must be <="):
        q_utils.asymmetric_linear_quantization_params(8, 2.0, 1.0)


def test_quantized_ranges():
    assert q_utils.get_quantized_range(8) == (-128, 127)
    assert q_utils.get_quantized_range(8, signed_restrict_qrange=True) == (-127, 127)
    assert q_utils.get_quantized_range(4, signed=False) == (0, 15)
    assert q_utils.quantized_range_for_mode(8, "asym_u") == (0, 255)
    assert q_utils.quantized_range_for_mode(8, "sym_restr") == (-127, 127)


@pytest.mark.parametrize("mode", list(LinearQuantMode))
@pytest.mark.parametrize("num_bits", [2, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_round_trip_error_at_most_half_a_step(mode, num_bits, per_channel):
    x = torch.randn(6, 3, 5, 5, generator=torch.Generator().manual_seed(num_bits)) * 3 + 0.5
    scale, zero_point = q_utils.linear_quant_params_from_tensor(x, num_bits, mode, per_channel=per_channel)
    qmin, qmax = q_utils.quantized_range_for_mode(num_bits, mode)
    q = q_utils.linear_quantize_clamp(x, scale, zero_point, qmin, qmax)
    assert q.min() >= qmin and q.max() <= qmax and torch.equal(q, q.round())
    error = (q_utils.linear_dequantize(q, scale, zero_point) - x).abs()
    assert (error <= 0.5 / scale + 1e-5).all()
    if per_channel:
        assert scale.shape == (6, 1, 1, 1)
        row_scale, _ = q_utils.linear_quant_params_from_tensor(x[2], num_bits, mode)
        assert torch.allclose(scale[2].flatten(), row_scale.flatten())


def test_restricted_range_never_uses_most_negative_value():
    x = torch.tensor([-2.0, -1.0, 2.0])
    scale, zp = q_utils.linear_quant_params_from_tensor(x, 8, LinearQuantMode.SYMMETRIC_RESTRICTED)
    assert q_utils.linear_quantize(x, scale, zp).tolist() == [-127.0, -64.0, 127.0]
    scale, zp = q_utils.linear_quant_params_from_tensor(x, 8, LinearQuantMode.SYMMETRIC)
    assert q_utils.linear_quantize(x, scale, zp)[0] == -128.0


def test_inplace_variants_match():
    x = torch.randn(10)
    expected = q_utils.linear_dequantize(q_utils.linear_quantize(x, 10.0, 3.0), 10.0, 3.0)
    y = x.clone()
    q_utils.linear_dequantize(q_utils.linear_quantize(y, 10.0, 3.0, inplace=True), 10.0, 3.0, inplace=True)
    assert torch.allclose(y, expected)


def test_ste_gradient_is_identity_inside_range_and_zero_where_clamped():
    x = torch.tensor([-3.0, -0.3, 0.2, 0.7, 3.0], requires_grad=True)
    clamped = torch.clamp(x, -1.0, 1.0)
    out = q_utils.LinearQuantizeSTE.apply(clamped, 4.0, 0.0, True, False)
    assert out.tolist() == [-1.0, -0.25, 0.25, 0.75, 1.0]
    out.backward(torch.arange(1.0, 6.0))
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0]


def test_tensor_statistics():
    t = torch.tensor([[1.0, -2.0, 3.0], [0.0, 5.0, -1.0]])
    assert [v.item() for v in q_utils.get_tensor_min_max(t)] == [-2.0, 5.0]
    mins, maxs = q_utils.get_tensor_min_max(t, per_dim=0)
    assert mins.tolist() == [-2.0, -1.0] and maxs.tolist() == [3.0, 5.0]
    assert [v.item() for v in q_utils.get_tensor_avg_min_max(t, across_dim=0)] == [-1.5, 4.0]
    assert q_utils.get_tensor_max_abs(t, per_dim=0).tolist() == [3.0, 5.0]
    assert q_utils.get_tensor_avg_max_abs(t, across_dim=0).item() == 4.0
    lo, hi = q_utils.get_tensor_mean_n_stds_min_max(t, n_stds=1)
    mean, std = t.mean(), t.std(unbiased=False)
    assert math.isclose(lo.item(), (mean - std).item(), rel_tol=1e-6)
    assert math.isclose(hi.item(), (mean + std).item(), rel_tol=1e-6)
    lo, hi = q_utils.get_tensor_mean_n_stds_min_max(t, n_stds=100)  # never beyond the actual range
    assert (lo.item(), hi.item()) == (-2.0, 5.0)


# ------------------------------------------------------------------------------------------------ ACIQ
def _numeric_aciq_alpha(num_bits, density):
    """Minimises clipping MSE (numerically integrated tails) + uniform rounding noise over [-a, a]."""
    def mse(alpha):
        tail, _ = integrate.quad(lambda x: (x - alpha) ** 2 * density(x), alpha, np.inf)
        return 2 * tail + (2 * alpha / 2 ** num_bits) ** 2 / 12
    return optimize.minimize_scalar(mse, bounds=(0.1, 30), method="bounded", options={"xatol": 1e-7}).x


@pytest.mark.parametrize("num_bits", [2, 3, 4, 8])
def test_aciq_multipliers_match_numerical_minimum_and_paper(num_bits):
    laplace = lambda x: 0.5 * np.exp(-abs(x))  # noqa: E731  Laplace(0, b=1)
    gauss = lambda x: np.exp(-x * x / 2) / np.sqrt(2 * np.pi)  # noqa: E731
    alpha_l = q_utils.aciq_clip_multiplier(ClipMode.LAPLACE, num_bits)
    alpha_g = q_utils.aciq_clip_multiplier(ClipMode.GAUSS, num_bits)
    assert alpha_l == pytest.approx(_numeric_aciq_alpha(num_bits, laplace), abs=1e-3)
    assert alpha_g == pytest.approx(_numeric_aciq_alpha(num_bits, gauss), abs=1e-3)
    paper = {2: (2.83, 1.71), 3: (3.89, 2.15), 4: (5.03, 2.55)}  # Banner et al. 2019, section 4
    if num_bits in paper:
        assert alpha_l == pytest.approx(paper[num_bits][0], abs=0.01)
        assert alpha_g == pytest.approx(paper[num_bits][1], abs=0.01)


def test_aciq_min_max_scales_with_spread_and_stays_in_range():
    t = torch.distributions.Laplace(1.0, 2.0).sample((20000,))
    lo, hi = q_utils.get_tensor_aciq_min_max(t, "laplace", 4)
    b = (t - t.mean()).abs().mean()
    alpha = q_utils.aciq_clip_multiplier(ClipMode.LAPLACE, 4) * b
    assert torch.allclose(hi, torch.min(t.mean() + alpha, t.max())) and lo >= t.min()
    with pytest.raises(ValueError, match="analytical clipping"):
        q_utils.aciq_clip_multiplier(ClipMode.AVG, 4)


# ----------------------------------------------------------------------------------- scale approximation
def test_scale_approximation_by_multiplier_and_shift():
    multiplier, shift = q_utils.get_scale_approximation_params(0.0123, 16)
    assert multiplier < 2 ** 16 and multiplier >= 2 ** 15 and multiplier == int(multiplier)
    assert abs(multiplier / 2 ** shift - 0.0123) / 0.0123 < 2 ** -15
    scales = torch.tensor([0.0123, 3.3, 700.0])
    approx = q_utils.approx_scale_as_mult_and_shift(scales, 8)
    assert ((approx - scales).abs() / scales < 2 ** -7).all() and (approx <= scales).all()
    _, limited_shift = q_utils.get_scale_approximation_params(1e-6, 8, limit=True)
    assert limited_shift == 8


# --------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, mode", [("sym", LinearQuantMode.SYMMETRIC), ("SYMMETRIC", LinearQuantMode.SYMMETRIC),
                                        ("asym_u", LinearQuantMode.ASYMMETRIC_UNSIGNED),
                                        ("asymmetric_signed", LinearQuantMode.ASYMMETRIC_SIGNED),
                                        ("sym_restr", LinearQuantMode.SYMMETRIC_RESTRICTED)])
def test_mode_strings(text, mode):
    assert q_utils.parse_linear_quant_mode(text) is mode
    assert q_utils.verify_quant_mode(text) == (mode, mode)


def test_unknown_strings_list_valid_values():
    with pytest.raises(ValueError, match=r"unknown quantization mode 'symetric'.*asym_u.*SYMMETRIC_RESTRICTED"):
        q_utils.parse_linear_quant_mode("symetric")
    with pytest.raises(ValueError, match=r"unknown clip mode 'lapalce'.*LAPLACE"):
        q_utils.parse_clip_mode("lapalce")
    assert q_utils.parse_clip_mode("n_std") is ClipMode.N_STD
    mixed = q_utils.verify_quant_mode({"activations": "asym_u", "weights": "sym"})
    assert mixed == (LinearQuantMode.ASYMMETRIC_UNSIGNED, LinearQuantMode.SYMMETRIC)
    with pytest.raises(ValueError, match="'activations' and 'weights'"):
        q_utils.verify_quant_mode({"acts": "sym", "weights": "sym"})


@pytest.mark.parametrize("bits", [0, 33, -1, 2.5, "8", True, None])
def test_invalid_bit_widths_name_the_argument_expected_type_and_value(bits):
    for call, argument, expected in (
            (lambda: q_utils.asymmetric_linear_quantization_params(bits, 0.0, 1.0), "num_bits", "[1, 32]"),
            (lambda: q_utils.symmetric_linear_quantization_params(bits, 1.0), "num_bits", "[2, 32]"),
            (lambda: q_utils.get_scale_approximation_params(0.5, bits), "mult_bits", "[1, 32]")):
        with pytest.raises(ArgumentError) as caught:  # a ValueError, not the TypeError of 2 ** None
            call()
        assert caught.value.argument == argument
        assert f"argument '{argument}' expects an integer in {expected}, got {bits!r}" in str(caught.value)


def test_symmetric_ranges_need_a_sign_bit():
    with pytest.raises(ArgumentError, match=r"'num_bits' expects an integer in \[2, 32\], got 1"):
        q_utils.symmetric_linear_quantization_params(1, 1.0)
    assert q_utils.symmetric_linear_quantization_params(2, 1.0) == (1.5, 0.0)


@pytest.mark.parametrize("bad, fragment", [
    ("symetric", "valid values: asym_s, asym_u, sym, sym_restr, SYMMETRIC"), (3, "unknown quantization mode 3"),
    ({"activations": "sym"}, "exactly the keys 'activations' and 'weights'"),
    ({"activations": "sym", "weights": "bogus"}, "unknown quantization mode 'bogus'; valid values")])
def test_mode_arguments_name_the_value_and_the_valid_ones(bad, fragment):
    with pytest.raises(ArgumentError) as caught:
        check_value("X", "mode", q_utils.QuantModeArg, bad)
    assert caught.value.argument == "mode" and f"got {bad!r}" in str(caught.value) and fragment in str(caught.value)
    assert check_value("X", "mode", q_utils.QuantModeArg, {"activations": "asym_u", "weights": "SYMMETRIC"}) == \
        (LinearQuantMode.ASYMMETRIC_UNSIGNED, LinearQuantMode.SYMMETRIC)
