"""``python -m trtq`` is the ``trtq`` command."""

from trtq.cli.main import main

main()
