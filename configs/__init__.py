"""The ready configs, installed as the package ``lerobot_pipeline.configs`` (see setup.py).

This directory is both the documented ``configs/`` of the checkout and the package data of every
install (editable or wheel); code finds it with ``lerobot_pipeline.shipped``, never by path.
"""
