"""Test-side tooling for the fault suite (tests/test_faults_*.py).

Small generators of hostile and broken inputs (data files, checkpoints, ONNX files, resume
states), the CLI contract every bad input must meet, and a fork server that runs the real
``advcli`` entry point in child processes under memory limits and signals.
"""
