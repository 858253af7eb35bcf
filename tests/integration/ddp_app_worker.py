"""One process of the classifier engine's distributed test (test_ddp_app.py), importable by name."""
import torch

from distiller.apputils import data_loaders
from distiller.apputils.image_classifier import ClassifierCompressor, init_classifier_compression_arg_parser


def train(rank: int, world_size: int, argv: list, out_path: str) -> None:
    """Trains as ``compress_classifier.py argv`` would, without the digits' random shifts (each process draws
    its own augmentation, which would make the runs differ for a reason unrelated to what is tested), and saves
    the final masks and weights to ``out_path`` (formatted with the rank)."""
    data_loaders.DIGITS_MAX_SHIFT = 0  # a 32x32 crop of an unpadded 32x32 image draws no random number
    args = init_classifier_compression_arg_parser().parse_args(argv)
    with ClassifierCompressor(args) as app:
        app.run_training_loop()
        masks = {name: None if masker.mask is None else masker.mask.bool()
                 for name, masker in app.compression_scheduler.zeros_mask_dict.items()}
        torch.save({"masks": masks, "state": app.model.state_dict(), "logdir": app.logdir,
                    "train_batches": len(app.train_loader)}, out_path.format(rank=rank))


def evaluate(rank: int, world_size: int, argv: list, out_path: str) -> None:
    """Runs ``compress_classifier.py argv`` with ``--evaluate``: the test (with the ``--activation-stats``
    collectors), then with ``--quantize-eval`` post-training quantization; saves the test scores, the
    quantization results and the (quantized) model's state (its weights and the quantizer's activation ranges)
    to ``out_path`` (formatted with the rank)."""
    args = init_classifier_compression_arg_parser(include_ptq_lapq_args=True).parse_args(argv)
    with ClassifierCompressor(args) as app:
        scores = app.test()
        results = app.quantize_and_evaluate() if args.quantize_eval else {}
        torch.save({"test": scores, "quantized": results.get("quantized"), "state": app.model.state_dict(),
                    "deployed": {key: results[key] for key in ("pytorch_int8", "onnxruntime", "parity")
                                 if key in results},
                    "logdir": app.logdir}, out_path.format(rank=rank))
