"""`python -m hedgewatch`: the same as the `hedgewatch` command."""

from hedgewatch.cli import main

main()
