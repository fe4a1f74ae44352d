"""``python -m distill ...`` = ``ssdd ...`` (for machines where the package is on PYTHONPATH, not installed)."""
from .cli import main

main()
