"""Fixtures for the trainer's tests; the helpers themselves live in trainer_helpers.py (a unique module
name: every test directory's conftest.py is a module called "conftest")."""

from trainer_helpers import imds, moto_s3, slow_s3, trainer  # noqa: F401  (fixtures)
