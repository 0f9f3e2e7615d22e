"""Meta-World's scripted experts (optional extra) and their dataset."""

import numpy as np
import pytest

import dbp_control.core.sim  # noqa: F401  (chooses MuJoCo's renderer before metaworld imports mujoco)

pytest.importorskip("metaworld", reason="the metaworld extra is not installed")

from dbp_control.core.data.dataset import Dataset, WindowDataset  # noqa: E402
from dbp_control.core.sim.metaworld_experts import run_metaworld_expert, write_metaworld_dataset  # noqa: E402


def test_scripted_reach_succeeds_and_records_state_action_pairs():
    episode = run_metaworld_expert("reach-v3", seed=1)
    assert episode.success
    assert episode.observations.shape[1] == 39 and episode.actions.shape == (len(episode.observations), 4)
    assert np.abs(episode.actions).max() <= 1.0


def test_unknown_environment_is_named():
    with pytest.raises(ValueError, match="unknown Meta-World environment 'fly-v3'"):
        run_metaworld_expert("fly-v3", seed=0)


def test_episodes_become_a_trainable_dataset(tmp_path):
    episodes = [run_metaworld_expert("reach-v3", seed=s) for s in range(3)]
    writer, ran = write_metaworld_dataset(episodes, tmp_path / "mw.zarr", val_fraction=0.34)
    ds = Dataset(writer.out)
    assert len(ran) == 3 and len(ds.episodes) == 3 and ds.layout["source"] == "metaworld"
    np.testing.assert_array_equal(ds.array("action")[ds.episode_slice(1)], episodes[1].actions)
    batch = WindowDataset(ds, "train", n_obs_steps=2, horizon=16, n_action_steps=8).batch(np.array([0, 1]))
    assert batch["state"].shape == (2, 2, 39) and batch["action"].shape == (2, 16, 4)
