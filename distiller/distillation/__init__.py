"""Knowledge distillation's pieces: the soft-target loss and its weights (Hinton et al. 2015), hint layers with
learned adapters (FitNets, Romero et al. 2015) and the teacher's construction. The policy that combines them
is :class:`distiller.KnowledgeDistillationPolicy` (module :mod:`distiller.knowledge_distillation`)."""
from .hints import Hint, HintLayers
from .loss import DistillationLossWeights, soft_target_loss
from .teacher import TeacherSpec, build_teacher

__all__ = ["DistillationLossWeights", "soft_target_loss", "Hint", "HintLayers", "TeacherSpec", "build_teacher"]
