"""Configs of the deis_sn study (``--config experiments/deis_sn/configs/NAME.py``)."""
