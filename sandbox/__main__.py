"""``python -m sandbox``: run snowsage end to end on moto and fakesnow (see sandbox/demo.py)."""

from sandbox.demo import main

raise SystemExit(main())
