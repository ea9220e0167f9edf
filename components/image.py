"""The container image of every drtl task: a compile option, this is only its default.

Built from ``docker/Dockerfile`` (Python 3.11, CUDA PyTorch, the ``drtl`` package and, through its
pinned dependencies, ``kfp==2.17.3``)::

    docker build -f docker/Dockerfile -t ghcr.io/drtl/drtl:0.1.0-cuda .
    docker push ghcr.io/drtl/drtl:0.1.0-cuda

``drtl-kfp compile --image REGISTRY/drtl@sha256:<digest>`` (or ``build_pipeline(..., image=...)``)
compiles the pipeline for another image; pin a digest for fully reproducible runs. The CUDA image
also runs on CPU nodes, so CPU-only tasks use it too (one image to pull per node).
"""

DEFAULT_IMAGE = "ghcr.io/drtl/drtl:0.1.0-cuda"
DRTL_IMAGE = DEFAULT_IMAGE  # backwards-compatible name
