"""python -m search.names --trials 100: run or continue the names study (see search/cli.py)."""
from .cli import main

if __name__ == "__main__":
    main("names")
