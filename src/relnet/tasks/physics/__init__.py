"""Dynamic physical systems: balls joined by invisible springs, to be inferred from motion alone."""

from relnet.tasks.physics.data import load_split, write_dataset
from relnet.tasks.physics.task import PhysicsConnections, PhysicsCount

__all__ = ["PhysicsConnections", "PhysicsCount", "load_split", "write_dataset"]
