"""Typed parameters: every key of drtl.config.DEFAULTS has a schema entry; a bad value is one
ConfigError line `KEY=VALUE: expected ...`; every shipped params file validates."""

from pathlib import Path

import pytest

from drtl.config import DEFAULTS, SCHEMA, _FREE, load_params
from drtl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# key -> (a good -S value, a bad -S value): one row per key of the schema
TABLE = {
    "device": ("cuda:1", "gpu"),
    "threads": ("2", "-1"),
    "log_every_s": ("0.5", "often"),
    "outputs": ("out", "''"),
    "target.pool": ("data/p", "[]"),
    "target.test": ("data/t", "3"),
    "target.scale": ("3", "5"),
    "aux.hr": ("[a, b]", "{}"),
    "aux.families": ("null", "7"),
    "aux.tasks": ("[blur_iso_s1]", "[]"),
    "aux.exclude": ("[gauss_noise30]", "5"),
    "aux.variants": ("2", "0"),
    "aux.val_fraction": ("0", "1.0"),
    "aux.max_hr_side": ("null", "8"),
    "aux.seed": ("3", "-2"),
    "arch": ("{name: edsr_baseline}", "edsr"),
    "relation.drn": ("{num_feat: 16}", "[16]"),
    "relation.steps": ("5", "abc"),
    "relation.batch_per_task": ("1", "0"),
    "relation.lr_patch": ("16", "4"),
    "relation.lr": ("1e-4", "0"),
    "relation.temperature": ("0.5", "-0.1"),
    "relation.tau": ("0.2", ".nan"),
    "relation.mix": ("0.25", "1.5"),
    "relation.top_k": ("5", "-1"),
    "relation.weighting": ("false", "maybe"),
    "relation.expert.amp": ("true", "bf16"), "pretrain.amp": ("true", "yes please"), "meta.amp": ("false", "2"),
    "finetune.amp": ("true", "fp16"),
    "relation.patches_per_image": ("4", "2.5"),
    "relation.eval_per_task": ("8", "true"),
    "relation.seed": ("1", "x"),
    "relation.fitted": ("true", "yes please"),
    "relation.fitted_noise": ("0.5", "-1"),
    "relation.composed": ("true", "both"),
    "relation.similarity": ("expert", "psnr"),
    "relation.tau_db": ("1.0", "0"),
    "relation.expert.iterations": ("100", "0"), "relation.expert.batch": ("2", "0"),
    "relation.expert.lr_patch": ("16", "4"), "relation.expert.lr": ("1e-3", "-1"),
    "relation.expert.schedule": ("constant", "linear"), "relation.expert.tasks_per_step": ("2", "0"),
    "pretrain.iterations": ("7", "abc"),
    "pretrain.batch": ("2", "0"),
    "pretrain.lr_patch": ("24", "1"),
    "pretrain.lr": ("2.0e-4", "fast"),
    "pretrain.tasks_per_step": ("2", "0"),
    "pretrain.schedule": ("cosine", "linear"),
    "pretrain.log_every": ("5", "0"),
    "pretrain.checkpoint_every": ("0", "-5"),
    "pretrain.drtl_continue": ("60", "-1"),
    "meta.iterations": ("3", "0"),
    "meta.lr_patch": ("16", "abc"),
    "meta.lr": ("1e-5", "[1]"),
    "meta.inner_steps": ("2", "0"),
    "meta.inner_lr": ("0.01", "-1"),
    "meta.meta_batch": ("2", "two"),
    "meta.first_order": ("true", "1"),
    "meta.support_batch": ("2", "0"),
    "meta.query_batch": ("2", "null"),
    "meta.log_every": ("5", "-1"),
    "meta.checkpoint_every": ("10", "x"),
    "meta.init": ("scratch", "warm"),
    "finetune.iterations": ("9", "abc"),
    "finetune.batch": ("8", "0"),
    "finetune.lr_patch": ("32", "3"),
    "finetune.lr": ("1e-4", "fast"),
    "finetune.schedule": ("step", "none"),
    "finetune.log_every": ("3", "0"),
    "finetune.checkpoint_every": ("5", "1.5"),
    "finetune.upper_bound_init": ("maml", "drtl_pre"),
    "finetune.ceiling_iterations": ("500", "0"),
    "finetune.val_fraction": ("0", "1.5"),
    "finetune.eval_every": ("10", "0"),
    "finetune.patience": ("3", "-1"),
    "experiment.shots": ("[1, 5]", "abc"),
    "experiment.seeds": ("[0]", "[-1]"),
    "experiment.methods": ("[bicubic, drtl_pre]", "[magic]"),
    "tracking.uri": ("http://h:5000", "5"),
    "tracking.experiment": ("x", "[x]"),
    "tracking.enabled": ("true", "on please"),
}


def _leaves(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and prefix + (k,) not in _FREE:
            yield from _leaves(v, prefix + (k,))
        else:
            yield ".".join(prefix + (k,))


def test_every_key_has_a_schema_entry_and_a_table_row():
    assert set(_leaves(DEFAULTS)) == set(SCHEMA) == set(TABLE)


def test_defaults_validate():
    assert load_params(None) == load_params(None, [])


@pytest.mark.parametrize("key", sorted(TABLE))
def test_good_value_passes(key):
    load_params(None, [f"{key}={TABLE[key][0]}"])


@pytest.mark.parametrize("key", sorted(TABLE))
def test_bad_value_is_one_line_naming_key_and_expectation(key):
    bad = TABLE[key][1]
    with pytest.raises(ConfigError) as info:
        load_params(None, [f"{key}={bad}"])
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{key}=") and ": expected " in msg, msg


def test_same_check_for_params_files(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("finetune: {iterations: abc}\n")
    with pytest.raises(ConfigError, match=r"^finetune.iterations=abc: expected an integer >= 1$"):
        load_params(f)
    f.write_text("experiment: 3\n")
    with pytest.raises(ConfigError, match=r"^experiment=3: expected a mapping"):
        load_params(f)


def test_normalisation():
    p = load_params(None, ["finetune.lr=1e-4", "experiment.shots=5", "aux.hr=data/x", "aux.families=blur"])
    assert p["finetune"]["lr"] == 1e-4 and p["experiment"]["shots"] == [5]
    assert p["aux"]["hr"] == ["data/x"] and p["aux"]["families"] == ["blur"]


@pytest.mark.parametrize("path", ["params.yaml", "params.gpu.yaml", "drtl/profiles/adapt.yaml",
                                  *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").glob("*.yaml"))])
def test_shipped_params_files_validate(path):
    load_params(REPO / path)
