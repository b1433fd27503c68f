"""em-repro: reproduction package for the Emergent Misalignment trait-vector findings."""

__version__ = "0.1.0"
