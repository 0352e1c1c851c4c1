"""Graph rewrites between the frontend and code generation, each small and explicit."""

from wasinfer.passes.fold import fold_constants
from wasinfer.passes.fuse import fold_batchnorm, fold_conv_affine, fuse_activations
from wasinfer.passes.memory import MemoryPlan, align, plan_memory

__all__ = ["MemoryPlan", "align", "fold_batchnorm", "fold_constants", "fold_conv_affine", "fuse_activations",
           "plan_memory"]
