"""Tasks: what a study samples and how it scores the samples, loaded in one place.

A :class:`Task` bundles the model a study samples (a shipped teacher, a teacher you trained
with ``experiments/teachers/main.py`` given by its ``.json`` card, or the analytic
Gaussian-mixture benchmark of :func:`jaxsample.compare.benchmark_mixture`), the shape of one
sample, the sampling interval, the conditioning it needs, and the metrics the studies report:
PSNR against ground truth, Frechet distance, exact log-likelihood. :func:`load_task` builds
one from a name and options, :func:`task_from_config` from an experiment config.

Example:
    >>> from jaxsample import tasks
    >>> task = tasks.load_task("gmm", dim=4, num_components=2)
    >>> task.sample_shape, type(task.model.path).__name__, task.model.prediction
    ((4,), 'VPCosine', 'eps')
    >>> round(task.t_start, 4), round(task.t_end, 4)   # EDM's sigma / alpha in [0.002, 80]
    (0.9921, 0.0012)
    >>> task.conditioning(3, seed=0)
    {}
    >>> digits = tasks.load_task("digits_flow", guidance_scale=2.0)
    >>> digits.sample_shape, digits.num_classes, digits.conditioning(3, seed=0)["label"].shape
    ((8, 8, 1), 10, (3,))
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Optional

import numpy as np

from jaxsample.models import GaussianMixture, Model

__all__ = ["Task", "load_task", "task_from_config", "MIXTURE"]

#: The name of the analytic Gaussian-mixture benchmark task.
MIXTURE = "gmm"


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A model to sample and the means to score its samples.

    Attributes:
        name: the shipped teacher's name, the path of a teacher card (``.json``), or
            ``'gmm_<setting>'`` for the mixture (e.g. ``'gmm_vp_cosine'``).
        model: the model to sample (guided when a guidance scale other than 1 was asked for).
        sample_shape: the shape of one sample, e.g. ``(8, 8, 1)`` or ``(64,)``.
        t_start: where sampling starts (high noise).
        t_end: where it ends (low noise).
        num_classes: the number of classes of a class-conditional teacher (label
            ``num_classes`` is its null class), else None.
        data_range: the data range PSNR is measured with.
        dataset: what the model generates: ``'digits'``, ``'fashion_mnist'``, a 2-D toy name, or ``'gmm'``.
        mixture: the analytic Gaussian mixture (exact samples and log-density), or None.
        card: the teacher's card, or None for the mixture.
    """

    name: str
    model: Model
    sample_shape: tuple
    t_start: float
    t_end: float
    num_classes: Optional[int] = None
    data_range: float = 2.0
    dataset: str = MIXTURE
    mixture: Optional[GaussianMixture] = None
    card: Optional[dict] = dataclasses.field(default=None, repr=False)

    @property
    def interval(self) -> dict:
        """``{'t_start': ..., 't_end': ...}``, ready for ``get_grid(..., **task.interval)``."""
        return {"t_start": self.t_start, "t_end": self.t_end}

    @property
    def teacher_train_seconds(self) -> Optional[float]:
        """The teacher's training wall time from its card (None for the mixture)."""
        return None if self.card is None else self.card.get("train_wall_time_s")

    def conditioning(self, num: int, seed: int) -> dict:
        """Per-sample conditioning for ``num`` samples: ``{'label': ...}`` with labels drawn
        uniformly from the classes by ``numpy.random.default_rng(seed)``, or ``{}`` when the
        model is unconditional."""
        if self.num_classes is None:
            return {}
        return {"label": np.random.default_rng(seed).integers(0, self.num_classes, num)}

    def noise(self, key, num: int):
        """``num`` initial noises (:func:`jaxsample.sampling.initial_noise`) of the sample shape."""
        from jaxsample.sampling import initial_noise

        return initial_noise(key, (num, *self.sample_shape))

    def data_samples(self, key, num: int):
        """``num`` exact data samples: from the mixture or the 2-D toy the teacher was trained on."""
        if self.mixture is not None:
            return self.mixture.sample(key, num)
        from jaxsample import data

        if self.dataset in data.TOY_DATASETS:
            return data.toy_sample(self.dataset, key, num)
        raise ValueError(f"task {self.name!r} ({self.dataset}) has no exact sampler; data_samples needs the mixture "
                         f"or a 2-D toy teacher")

    def network(self):
        """``(module, params)`` of a teacher task: the Flax module built from its card and its
        float32 parameters."""
        from jaxsample import teachers

        if self.card is None:
            raise ValueError(f"task {self.name!r} is the analytic mixture: it has no network")
        module = teachers.build_module(self.card["module"], self.card["net"])
        if self.name.endswith(".json"):
            weights = os.path.join(os.path.dirname(os.path.abspath(self.name)), self.card["weights_file"])
            with open(weights, "rb") as f:
                return module, teachers._restore(f.read())
        return module, teachers.load_params(self.name)

    # --------------------------------------------------------------------------- evaluation

    def psnr(self, x, reference) -> float:
        """PSNR in dB of samples ``x`` against the ground truth ``reference`` (same noise)."""
        from jaxsample.metrics import psnr

        return float(psnr(x, reference, self.data_range))

    @property
    def has_image_features(self) -> bool:
        """Whether :meth:`frechet_distance` scores in a shipped classifier's features (digits,
        Fashion-MNIST) with no reference samples needed."""
        return self.dataset in ("digits", "fashion_mnist")

    def frechet_distance(self, x, reference=None) -> float:
        """Frechet distance of samples ``x`` to ``reference``: for digits, in the shipped digits
        classifier's features (``reference`` defaults to the 300 held-out digits); for
        Fashion-MNIST, in the shipped Fashion classifier's features against the shipped statistics
        of the 10,000 held-out images (``reference`` must be None); otherwise on the raw
        coordinates, against ``reference`` (e.g. :meth:`data_samples`)."""
        from jaxsample import features, metrics

        if self.dataset == "digits":
            return float(features.digits_frechet_distance(np.asarray(x), reference=reference,
                                                          classifier=_digits_classifier()))
        if self.dataset == "fashion_mnist":
            if reference is not None:
                raise ValueError("reference must be None for Fashion-MNIST: the distance is to the shipped "
                                 "statistics of the held-out images (jaxsample.features.fashion_frechet_distance)")
            return float(features.fashion_frechet_distance(np.asarray(x)))
        if reference is None:
            raise ValueError(f"reference: task {self.name!r} ({self.dataset}) needs reference samples for the "
                             f"Frechet distance (e.g. task.data_samples(key, num))")
        return float(metrics.frechet_distance(np.asarray(x), np.asarray(reference)))

    def log_likelihood(self, x) -> float:
        """Mean exact log-density of samples ``x`` (the mixture only)."""
        from jaxsample.metrics import mean_log_likelihood

        if self.mixture is None:
            raise ValueError(f"task {self.name!r} has no exact log-density (only the mixture 'gmm' has one)")
        return float(mean_log_likelihood(self.mixture, x))


