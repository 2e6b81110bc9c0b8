"""``python -m trtq`` is the ``trtq`` command."""

from trtq.cli.entry import main

main()
