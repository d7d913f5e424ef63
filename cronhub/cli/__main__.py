"""``python -m cronhub.cli``: the same as the ``cronhub`` console script."""

from cronhub.cli import main

main()
