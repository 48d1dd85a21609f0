"""``python -m herd.sim``: same as ``herd sim-node``."""

from herd.sim.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
