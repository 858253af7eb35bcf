"""Installs the ``distiller`` neural-network compression library."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
ONNX_EXTRA = ["onnxruntime>=1.16", "onnxscript>=0.7"]
version_ns = {}
exec((HERE / "distiller" / "_version.py").read_text(), version_ns)

setup(
    name="distiller",
    version=version_ns["__version__"],
    description="Neural-network compression research library for PyTorch: pruning, regularization, "
                "quantization and thinning driven by YAML schedules",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["distiller", "distiller.*"]),
    package_data={"distiller": ["py.typed"]},  # PEP 561: the package ships its own type annotations
    install_requires=[line.strip() for line in (HERE / "requirements.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")],
    extras_require={
        # ONNX export (PyTorch's exporter needs onnxscript) and running exported models
        "onnx": ONNX_EXTRA,
        # compile_int8's fast path: torchao's x86 inductor int8 fusion passes (without it: explicit, slower kernels)
        "int8": ["torchao>=0.18"],
        # Hugging Face BERT-style models in distiller.transformers.huggingface (head/FFN pruning, thinning)
        "hf": ["transformers>=4.40"],
        # benchmarks/bench_quantization.py's anchor: torchao's PT2E X86InductorQuantizer (skipped without it)
        "bench": ["torchao>=0.18", *ONNX_EXTRA],
        # examples/GNMT's BLEU (without it, BLEU is skipped with a note)
        "bleu": ["sacrebleu>=2"],
        "dev": ["pytest>=7", "pytest-xdist>=3", "nbclient>=0.8", "ipykernel>=6", "mkdocs>=1.5",
                "torch-pruning>=1.3", "mypy>=1.10", "ruff>=0.5", *ONNX_EXTRA],
    },
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
