"""The relation's similarities: how each auxiliary task is scored against the K target shots.

One class per similarity, registered in :data:`SIMILARITIES` by its ``name`` (the value of
``relation.similarity``). Each declares what it ``needs`` from the camera-free ``bank`` stage
(``drn``: the Distortion Relation Network and its prototypes; ``experts``: one model per task
family), and the ``relation.*`` keys it reads, so a profile builds and reads only what its
similarity uses (the ``reproduction`` relation trains no network at all). :meth:`Similarity.score`
turns one (K, seed) cell (:class:`drtl.stages.relation.Cell`, which measures what a similarity
asks for) into per-task logits and a temperature: weights = ``softmax(logits / tau)`` over the tasks.

- ``drn``: the paper's relation, cosine of the shots' DRN embedding to each task prototype / ``tau``;
- ``reproduction``: how well each task reproduces the shots' LR from their HR (PSNR, dB) / ``tau_db``;
- ``joint``: both, ``psnr / tau_db + cos / tau``;
- ``expert``: how well each family's expert restores the shots (PSNR-Y, dB) / ``tau_db``, shared
  evenly by the family's tasks (:mod:`drtl.stages.expert`);
- ``uniform``: every task the same weight (with ``relation.fitted``: the fitted task in the bank at 1/(N+1));
- ``fitted``: all weight on the camera-fitted task (the relation-free row ``fitted_only``).

A new similarity is one class here. This module is a leaf (no drtl imports, numpy on first use), so
the params schema (:mod:`drtl.config`) and the stage registry (:mod:`drtl.stages`) read it cheaply.
"""

from __future__ import annotations

from typing import NamedTuple

# the relation.* keys of each part of the bank (what the bank stage reads to build it)
DRN_KEYS = ("relation.drn", "relation.steps", "relation.batch_per_task", "relation.lr_patch", "relation.lr",
            "relation.temperature", "relation.eval_per_task")
EXPERT_KEYS = ("relation.expert", "arch")


class Scored(NamedTuple):
    """A cell's relation: ``logits`` per task (``names`` order, the fitted task last when present),
    weights = softmax(logits / tau); ``shown``: each task's similarity in the ranking table."""

    logits: object
    tau: float
    shown: object


class Similarity:
    name = ""
    needs: frozenset = frozenset()   # parts of the bank it reads: "drn", "experts"
    reads: tuple = ()                # relation.* keys its score reads (beyond those every cell reads)
    label = ""

    def score(self, cell) -> Scored:
        raise NotImplementedError


class DRN(Similarity):
    name, needs, reads = "drn", frozenset({"drn"}), ("relation.tau", "relation.patches_per_image")
    label = "cosine of the DRN embeddings / tau (the paper's relation)"

    def score(self, cell) -> Scored:
        return Scored(cell.cosines(), float(cell.rp["tau"]), cell.cosines())


class Reproduction(Similarity):
    name, reads = "reproduction", ("relation.tau_db",)
    label = "PSNR of each task reproducing the shots' LR from their HR / tau_db"

    def score(self, cell) -> Scored:
        return Scored(cell.reproduction(), float(cell.rp["tau_db"]), cell.reproduction())


class Joint(Similarity):
    name, needs = "joint", frozenset({"drn"})
    reads = ("relation.tau", "relation.tau_db", "relation.patches_per_image")
    label = "reproduction PSNR / tau_db + DRN cosine / tau"

    def score(self, cell) -> Scored:
        logits = cell.reproduction() / float(cell.rp["tau_db"]) + cell.cosines() / float(cell.rp["tau"])
        return Scored(logits, 1.0, logits)


class Expert(Similarity):
    name, needs = "expert", frozenset({"experts"})
    reads = ("relation.tau_db", "relation.expert", "relation.seed", "arch")  # + the fitted task's expert
    label = "PSNR-Y of each family's expert on the shots / tau_db, shared by the family's tasks"

    def score(self, cell) -> Scored:
        import numpy as np

        fam_psnr = cell.expert_psnr()
        return Scored(cell.family_logits(fam_psnr, float(cell.rp["tau_db"])), 1.0,
                      np.array([fam_psnr[f] for f in cell.fams]))


class Uniform(Similarity):
    name = "uniform"
    label = "every task the same weight"

    def score(self, cell) -> Scored:
        import numpy as np

        zeros = np.zeros(len(cell.names))
        return Scored(zeros, 1.0, zeros)


class FittedOnly(Similarity):
    name = "fitted"
    label = "all weight on the camera-fitted task"

    def score(self, cell) -> Scored:
        import numpy as np

        fitted = cell.fitted_mask()
        return Scored(np.where(fitted, 0.0, -1e9), 1.0, fitted.astype(float))  # exp(-1e9) is exactly 0


SIMILARITIES: dict[str, Similarity] = {s.name: s for s in (DRN(), Reproduction(), Joint(), Expert(), Uniform(),
                                                             FittedOnly())}
SIMILARITY_NAMES: tuple[str, ...] = tuple(SIMILARITIES)
PROFILE_SIMILARITIES: tuple[str, ...] = ("drn", "reproduction", "joint", "expert")  # relation.similarity's choices


def get_similarity(name: str) -> Similarity:
    try:
        return SIMILARITIES[name]
    except KeyError:
        raise ValueError(f"unknown similarity {name!r}; known: {', '.join(SIMILARITIES)}") from None


def bank_parts(needs) -> str:
    """The ``--parts`` of a bank run: 'drn', 'experts', 'drn+experts' (sorted, joined by '+')."""
    return "+".join(sorted(needs))


def bank_unread() -> dict[str, tuple[str, ...]]:
    """Per ``--parts`` value, the bank params that part set does not read (drtl.stages.Stage.unread)."""
    out = {}
    for parts in ("drn", "experts", "drn+experts"):
        have = set(parts.split("+"))
        out[parts] = (() if "drn" in have else DRN_KEYS) + (() if "experts" in have else EXPERT_KEYS)
    return out
