"""The container image every drtl component runs in (defined once).

Built from ``docker/Dockerfile`` (Python 3.11, CUDA PyTorch 2.13.0, the ``drtl`` package and, through
its pinned dependencies, ``kfp==2.17.3``)::

    docker build -f docker/Dockerfile -t ghcr.io/drtl/drtl:0.1.0-cuda .
    docker push ghcr.io/drtl/drtl:0.1.0-cuda

The CUDA image also runs on CPU nodes, so CPU-only tasks use it too (one image to pull per node).
To use another registry, change this constant and recompile; pin a digest
(``...@sha256:<digest>``) for fully reproducible runs.
"""

DRTL_IMAGE = "ghcr.io/drtl/drtl:0.1.0-cuda"
