"""Automated Model Compression (He et al., "AMC: AutoML for Model Compression and Acceleration on Mobile
Devices", ECCV 2018): a DDPG agent learns how far to prune each channel group of a model.

* :class:`AMCEnvironment`: an episode walks the model's prunable dependency groups; actions are clipped to
  the remaining budget (MACs, or latency with :class:`LatencyModel`); the network is thinned and evaluated.
* :class:`DDPGAgent`: actor/critic, replay buffer, truncated-normal exploration noise.
* :func:`amc_search`: warm-up and training episodes, with a CSV row per episode.
* reward functions: :func:`amc_mac_constrained_reward_fn`, :func:`amc_accuracy_guarantee_reward_fn`,
  :func:`harmonic_mean_reward_fn`.
"""
from .ddpg import DDPGAgent, DDPGConfig, ReplayBuffer, Transition
from .environment import STATE_FEATURES, AMCEnvironment, EpisodeResult, PruningStep
from .latency import LatencyModel, build_latency_table, load_or_build_latency_table, measure_latency
from .rewards import REWARDS, amc_accuracy_guarantee_reward_fn, amc_mac_constrained_reward_fn, harmonic_mean_reward_fn
from .search import CSV_NAME, PLOT_NAME, EpisodeRecord, amc_search, plot_episodes

__all__ = ["AMCEnvironment", "EpisodeResult", "PruningStep", "STATE_FEATURES", "DDPGAgent", "DDPGConfig",
           "ReplayBuffer", "Transition", "REWARDS", "amc_mac_constrained_reward_fn",
           "amc_accuracy_guarantee_reward_fn", "harmonic_mean_reward_fn", "amc_search", "EpisodeRecord",
           "plot_episodes", "CSV_NAME", "PLOT_NAME", "LatencyModel", "build_latency_table",
           "load_or_build_latency_table", "measure_latency"]
