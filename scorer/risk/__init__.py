"""Learning part of gonogo: features from deployment history, a calibrated risk model, explanations.

Pure: pandas DataFrames and numpy arrays in, fitted estimators and numbers out; no I/O besides
reading a history file the caller names.
"""
