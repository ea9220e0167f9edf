"""Does the DRN place an *unseen* distortion next to its siblings? (docs/results.md, docs/history.md)

For each held-out task H: train the DRN on the bank without H (the relation stage's settings:
steps x lr_patch, 2 patches per task), report its held-out-image accuracy on the other tasks, then
embed K shots of a target made with H (``drtl data target H ...``) and print the weight the relation
graph gives to H's family and the top tasks. Both DRN inputs are compared at the same cost: the
LR-only encoder (``reference: false``) and the reference encoder (LR + HR downscaled);
``--family-loss L`` trains the reference encoder with an extra family-level prototype loss (``--task-loss 0``:
that loss alone) and also reports the weights over the family prototypes; ``--match`` builds the
reference DRN with ``reference_match`` (the default DRN of the relation stage).

    drtl synthesize --out /tmp/bank48
    drtl data target jpeg_q30 /tmp/t_jpeg_q30/pool --hr data/sample/pool --scale 2 --seed 0
    python experiments/drn_heldout.py --synth /tmp/bank48 --held jpeg_q30 --target /tmp/t_jpeg_q30/pool

Nothing here chooses a setting; it measures. Takes about 1 min per DRN on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from drtl.archs import build_arch
from drtl.data.folder import load_pairs
from drtl.data.patches import PairSampler
from drtl.optim import Adam
from drtl.relation import DRNConfig, MemoryBank, embed_images, relation_weights, similarities, train_drn
from drtl.relation.drn import _draw, _embed, sample_input
from drtl.stages.shots import shot_names
from drtl.stages.synthesize import load_synth


def heldout_accuracy(enc, bank, samplers, n: int = 32) -> float:
    gen, right, total = torch.Generator().manual_seed(1), 0, 0
    with torch.no_grad():
        for j, s in enumerate(samplers):
            pred = (_embed(enc, sample_input(enc, s, n, gen)) @ bank.normalized().t()).argmax(1)
            right, total = right + int((pred == j).sum()), total + n
    return right / total


def train_with_family_loss(enc, samplers, fams: list[str], steps: int, patch: int, lam: float, gen,
                           task_loss: float = 1.0):
    """The relation stage's prototype classification plus ``lam`` x the same loss over families
    (one prototype per family): a candidate for a space where a family's members sit together."""
    import torch.nn.functional as F

    fam_ids = sorted(set(fams))
    fy = torch.tensor([fam_ids.index(f) for f in fams])
    bank, fbank = MemoryBank(len(samplers), 64, gen=gen), MemoryBank(len(fam_ids), 64, gen=gen)
    opt = Adam(list(enc.parameters()) + list(bank.parameters()) + list(fbank.parameters()), lr=1e-3)
    enc.train()
    for _ in range(steps):
        x, y = _draw(enc, samplers, 2, patch, gen)
        e = _embed(enc, x)
        loss = task_loss * F.cross_entropy(bank.logits(e, 0.1), y) + lam * F.cross_entropy(fbank.logits(e, 0.1), fy[y])
        opt.zero_grad()
        loss.backward()
        opt.step()
    enc.eval()
    return bank, {"final_accuracy": float("nan"), "family_bank": fbank, "families": fam_ids}


def run(synth: str, held: str, target: str, reference: bool, steps: int, patch: int, tau: float, scale: int,
        family_loss: float = 0.0, match: bool = False, task_loss: float = 1.0) -> None:
    tasks, pairs, _ = load_synth(synth, "train")
    _, val, _ = load_synth(synth, "val")
    keep = [i for i, t in enumerate(tasks) if t.name != held]
    names, fams = [tasks[i].name for i in keep], [tasks[i].family for i in keep]
    family = next(t.family for t in tasks if t.name == held)
    gen = torch.Generator().manual_seed(0)
    enc = build_arch({"name": "drn", "num_feat": 32, "emb_dim": 64, "reference": reference,
                      **({"reference_match": True} if match else {})}, generator=gen)
    t = time.time()
    train = [PairSampler(pairs[i], scale, patch) for i in keep]
    if family_loss > 0:
        bank, hist = train_with_family_loss(enc, train, fams, steps, patch, family_loss, gen, task_loss)
    else:
        bank, hist = train_drn(enc, train, DRNConfig(steps=steps, batch_per_task=2, lr_patch=patch, progress=False), gen)
    acc = heldout_accuracy(enc, bank, [PairSampler(val[i], scale, patch, augment=False) for i in keep])
    print(f"reference={reference} match={match} family_loss={family_loss} task_loss={task_loss} held={held}: DRN {time.time() - t:.0f}s, train acc {hist['final_accuracy']:.3f}, "
          f"held-out patch acc {acc:.3f}")
    protos = bank.numpy()
    for k in (1, 5):
        for seed in (0, 1):
            shots = load_pairs(target, scale, shot_names(target, k, seed))
            e = embed_images(enc, [lr for _, lr, _ in shots], patch, 16, hr_images=[hr for _, _, hr in shots])
            w, sims = relation_weights(e, protos, tau), similarities(e, protos)
            top = np.argsort(-w)[:4]
            fw = sum(x for x, f in zip(w, fams) if f == family)
            print(f"  K={k} seed {seed}: best cosine {sims.max():.3f}, weight on family {family} {fw:.2f}; top "
                  + ", ".join(f"{names[i]} ({w[i]:.2f})" for i in top))
            if "family_bank" in hist:  # weights over the family prototypes directly
                fids, wf = hist["families"], relation_weights(e, hist["family_bank"].numpy(), tau)
                order = np.argsort(-wf)[:3]
                print(f"    family prototypes: weight on {family} {wf[fids.index(family)]:.2f}; top "
                      + ", ".join(f"{fids[i]} ({wf[i]:.2f})" for i in order))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--synth", required=True, help="a synthesized bank holding the held-out task (drtl synthesize)")
    ap.add_argument("--held", required=True, help="the task left out of the DRN's bank")
    ap.add_argument("--target", required=True, help="paired folder made with the held-out task (drtl data target)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--tau", type=float, default=0.05)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--family-loss", type=float, default=0.0,
                    help="> 0: only the reference DRN, trained with this weight on a family-level loss too")
    ap.add_argument("--task-loss", type=float, default=1.0, help="with --family-loss: weight of the task-level loss")
    ap.add_argument("--match", action="store_true", help="the reference DRN with reference_match (the default DRN)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    for reference in ((True,) if a.family_loss > 0 else (False, True)):
        run(a.synth, a.held, a.target, reference, a.steps, a.patch, a.tau, a.scale, a.family_loss, a.match,
            a.task_loss)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
