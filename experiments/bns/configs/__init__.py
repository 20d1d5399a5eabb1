"""Configs of the bns study (``--config experiments/bns/configs/NAME.py``)."""
