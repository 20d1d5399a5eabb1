"""Configs of the teachers study (``--config experiments/teachers/configs/NAME.py``)."""
