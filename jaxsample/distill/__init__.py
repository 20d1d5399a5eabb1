"""Learned artefacts, each trained by the shared optax loop (:mod:`jaxsample.train`)."""
