"""The engine: a plan's graph of producers and savers, and the executors that run it.

Nothing here decides *what* to compute (that is the resolver's) or holds claims (the
session's): the engine wires and runs what it is given. ``graph`` builds the run-free
``Graph``; ``executors`` names the ways to run it (``threaded``, ``serial``), which share
``saving`` (the savers' lifecycle) and report to ``hooks`` (timing, progress, inspection);
``mailbox`` (with ``subscription`` and ``mailbox_group``) and ``futures`` join the threads.
"""
