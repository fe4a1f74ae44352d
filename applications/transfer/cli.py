"""``ssdd transfer``: the cross-architecture table."""
from distill.cli import config_command

transfer = config_command("transfer", "applications.transfer.run:TransferConfig", "applications.transfer.run:run_transfer",
                          "Pre-train architectures on distilled sets, then fine-tune / linear-probe on targets "
                          "(e.g. -c configs/apps/transfer_sample.yaml).", files=("md", "plot", "csv"))
