"""Learned solvers and distilled students, each trained by the shared optax loop (:mod:`jaxsample.train`).

- :mod:`~jaxsample.distill.bns`: Bespoke Non-Stationary solvers (Shaul et al. 2024).
- :mod:`~jaxsample.distill.adasde`: AdaSDE's per-step noise and step parameters (Wang et al. 2025).
- :mod:`~jaxsample.distill.deis_sn`: the calibration pass of score-normalised DEIS (Xia et al. 2023).
- :mod:`~jaxsample.distill.progressive`: progressive distillation (Salimans & Ho 2022).
- :mod:`~jaxsample.distill.catch_up`: catch-up distillation (Shao et al. 2023).
- :mod:`~jaxsample.distill.amed`: AMED-Solver, trained as its authors do (Zhou et al. 2024).
- :mod:`~jaxsample.distill.dpm_solver_v3`: the empirical model statistics of DPM-Solver-v3 (Zheng et al. 2023).
- :mod:`~jaxsample.distill.gits`: GITS time grids by dynamic programming on a teacher trajectory (Chen et al. 2024).
- :mod:`~jaxsample.distill.ld3`: LD3, a learned time grid (plus model-time shifts) for any ODE solver (Tong et al. 2024).

These are the methods only: each study that runs one (``train_and_evaluate(config, workdir)``,
run by ``experiments/<name>/main.py`` and ``jaxsample distill <name>``) lives in
``experiments/<name>/train.py``, on a task of :mod:`jaxsample.tasks`.
"""

from jaxsample.distill import adasde, amed, bns, catch_up, deis_sn, dpm_solver_v3, gits, ld3, progressive

__all__ = ["adasde", "amed", "bns", "catch_up", "deis_sn", "dpm_solver_v3", "gits", "ld3", "progressive"]
