"""Adaptive capacity learning (``FLEET_NODE_ENABLE_CAPACITY_LEARNING``): what a device's
owner does with it, so herd borrows only what the owner leaves.

* :mod:`herd.capacity.week`: the 168-slot week, learned online, kept as JSON;
* :mod:`herd.capacity.fingerprint`: the workload's intensity from resource shapes;
* :mod:`herd.capacity.sensors`: one reading of the device, herd's own work taken out
  (:mod:`herd.capacity.linux`, :mod:`herd.capacity.macos`: the OS signals);
* :mod:`herd.capacity.learner`: reading -> pause, availability now and next, memory
  ceiling (the heartbeat's fields);
* :mod:`herd.capacity.report`: the node's capacity as JSON for status and the dashboard.

Plain Python (no Ray); the NodeAgent calls the learner once per heartbeat.
"""