@functools.lru_cache(maxsize=None)
def _digits_classifier():
    from jaxsample import teachers

    return teachers.load_digits_classifier()


def load_task(name: str, *, guidance_scale: float = 1.0, edm_interval: Optional[bool] = None,
              setting: str = "vp_cosine", dim: int = 64, num_components: int = 8, data_seed: int = 0,
              data_range: float = 2.0) -> Task:
    """The task ``name``: a shipped teacher, a teacher card, or the Gaussian-mixture benchmark.

    Args:
        name: a shipped generative teacher (``jaxsample.teachers.list_teachers()``), the path of
            the ``.json`` card of a teacher trained with ``experiments/teachers/main.py``, or
            ``'gmm'`` for the analytic mixture :func:`jaxsample.compare.benchmark_mixture` in
            ``setting`` (or ``'gmm_vp_cosine'``, ``'gmm_rectified_flow'``: the setting in the name).
        guidance_scale: classifier-free guidance for a class-conditional teacher (1: none).
        edm_interval: True: EDM's interval (sigma / alpha from 80 to 0.002) on the model's path;
            False: the path's whole range; None: the task's default (the whole range for a
            teacher, the setting's interval for the mixture).
        setting: the mixture's path and prediction, a key of
            :data:`jaxsample.compare.BENCHMARK_SETTINGS` (``'vp_cosine'`` or ``'rectified_flow'``).
        dim, num_components, data_seed: the mixture's size and seed.
        data_range: the data range of PSNR.

    Raises:
        ValueError: for an unknown ``name`` or ``setting``, or guidance on an unconditional teacher.
    """
    from jaxsample import compare

    if isinstance(name, str) and (name == MIXTURE or name.startswith(MIXTURE + "_")):
        setting = name[len(MIXTURE) + 1:] or setting
        if setting not in compare.BENCHMARK_SETTINGS:
            raise ValueError(f"setting must be one of {sorted(compare.BENCHMARK_SETTINGS)}, got {setting!r} "
                             f"(name {name!r})")
        if guidance_scale != 1.0:
            raise ValueError(f"guidance_scale={guidance_scale} needs a class-conditional teacher; {name!r} has "
                             f"no classes")
        gmm = compare.benchmark_mixture(dim, num_components, data_seed)
        path, prediction, interval = compare.BENCHMARK_SETTINGS[setting]
        model = gmm.model(path, prediction)
        task = Task(f"{MIXTURE}_{setting}", model, (gmm.dim,), 0.0, 0.0, data_range=data_range, mixture=gmm)
        return _with_interval(task, edm_interval, interval)

    from jaxsample import nets, teachers

    generative = sorted(teachers.GENERATIVE)
    if not isinstance(name, str) or not (name in generative or (name.endswith(".json") and os.path.isfile(name))):
        missing = " (no such card file)" if isinstance(name, str) and name.endswith(".json") else ""
        mixtures = ", ".join(repr(f"{MIXTURE}_{s}") for s in sorted(compare.BENCHMARK_SETTINGS))
        raise ValueError(f"unknown teacher {name!r}{missing}: name must be a shipped teacher ({', '.join(generative)}), "
                         f"the path of a teacher card NAME.json, or {MIXTURE!r} (the Gaussian-mixture benchmark; "
                         f"also {mixtures})")
    if name.endswith(".json"):
        with open(name) as f:
            card = json.load(f)
        model = teachers.load_teacher_from_card(name)
    else:
        model, card = teachers.load_teacher(name), teachers.teacher_card(name)
    num_classes = card.get("net", {}).get("num_classes")
    if guidance_scale != 1.0:
        if num_classes is None:
            raise ValueError(f"guidance_scale={guidance_scale} needs a class-conditional teacher; {name!r} is "
                             f"unconditional")
        model = nets.guided(model, guidance_scale, null_label=num_classes)
    task = Task(name, model, teachers.sample_shape(card), 0.0, 0.0, num_classes=num_classes, data_range=data_range,
                dataset=card.get("config", {}).get("dataset", "digits"), card=card)
    return _with_interval(task, edm_interval, {})


def _with_interval(task: Task, edm_interval: Optional[bool], default: dict) -> Task:
    from jaxsample.compare import edm_interval as edm

    path = task.model.path
    interval = edm(path) if edm_interval else ({} if edm_interval is False else default)
    return dataclasses.replace(task, t_start=interval.get("t_start", path.t_max),
                               t_end=interval.get("t_end", path.t_min))


#: The config fields :func:`task_from_config` reads (when present) and the options they set.
_CONFIG_FIELDS = ("guidance_scale", "edm_interval", "setting", "dim", "num_components", "data_seed", "data_range")


def task_from_config(config: Any, **overrides) -> Task:
    """:func:`load_task` for an experiment config: ``config.teacher`` (empty: the mixture) and
    whichever of the options ``guidance_scale``, ``edm_interval``, ``setting``, ``dim``,
    ``num_components``, ``data_seed`` and ``data_range`` the config has; ``overrides`` win."""
    get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
    options = {k: get(k) for k in _CONFIG_FIELDS if get(k) is not None}
    options.update(overrides)
    return load_task(get("teacher") or MIXTURE, **options)
