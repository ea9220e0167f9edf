from __future__ import annotations

import io

import pytest
import torch

from drtl.archs import build_arch
from drtl.errors import ConfigError, ModelError
from drtl.modelio import load_model, model_info, save_model

RECIPE = {
    "method": "drtl_pre",
    "shots": 5,
    "seed": 3,
    "train": {"lr": 1e-4, "steps": 10, "betas": [0.9, 0.99], "tau": 0.5},
    "data_hashes": {"pool": "ab" * 32},
    "note": None,
    "flag": True,
}


def _model(name="edsr_tiny", scale=2, seed=0):
    return build_arch({"name": name, "scale": scale}, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def saved(tmp_path):
    m = _model()
    path = save_model(tmp_path / "model.pt", m, RECIPE)
    return m, path


def test_round_trip_outputs_and_recipe(saved):
    m, path = saved
    m2, meta = load_model(path)
    x = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert meta["recipe"] == RECIPE
    assert meta["arch"] == m.arch_cfg
    assert meta["format"] == "drtl-model" and meta["version"] == 1
    assert meta["n_params"] == sum(p.numel() for p in m.parameters())
    assert not m2.training
    # raw payload has only plain types and loads with weights_only
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "version", "arch", "state_dict", "recipe"}


def test_tuple_recipe_normalised_and_non_json_refused(tmp_path):
    m = _model()
    save_model(tmp_path / "a.pt", m, {"sizes": (1, 2)})
    assert load_model(tmp_path / "a.pt")[1]["recipe"] == {"sizes": [1, 2]}
    with pytest.raises(ConfigError, match="JSON"):
        save_model(tmp_path / "b.pt", m, {"bad": object()})
    assert not (tmp_path / "b.pt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]  # no temp files left behind


def test_deterministic_bytes(tmp_path):
    m = _model()
    a = save_model(tmp_path / "a.pt", m, RECIPE).read_bytes()
    b = save_model(tmp_path / "sub" / "other_name.pt", m, RECIPE).read_bytes()
    assert a == b


def test_model_without_arch_cfg_refused(tmp_path):
    with pytest.raises(ModelError, match="arch_cfg"):
        save_model(tmp_path / "x.pt", torch.nn.Conv2d(3, 3, 3), {})


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.pt")


_EXECUTED: list[int] = []


def _mark():
    _EXECUTED.append(1)
    return 1


class _Evil:
    def __reduce__(self):
        return (_mark, ())


def test_pickled_object_rejected_without_running(tmp_path, saved):
    m, _ = saved
    path = tmp_path / "evil.pt"
    payload = {"format": "drtl-model", "version": 1, "arch": m.arch_cfg, "state_dict": m.state_dict(), "recipe": {"x": _Evil()}}
    torch.save(payload, path)
    with pytest.raises(ModelError, match="refused to load") as ei:
        load_model(path)
    assert "\n" not in str(ei.value)
    assert "_mark" in str(ei.value)
    assert _EXECUTED == []


def test_truncated_and_garbage_files(tmp_path, saved):
    _, path = saved
    data = path.read_bytes()
    for name, blob in [("trunc.pt", data[: len(data) // 2]), ("empty.pt", b""), ("text.pt", b"hello world\n")]:
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(ModelError) as ei:
            load_model(p)
        msg = str(ei.value)
        assert name in msg and "\n" not in msg


def test_not_a_drtl_file(tmp_path):
    m = _model()
    p = tmp_path / "bare.pt"
    torch.save(m.state_dict(), p)
    with pytest.raises(ModelError, match="bare state_dict"):
        load_model(p)
    p2 = tmp_path / "list.pt"
    torch.save([1, 2, 3], p2)
    with pytest.raises(ModelError, match="not a drtl model file"):
        load_model(p2)


def test_future_version(tmp_path, saved):
    _, path = saved
    raw = torch.load(path, weights_only=True)
    raw["version"] = 99
    torch.save(raw, tmp_path / "v99.pt")
    with pytest.raises(ModelError, match="version 99"):
        load_model(tmp_path / "v99.pt")


def test_wrong_scale_and_arch(tmp_path):
    p3 = save_model(tmp_path / "model.pt", _model(scale=3), {})
    with pytest.raises(ModelError, match=r"model.pt is a x3 model but --scale 2 was asked"):
        load_model(p3, expect_scale=2)
    assert load_model(p3, expect_scale=3, expect_arch="edsr")[0].arch_cfg["scale"] == 3
    assert load_model(p3, expect_arch="edsr_tiny")[1]["arch"]["name"] == "edsr_tiny"
    with pytest.raises(ModelError, match="edsr_baseline"):
        load_model(p3, expect_arch="edsr_baseline")
    drn = build_arch({"name": "drn", "num_feat": 8, "emb_dim": 8, "depth": 1})
    pd = save_model(tmp_path / "drn.pt", drn, {})
    with pytest.raises(ModelError, match="drn .* but an SR model"):
        load_model(pd, expect_arch="edsr")
    with pytest.raises(ModelError, match="scale"):
        load_model(pd, expect_scale=2)
    assert load_model(pd, expect_arch="drn")[1]["arch"]["name"] == "drn"


def test_state_dict_mismatch(tmp_path, saved):
    _, path = saved
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["conv_first.weight"] = torch.zeros(5, 3, 3, 3)
    del raw["state_dict"]["conv_last.bias"]
    raw["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as ei:
        load_model(tmp_path / "bad.pt")
    msg = str(ei.value)
    assert "missing" in msg and "unexpected" in msg and "conv_first.weight" in msg and "\n" not in msg


def test_bad_arch_in_file(tmp_path, saved):
    _, path = saved
    raw = torch.load(path, weights_only=True)
    raw["arch"]["name"] = "resnet9000"
    torch.save(raw, tmp_path / "arch.pt")
    with pytest.raises(ModelError, match="arch config"):
        load_model(tmp_path / "arch.pt")


def test_model_info(saved):
    m, path = saved
    info = model_info(path)
    assert info["name"] == "edsr_tiny" and info["scale"] == 2 and info["family"] == "edsr"
    assert info["recipe"] == RECIPE
    assert info["n_params"] == sum(p.numel() for p in m.parameters())
    assert info["size_bytes"] == path.stat().st_size and len(info["sha256"]) == 64
    import json

    json.dumps(info)  # displayable




def test_load_from_bytes_buffer_is_plain(saved):
    # the file is an ordinary torch zip: loadable from memory too, with weights_only
    _, path = saved
    obj = torch.load(io.BytesIO(path.read_bytes()), weights_only=True)
    assert obj["format"] == "drtl-model"


def test_load_leaves_global_rng_alone(saved):
    _, path = saved
    state = torch.random.get_rng_state()
    load_model(path)
    assert torch.equal(torch.random.get_rng_state(), state)
