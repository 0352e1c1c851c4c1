"""Graph rewrites between the frontend and code generation, each small and explicit."""

from wasinfer.passes.fold import fold_constants
from wasinfer.passes.fuse import fold_batchnorm, fuse_activations
from wasinfer.passes.memory import VIEW_OPS, MemoryPlan, align, plan_memory

__all__ = ["VIEW_OPS", "MemoryPlan", "align", "fold_batchnorm", "fold_constants", "fuse_activations", "plan_memory"]
