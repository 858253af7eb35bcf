"""Low-rank decomposition: truncated SVD of weight matrices and ``nn.Linear`` layers factorised by it.

References:
    J. Xue, J. Li, Y. Gong. *Restructuring of Deep Neural Network Acoustic Models with Singular Value
    Decomposition*. Interspeech 2013.
    E. Denton et al. *Exploiting Linear Structure Within Convolutional Networks for Efficient Evaluation*.
    NeurIPS 2014. https://arxiv.org/abs/1404.0736
"""
from .low_rank_linear import LowRankLinear
from .replace import low_rank_decompose
from .svd import TruncatedSVD, rank_for_energy, truncated_svd

__all__ = ["TruncatedSVD", "truncated_svd", "rank_for_energy", "LowRankLinear", "low_rank_decompose"]
