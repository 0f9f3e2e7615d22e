import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dbp_control.core.sim.env import DualArmEnv
from dbp_control.core.sim.experts import LiftExpert


@pytest.mark.parametrize("obs_type", ["state", "image"])
def test_passes_gymnasium_env_checker(obs_type):
    env = DualArmEnv(obs_type=obs_type, image_size=(24, 32))
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    if obs_type == "image":
        assert obs["images"]["head"].shape == (3, 24, 32)


def test_the_expert_solves_lift_through_the_env_api():
    env = DualArmEnv(obs_type="state")
    obs, _ = env.reset(seed=7)
    expert = LiftExpert(env.sim, env.task, np.random.default_rng(7))
    t, terminated, truncated, rewards = 0.0, False, False, []
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(expert.targets(t))
        rewards.append(reward)
        t += env.control_dt
    assert terminated and info["success"] and not truncated
    assert rewards[-1] > rewards[0]  # the dense reward rises as the cube goes up


def test_vectorises_and_truncates():
    envs = gym.vector.SyncVectorEnv([lambda: DualArmEnv(obs_type="state", max_seconds=0.1) for _ in range(2)])
    obs, _ = envs.reset(seed=[1, 2])
    assert obs["joints"].shape == (2, 28) and not np.allclose(obs["objects"][0], obs["objects"][1])
    hold = obs["joints"][:, :14]  # command the current joint positions
    for _ in range(5):
        obs, reward, terminated, truncated, _ = envs.step(hold)
    assert truncated.all() and not terminated.any()
    envs.close()


def test_bad_actions_and_options_are_named():
    env = DualArmEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(14,\)"):
        env.step(np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.full(14, np.nan))
    with pytest.raises(ValueError, match="unknown obs_type 'depth'"):
        DualArmEnv(obs_type="depth")
