"""Action-chunk policies: DBP (one step), diffusion (DDPM/DDIM) and deterministic BC on one backbone."""

from dbp_control.core.policies.base import (
    Policy,
    PolicyConfig,
    available_methods,
    config_from_dict,
    make_policy,
)
from dbp_control.core.policies.bc.modeling import BCConfig, BCPolicy
from dbp_control.core.policies.dbp.drift import drift_loss
from dbp_control.core.policies.dbp.modeling import DBPConfig, DBPPolicy
from dbp_control.core.policies.diffusion.modeling import DiffusionConfig, DiffusionPolicy

__all__ = [
    "BCConfig",
    "BCPolicy",
    "DBPConfig",
    "DBPPolicy",
    "DiffusionConfig",
    "DiffusionPolicy",
    "Policy",
    "PolicyConfig",
    "available_methods",
    "config_from_dict",
    "drift_loss",
    "make_policy",
]
