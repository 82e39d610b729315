"""python -m search.report TASK."""
from .cli import main

main()
