"""AMC's reward functions."""
import math
from types import SimpleNamespace

import pytest

from distiller.amc import (REWARDS, amc_accuracy_guarantee_reward_fn, amc_mac_constrained_reward_fn,
                           harmonic_mean_reward_fn)

ENV = SimpleNamespace(dense_macs=1000.0)


def test_the_mac_constrained_reward_is_the_accuracy():
    assert amc_mac_constrained_reward_fn(ENV, 91.0, 99.0, 0.3, 500.0) == pytest.approx(0.91)
    assert amc_mac_constrained_reward_fn(ENV, 91.0, 99.0, 0.3, 100.0) == pytest.approx(0.91)


def test_the_accuracy_guaranteed_reward_is_minus_error_times_log_macs():
    assert amc_accuracy_guarantee_reward_fn(ENV, 90.0, 99.0, 0.3, 500.0) == pytest.approx(-0.1 * math.log(500))
    fewer_macs = amc_accuracy_guarantee_reward_fn(ENV, 90.0, 99.0, 0.3, 400.0)
    more_accurate = amc_accuracy_guarantee_reward_fn(ENV, 95.0, 99.0, 0.3, 500.0)
    assert fewer_macs > amc_accuracy_guarantee_reward_fn(ENV, 90.0, 99.0, 0.3, 500.0) < more_accurate


def test_the_harmonic_mean_reward_is_the_f_score_of_accuracy_and_macs_removed():
    assert harmonic_mean_reward_fn(ENV, 80.0, 99.0, 0.3, 500.0) == pytest.approx(2 * 0.8 * 0.5 / 1.3)
    assert harmonic_mean_reward_fn(ENV, 80.0, 99.0, 0.3, 1000.0) == 0.0
    assert harmonic_mean_reward_fn(ENV, 0.0, 99.0, 0.3, 500.0) == 0.0
    compression_first = harmonic_mean_reward_fn(ENV, 80.0, 99.0, 0.3, 500.0, beta=2.0)
    assert compression_first == pytest.approx(5 * 0.8 * 0.5 / (4 * 0.8 + 0.5))


def test_every_protocol_has_a_reward():
    assert set(REWARDS) == {"mac-constrained", "latency-constrained", "accuracy-guaranteed", "harmonic-mean"}
