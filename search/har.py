"""python -m search.har --trials 100: run or continue the har study (see search/cli.py)."""
from .cli import main

if __name__ == "__main__":
    main("har")
