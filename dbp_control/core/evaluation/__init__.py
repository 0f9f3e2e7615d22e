"""Evaluating policies: closed-loop rollouts in the simulation."""
