"""``python -m robustdial`` = the ``robustdial`` command."""
from robustdial.cli import main

raise SystemExit(main())
