"""Unit conversions used in metrics and cards (this module imports nothing from zoo)."""

EV_TO_MEV = 1000.0  # energies are stored in eV and reported in meV
