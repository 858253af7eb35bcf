"""examples/ncf: MovieLens and generated data, leave-one-out, the ranking metrics, NeuMF and its PTQ."""
import numpy as np
import pytest
import torch

from distiller.data_loggers import collect_quant_stats
from distiller.errors import InputFileError
from distiller.quantization import PostTrainLinearQuantizer
from distiller.quantization.range_linear.param_wrappers import RangeLinearEmbeddingWrapper

from .conftest import load_example


@pytest.fixture(scope="module")
def ncf_data():
    return load_example("ncf", "ncf_data")


@pytest.fixture(scope="module")
def ncf_model():
    return load_example("ncf", "ncf_model")


def test_read_movielens_ratings_remaps_ids(tmp_path, ncf_data):
    (tmp_path / "ratings.dat").write_text("10::5::3::100\n10::7::4::90\n\n3::5::1::50\n")
    data = ncf_data.read_movielens_ratings(str(tmp_path))
    assert (data.num_users, data.num_items) == (2, 2)
    assert data.users.tolist() == [1, 1, 0] and data.items.tolist() == [0, 1, 0]
    assert data.timestamps.tolist() == [100, 90, 50]


def test_read_movielens_ratings_bad_input(tmp_path, ncf_data):
    with pytest.raises(InputFileError, match="has no ratings.dat: pass the directory of MovieLens-1M"):
        ncf_data.read_movielens_ratings(str(tmp_path))
    (tmp_path / "ratings.dat").write_text("1::2::3::4\n1,2,3,4\n")
    with pytest.raises(InputFileError, match=r"ratings.dat:2: expected UserID::MovieID::Rating::Timestamp"):
        ncf_data.read_movielens_ratings(str(tmp_path))


def test_leave_one_out_holds_out_the_latest_item_and_samples_unseen_negatives(ncf_data):
    data = ncf_data.generate_interactions(num_users=20, num_items=150, per_user=6, seed=3)
    split = ncf_data.leave_one_out(data, seed=0)
    assert len(split.train_users) == 20 * 5
    for user in range(20):
        mine = data.timestamps[data.users == user]
        latest = data.items[data.users == user][mine.argmax()]
        assert split.test_items[user] == latest
        assert latest not in split.train_items[split.train_users == user]
        assert not set(split.test_negatives[user].tolist()) & split.seen[user]
        assert len(set(split.test_negatives[user].tolist())) == ncf_data.TEST_NEGATIVES
    again = ncf_data.leave_one_out(ncf_data.generate_interactions(20, 150, 6, seed=3), seed=0)
    assert np.array_equal(again.test_negatives, split.test_negatives)


def test_training_instances_negatives_are_unseen(ncf_data):
    split = ncf_data.leave_one_out(ncf_data.generate_interactions(10, 120, 8, seed=0), seed=0)
    users, items, labels = ncf_data.training_instances(split, 4, np.random.default_rng(0))
    assert users.numel() == 5 * len(split.train_users) and labels.sum() == len(split.train_users)
    for user, item, label in zip(users.tolist(), items.tolist(), labels.tolist()):
        assert (item in split.seen[user]) == (label == 1.0)


def test_leave_one_out_refuses_users_with_one_interaction(ncf_data):
    data = ncf_data.Interactions(np.array([0, 0, 1]), np.array([0, 1, 2]), np.array([1, 2, 3]), 2, 200)
    with pytest.raises(InputFileError, match="user 1 has 1 interaction"):
        ncf_data.leave_one_out(data, seed=0)


def test_ranking_metrics_count_ties_against_the_held_out_item(ncf_app):
    scores = torch.zeros(3, 100)
    scores[0, 0] = 1.0               # ranked first
    scores[1, 0], scores[1, 1:6] = 0.5, 1.0   # rank 5
    scores[2, 0] = 0.0               # ties with all 99: last
    result = ncf_app.ranking_metrics(scores)
    assert result["hr"] == pytest.approx(2 / 3)
    assert result["ndcg"] == pytest.approx((1.0 + np.log(2) / np.log(7)) / 3)


def test_neumf_forward_and_ptq_close(ncf_model):
    torch.manual_seed(0)
    model = ncf_model.NeuMF(7, 9, factors=4, mlp_layers=[8, 4]).eval()
    for table in (model.gmf_user, model.gmf_item, model.mlp_user, model.mlp_item):
        torch.nn.init.normal_(table.weight, std=0.5)
    users, items = torch.randint(0, 7, (40,)), torch.randint(0, 9, (40,))
    expected = model(users, items).detach()
    assert expected.shape == (40,)
    stats = collect_quant_stats(model, lambda m: m(users, items))
    PostTrainLinearQuantizer(model, model_activation_stats=stats, mode="asym_u").prepare_model((users, items))
    assert isinstance(model.gmf_user, RangeLinearEmbeddingWrapper)
    output = model(users, items)
    assert not torch.equal(output, expected)
    torch.testing.assert_close(output, expected, atol=0.05 * float(expected.abs().max()), rtol=0.0)


def test_split_final_computes_the_concatenated_final_layer(ncf_model):
    torch.manual_seed(0)
    joint = ncf_model.NeuMF(5, 6, factors=4, mlp_layers=[8, 4], split_final=False)
    split = ncf_model.NeuMF(5, 6, factors=4, mlp_layers=[8, 4])
    state = joint.state_dict()
    weight, bias = state.pop("predict.weight"), state.pop("predict.bias")
    split.load_state_dict({**state, "predict_gmf.weight": weight[:, :4], "predict_gmf.bias": bias,
                           "predict_mlp.weight": weight[:, 4:]})
    users, items = torch.randint(0, 5, (10,)), torch.randint(0, 6, (10,))
    torch.testing.assert_close(split(users, items), joint(users, items))
