"""UVA — Unified Video Action model: the ROS-free PyTorch core."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TASK_MODES, UVAConfig
from .model import UVAModel
from .policy import UVAPolicy, load_policy

__all__ = ["CheckpointError", "TASK_MODES", "UVAConfig", "UVAModel", "UVAPolicy",
           "load_checkpoint", "load_policy", "save_checkpoint"]
