"""``ssdd kd``: distil a teacher classifier into students through a distilled set's images."""
from distill.cli import config_command

kd = config_command("kd", "applications.kd.run:KDConfig", "applications.kd.run:run_kd",
                    "Data-free KD: teacher -> student on distilled images, versus Gaussian noise and a random real "
                    "subset (e.g. -c configs/apps/kd_cifar10.yaml).", files=("md", "csv", "json"))
