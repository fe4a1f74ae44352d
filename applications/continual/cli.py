"""``ssdd continual``: a strategy with each buffer on a class-incremental benchmark."""
from distill.cli import config_command

continual = config_command(
    "continual", "applications.continual.config:ContinualConfig", "applications.continual.run:run_continual",
    "Continual learning with distilled vs real replay at equal memory (e.g. -c configs/apps/continual_sample.yaml). "
    "Each finished run is kept in OUTPUT/runs/ and reused when the command is started again with the same settings.",
    files=("md", "plot", "json"))
