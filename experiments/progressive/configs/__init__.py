"""Configs of the progressive study (``--config experiments/progressive/configs/NAME.py``)."""
