"""The model repository format, shared by training (which writes it) and the service (which reads it).

It imports neither side: `config` (the config.json schema), `layout` (file names, version folders,
the one rule for what a model folder is), `datatypes` (the tensor datatype table) and `scoring` (the
math that turns model outputs into scores, so a threshold is calibrated on what the service reports).
"""
