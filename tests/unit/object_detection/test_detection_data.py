"""The shapes dataset, the COCO loader's errors and one training step of the example's detector."""
import json

import pytest
import torch

from compress_detector import build_detector, train
from distiller.errors import InputFileError, MissingDependencyError
from shapes_data import ShapesDataset, coco_dataset, collate


def test_shapes_are_seeded_and_boxed_tightly():
    data = ShapesDataset(4, size=48, seed=3)
    image, target = data[2]
    again, same = ShapesDataset(4, size=48, seed=3)[2]
    assert torch.equal(image, again) and torch.equal(target["boxes"], same["boxes"])
    assert not torch.equal(image, ShapesDataset(4, size=48, seed=4)[2][0])
    assert image.shape == (3, 48, 48) and 0 <= image.min() and image.max() <= 1
    assert set(target["labels"].tolist()) <= {1, 2} and len(target["labels"]) >= 1
    for box, mask in zip(target["boxes"], target["masks"]):
        ys, xs = mask.nonzero(as_tuple=True)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    with pytest.raises(IndexError):
        data[4]


def test_coco_directory_errors(tmp_path):
    with pytest.raises(InputFileError, match="annotations.json"):
        coco_dataset(str(tmp_path))
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    try:
        import pycocotools  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="pip install pycocotools"):
            coco_dataset(str(tmp_path))
    else:
        assert len(coco_dataset(str(tmp_path))) == 0


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fasterrcnn_resnet18_fpn", "maskrcnn_resnet18_fpn"])
def test_one_training_step_and_eval_output(arch, capsys):
    torch.manual_seed(0)
    model = build_detector(arch, 3, 32)
    batch = [collate([ShapesDataset(2, size=32)[i] for i in range(2)])]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    train(model, batch, optimizer, epochs=1)
    assert "epoch 0: loss" in capsys.readouterr().out
    with torch.no_grad():
        output = model.eval()(batch[0][0])
    assert len(output) == 2 and {"boxes", "scores", "labels"} <= set(output[0])
    assert ("masks" in output[0]) == arch.startswith("maskrcnn")
