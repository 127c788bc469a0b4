"""``python -m pulse_bi`` is ``pulse-bi``."""

from pulse_bi.cli import main

main()
