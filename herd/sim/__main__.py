"""``python -m herd.sim``: same as ``herd sim-node``."""

from herd.sim.cli import main

raise SystemExit(main())
