"""The reinforcement-learning strategy: a stable-baselines3 agent on ``BitAllocationEnv``.

``ddpg`` (the agent of HAQ and of Pelke et al.): actor-critic for continuous actions, an MLP
of two 64-unit layers, Gaussian exploration noise (σ = 0.3, the action range is [0, 1]) and
``warmup`` episodes of random actions before learning starts (HAQ's warm-up). ``ppo`` is
the on-policy alternative. One episode is one configuration, so ``episodes`` bounds the
number of proxy evaluations (repeated configurations are free). After training, the
deterministic policy's own configuration is evaluated too; the result is the best feasible
configuration of all the agent visited.

Determinism: the agent, its noise and the environment are seeded from ``seed`` and torch runs
on the CPU with one thread during training, so the same seed gives the same configurations.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from cimc.errors import UsageError
from cimc.search.pareto import best_feasible
from cimc.search.problem import Point, SearchProblem

if TYPE_CHECKING:
    from cimc.search.rl_env import BitAllocationEnv

log = logging.getLogger(__name__)

AGENTS = ("ddpg", "ppo")


def _agent(name: str, env: BitAllocationEnv, episodes: int, seed: int) -> Any:
    layers = len(env.problem.space.layers)
    kwargs: dict[str, Any] = {"seed": seed, "device": "cpu", "verbose": 0, "policy_kwargs": {"net_arch": [64, 64]}}
    if name == "ddpg":
        from stable_baselines3 import DDPG
        from stable_baselines3.common.noise import NormalActionNoise

        noise = NormalActionNoise(np.zeros(env.dims), 0.3 * np.ones(env.dims))
        warmup = max(1, min(episodes // 4, 20))
        return DDPG("MlpPolicy", env, action_noise=noise, learning_starts=warmup * layers, learning_rate=1e-3,
                    gamma=1.0, buffer_size=max(episodes * layers, 1000), batch_size=min(64, warmup * layers),
                    train_freq=(1, "episode"), gradient_steps=layers, **kwargs)
    if name == "ppo":
        from stable_baselines3 import PPO

        n_steps = layers * max(2, min(episodes // 4, 8))
        return PPO("MlpPolicy", env, n_steps=n_steps, batch_size=n_steps, n_epochs=5, gamma=1.0,
                   learning_rate=3e-4, **kwargs)
    raise UsageError(f"unknown RL agent '{name}'", hint=f"choose one of {', '.join(AGENTS)}")


def rl_search(problem: SearchProblem, episodes: int = 40, seed: int = 0, agent: str = "ddpg") -> Point:
    """Train the agent for ``episodes`` episodes; returns the best feasible configuration the
    agent visited (the final policy's when none is feasible)."""
    import torch

    if episodes < 1:
        raise UsageError("--episodes must be at least 1")
    try:
        from cimc.search.rl_env import BitAllocationEnv
    except ImportError as exc:
        raise UsageError("the RL strategy needs gymnasium and stable-baselines3",
                         hint="pip install 'cimc[search]', or use --strategy greedy") from exc
    problem.evaluate(problem.space.widest(), "rl reference")
    if problem.start is not None:  # a QAT model: its trained bits and steps are a candidate too
        problem.first("rl")
    env = BitAllocationEnv(problem, origin=f"rl {agent}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _agent(agent, env, episodes, seed)
        model.learn(total_timesteps=episodes * len(problem.space.layers))
        policy = _rollout(model, env, seed)
    finally:
        torch.set_num_threads(threads)
    return best_feasible(env.visited) or policy


def _rollout(model: Any, env: BitAllocationEnv, seed: int) -> Point:
    """The configuration of the deterministic policy."""
    env.origin = "rl policy"
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, done, _, _ = env.step(action)
    assert env.last_point is not None
    return env.last_point
