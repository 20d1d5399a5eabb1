"""Configs of the catch_up study (``--config experiments/catch_up/configs/NAME.py``)."""
