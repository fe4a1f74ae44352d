"""Self-supervised teachers: Barlow Twins and SimCLR training, the Teacher file."""
from .losses import barlow_twins_loss, nt_xent_loss, projector
from .teacher import Teacher
from .train import TeacherConfig, TeacherResult, TeacherStage, train_teacher

__all__ = ["Teacher", "TeacherConfig", "TeacherResult", "TeacherStage",
           "barlow_twins_loss", "nt_xent_loss", "projector", "train_teacher"]
