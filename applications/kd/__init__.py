"""Data-free knowledge distillation through distilled sets."""
from distill.classifier import Classifier
from distill.evaluate import train_classifier

from .run import KDConfig, kd_train, noise_images, run_kd

__all__ = ["Classifier", "KDConfig", "kd_train", "noise_images", "run_kd", "train_classifier"]
