"""Configs of the adasde study (``--config experiments/adasde/configs/NAME.py``)."""
