"""``python -m snowsage``: the same CLI as the ``snowsage`` console script."""

from snowsage.cli import main

main()
