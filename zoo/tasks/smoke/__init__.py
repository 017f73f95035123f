"""The smoke-plume Rotation set (Wang, Walters & Yu 2022): 10 velocity frames in, the next ones
predicted autoregressively.

The data (PhiFlow re-simulation, cache, windows) is :mod:`zoo.data.smoke`; :mod:`.task` is the
benchmark and :mod:`.card` its card text and rollout figure.
"""
