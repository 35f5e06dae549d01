"""`python -m beatmatch_worker`: a step-protocol worker on stdin/stdout."""

from . import main

raise SystemExit(main())
