"""Self-supervised teachers: Barlow Twins and SimCLR training, the Teacher file."""
from .losses import barlow_twins_loss, nt_xent_loss, projector
from .teacher import Teacher
from .train import TeacherResult, train_teacher

__all__ = ["Teacher", "TeacherResult", "barlow_twins_loss", "nt_xent_loss", "projector", "train_teacher"]
