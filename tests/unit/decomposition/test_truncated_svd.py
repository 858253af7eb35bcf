"""Truncated SVD and rank selection by energy."""
import pytest
import torch

from distiller.decomposition import rank_for_energy, truncated_svd
from distiller.errors import ArgumentError


def test_full_rank_reconstructs_the_matrix_exactly():
    weight = torch.randn(12, 7, generator=torch.Generator().manual_seed(0))
    svd = truncated_svd(weight, 7)
    assert (svd.u.shape, svd.s.shape, svd.vh.shape) == ((12, 7), (7,), (7, 7))
    torch.testing.assert_close(svd.reconstruct(), weight, atol=1e-5, rtol=1e-5)


def test_error_decreases_with_rank_and_equals_the_dropped_singular_values():
    weight = torch.randn(20, 16, generator=torch.Generator().manual_seed(1))
    singular_values = torch.linalg.svdvals(weight)
    errors = [torch.linalg.matrix_norm(weight - truncated_svd(weight, r).reconstruct()).item() for r in range(1, 17)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    # Eckart-Young: the Frobenius error of the rank-r approximation is the norm of the dropped singular values
    for r, error in zip(range(1, 17), errors):
        assert error == pytest.approx(singular_values[r:].norm().item(), abs=1e-4)


def test_a_low_rank_matrix_is_recovered_exactly_at_its_rank():
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(10, 3, generator=generator) @ torch.randn(3, 8, generator=generator)
    torch.testing.assert_close(truncated_svd(weight, 3).reconstruct(), weight, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("energy, rank", [(0.5, 1), (0.64, 1), (0.89, 2), (0.9, 3), (0.98, 3), (0.99, 4), (1.0, 4)])
def test_energy_selects_the_smallest_rank_keeping_that_fraction(energy, rank):
    # squared singular values 64, 25, 9, 2 (total 100): cumulative fractions 0.64, 0.89, 0.98, 1.0
    weight = torch.diag(torch.tensor([8.0, 5.0, 3.0, 2 ** 0.5]))
    assert rank_for_energy(weight, energy) == rank


def test_energy_of_a_zero_matrix_needs_rank_one():
    assert rank_for_energy(torch.zeros(5, 3), 0.9) == 1


@pytest.mark.parametrize("rank", [0, -1, 6, 2.0, True])
def test_rank_out_of_range_is_refused(rank):
    with pytest.raises(ArgumentError, match=f"rank {rank!r} .*from 1 to 5"):
        truncated_svd(torch.randn(5, 8), rank)


@pytest.mark.parametrize("energy", [0, -0.1, 1.5, "0.9"])
def test_energy_outside_the_unit_interval_is_refused(energy):
    with pytest.raises(ArgumentError, match=f"energy {energy!r} is not a fraction in \\(0, 1\\]"):
        rank_for_energy(torch.randn(5, 8), energy)


def test_a_tensor_that_is_not_a_matrix_is_refused():
    with pytest.raises(ArgumentError, match=r"2-D .*\(4, 3, 3, 3\)"):
        truncated_svd(torch.randn(4, 3, 3, 3), 2)
