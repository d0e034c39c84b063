"""`python -m probe` is `netprobe`."""

from .cli import main

main()
