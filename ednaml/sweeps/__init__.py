"""Sweeps: `ednaml sweep` searches config keys on Optuna; every trial is an `ednaml fit` run of its own."""
