"""The engine: a plan's graph of producers and savers, and the executors that run it.

Nothing here decides *what* to compute (that is the resolver's) or holds claims (the
session's): the engine wires and runs what it is given.
"""
