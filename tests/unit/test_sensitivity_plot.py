"""sensitivities_to_png: one curve per parameter of top-1 (and top-5) against sparsity, format by extension."""
import matplotlib.figure
import matplotlib.image
import pytest
import torch
from torch import nn

from distiller import perform_sensitivity_analysis, sensitivities_to_png
from distiller.errors import ArgumentError

SENSITIVITIES = {
    "conv1.weight": {0.0: (90.0, 99.0, 0.3), 0.5: (80.0, 97.0, 0.6), 0.25: (88.0, 98.0, 0.4)},
    "fc.weight": {0.0: (90.0, 99.0, 0.3), 0.25: (89.0, 99.0, 0.35), 0.5: (85.0, 98.5, 0.5)},
}


@pytest.fixture
def drawn_figures(monkeypatch):
    """The figures that sensitivities_to_png saves (they are saved as usual)."""
    figures = []
    original_savefig = matplotlib.figure.Figure.savefig

    def recording_savefig(self, *args, **kwargs):
        figures.append(self)
        return original_savefig(self, *args, **kwargs)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    return figures


def test_png_has_a_top1_and_a_top5_panel_of_the_expected_size(tmp_path):
    path = tmp_path / "sensitivity.png"
    sensitivities_to_png(SENSITIVITIES, str(path))
    # 640 x 480 pixels a panel, plus 25 pixels for the one legend row
    assert matplotlib.image.imread(path).shape == (505, 1280, 4)


def test_curves_are_sorted_by_sparsity_and_labelled(tmp_path, drawn_figures):
    sensitivities_to_png(SENSITIVITIES, tmp_path / "sensitivity.png")
    (figure,) = drawn_figures
    top1, top5 = figure.axes
    assert [line.get_label() for line in top1.lines] == ["conv1.weight", "fc.weight"]
    assert list(top1.lines[0].get_xdata()) == [0.0, 0.25, 0.5]
    assert list(top1.lines[0].get_ydata()) == [90.0, 88.0, 80.0]
    assert list(top5.lines[1].get_ydata()) == [99.0, 99.0, 98.5]
    assert (top1.get_xlabel(), top1.get_ylabel(), top5.get_ylabel()) == ("sparsity", "top1", "top5")
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["conv1.weight", "fc.weight"]
    assert figure.get_suptitle() == "Pruning sensitivity"


def test_other_results_plot_their_first_score_in_one_panel(tmp_path, drawn_figures):
    path = tmp_path / "sensitivity.png"
    sensitivities_to_png({f"layer{i}.weight": {0.0: (1.0, 5.0), 0.5: (0.5, 4.0)} for i in range(4)}, path)
    (axes,) = drawn_figures[0].axes
    assert axes.get_ylabel() == "score0" and list(axes.lines[3].get_ydata()) == [1.0, 0.5]
    assert matplotlib.image.imread(path).shape == (530, 640, 4)  # two legend rows


def test_the_format_follows_the_extension(tmp_path):
    sensitivities_to_png(SENSITIVITIES, tmp_path / "sensitivity.svg")
    assert "<svg" in (tmp_path / "sensitivity.svg").read_text()
    sensitivities_to_png(SENSITIVITIES, tmp_path / "sensitivity")
    assert (tmp_path / "sensitivity").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ArgumentError, match=r"'\.xyz' is not an image format matplotlib writes; use one of \[.*'png'"):
        sensitivities_to_png(SENSITIVITIES, tmp_path / "sensitivity.xyz")


@pytest.mark.parametrize("sensitivities, match", [
    ({}, "sensitivities must be a non-empty dict"),
    ([("conv1.weight", {0.0: (1.0,)})], "sensitivities must be a non-empty dict"),
    ({"conv1.weight": {}}, r"sensitivities\['conv1.weight'\] must be a non-empty dict"),
    ({"conv1.weight": {0.0: 90.0}}, r"sensitivities\['conv1.weight'\] must be a non-empty dict"),
    ({"conv1.weight": {0.0: ("high", 99.0, 0.1)}}, r"sensitivities\['conv1.weight'\] holds .* not a number"),
])
def test_bad_sensitivities_are_argument_errors(tmp_path, sensitivities, match):
    with pytest.raises(ArgumentError, match=match):
        sensitivities_to_png(sensitivities, tmp_path / "sensitivity.png")
    assert not (tmp_path / "sensitivity.png").exists()


def test_plots_what_perform_sensitivity_analysis_returns(tmp_path, drawn_figures):
    model = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Flatten(), nn.Linear(4, 3))

    def density_scores(model):  # (top1, top5, loss) stand-ins that fall as the weights are pruned
        density = sum(float((p != 0).float().mean()) for p in (model[0].weight, model[2].weight)) / 2
        return torch.tensor(100 * density), 100.0, 1 - density
    sensitivities = perform_sensitivity_analysis(model, ["0.weight", "2.weight"], [0.0, 0.5], density_scores,
                                                 "element")
    sensitivities_to_png(sensitivities, tmp_path / "sensitivity.png")
    assert [list(line.get_ydata()) for line in drawn_figures[0].axes[0].lines] == [[100.0, 75.0], [100.0, 75.0]]
