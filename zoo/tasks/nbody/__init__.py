"""The charged 5-particle N-body benchmark of EGNN/SEGNN: positions 1000 simulator steps ahead.

The data (simulation, cache) is :mod:`zoo.data.nbody`; :mod:`.task` is the benchmark and
:mod:`.card` its card text.
"""
