from setuptools import find_packages, setup

setup(
    name="fairseq-b2b",
    version="0.1.0",
    description="bert2BERT (Chen et al., ACL 2022): grow a trained small BERT/GPT into a large one in fairseq",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["fairseq_b2b", "fairseq_b2b.*"]),
    # Compatible ranges; the versions we test are pinned in constraints.txt.  Users bring
    # their own (CUDA) torch build.
    install_requires=[
        "torch>=2.1",
        "numpy<2",
        "fairseq-fixed>=0.12.3",
        "sacremoses>=0.0.53",
        "fastbpe>=0.1.0",
    ],
    extras_require={
        "hf": ["transformers>=4.30", "safetensors>=0.4"],
        # GGUF files (b2b-import-hf FILE.gguf --family llama): llama.cpp's reader; brings pyyaml, tqdm
        "gguf": ["gguf>=0.17.1", "transformers>=4.30", "safetensors>=0.4"],
        "report": ["matplotlib>=3.5"],
        "test": ["pytest>=7", "hypothesis>=6", "matplotlib>=3.5"],
    },
    entry_points={
        "console_scripts": [
            "b2b-grow = fairseq_b2b.cli.grow:main",
            "b2b-train = fairseq_b2b.cli.train:main",
            "b2b-user-dir = fairseq_b2b.cli.train:print_user_dir",
            "b2b-report = fairseq_b2b.cli.report:main",
            "b2b-preprocess = fairseq_b2b.cli.preprocess:main",
            "b2b-experiment = fairseq_b2b.cli.experiment:main",
            "b2b-eval-lm = fairseq_b2b.eval.lm:main",
            "b2b-glue = fairseq_b2b.eval.glue:main",
            "b2b-squad = fairseq_b2b.cli.squad:main",
            "b2b-import-hf = fairseq_b2b.hf.import_hf:main",
            "b2b-export-hf = fairseq_b2b.hf.export_hf:main",
        ],
    },
)
