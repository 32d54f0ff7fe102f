"""The held-out benchmark: image classifiers that meta-training never samples. Frozen: a change to a model makes a new
:data:`HELDOUT_VERSION` (results of different versions do not compare).

The broad meta-training distribution of ``configs/general.yaml`` draws

* MLPs on MNIST and Fashion-MNIST: 1 to 3 hidden layers of 16 to 256 units (16, 32, 64, 128, 256), sigmoid, tanh,
  ReLU or GELU;
* CNNs on MNIST, Fashion-MNIST and CIFAR-10: 1 to 3 conv layers of 8 to 64 channels, with or without BatchNorm,
  max- or average-pooling, ReLU or GELU, and a linear output layer on the flattened features;
* STNs on affNIST-style digits;
* batch sizes 32 to 512 and horizons of 100 to 1,000 steps.

Every model below lies outside that distribution in its network or its data, whatever the seed
(``tests/test_heldout_benchmark.py`` checks each against the families' :meth:`can_sample`): a depth, width or channel
count beyond the sampled ones, an activation never sampled (SiLU, ELU), an architecture never sampled (a dense hidden
layer after the convolutions, a global-average-pooling head), MLPs on CIFAR-10, or a batch size outside 32 to 512.
Several also train longer than any meta-training horizon (up to 2,000 steps), which doubles as the divergence check.

Example:
    >>> [m.name for m in HELDOUT_MODELS][:2]
    ['fmnist_mlp_4x128_relu', 'mnist_mlp_512_tanh']
    >>> model("cifar10_allconv_b64").steps
    2000
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

#: version of :data:`HELDOUT_MODELS` (the date it was frozen); recorded in every ``heldout.json``
HELDOUT_VERSION = "2026-12-05"


@dataclass(frozen=True)
class HeldOutModel:
    """One held-out problem: an :class:`~l2l_torch.tasks.image_classification.ImageClassificationFamily` (its
    instances differ by seed: weights and batch order) trained for ``steps`` steps.

    Attributes:
        name: short name (``--models``).
        dataset, model, hidden, activation, channels, batchnorm, pooling, batch_size: the family's arguments.
        steps: optimizee steps of every run (tuning and evaluation).
        outside: why meta-training never samples it (one phrase).
    """

    name: str
    dataset: str
    model: str
    batch_size: int
    steps: int
    outside: str
    hidden: tuple[int, ...] = ()
    activation: str = "relu"
    channels: tuple[int, ...] = ()
    batchnorm: bool = True
    pooling: str = "max"

    def config(self) -> dict[str, Any]:
        """The configuration in the form of the families' ``config_of`` (for ``can_sample``)."""
        cfg = {"model": self.model, "dataset": self.dataset, "hidden": list(self.hidden), "activation": self.activation,
               "batch_size": self.batch_size}
        if self.model == "cnn":
            cfg.update(channels=list(self.channels), batchnorm=self.batchnorm, pooling=self.pooling)
        return cfg

    def family(self, data_dir: str | None = None, subset: int | None = None, train_eval_size: int = 10_000):
        """The task family of this model (data loaded when first sampled)."""
        from l2l_torch.tasks.image_classification import ImageClassificationFamily

        cnn = {"channels": list(self.channels), "batchnorm": self.batchnorm, "pooling": self.pooling}
        return ImageClassificationFamily(dataset=self.dataset, data_dir=data_dir, model=self.model,
                                         hidden=list(self.hidden) or None, activation=self.activation,
                                         batch_size=self.batch_size, subset=subset, train_eval_size=train_eval_size,
                                         **(cnn if self.model == "cnn" else {}))

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        if self.model != "cnn":
            d = {k: v for k, v in d.items() if k not in ("channels", "batchnorm", "pooling")}
        return d


#: the held-out models (frozen at :data:`HELDOUT_VERSION`)
HELDOUT_MODELS: tuple[HeldOutModel, ...] = (
    HeldOutModel("fmnist_mlp_4x128_relu", "fashion_mnist", "mlp", 128, 1000, "4 hidden layers (sampled: 1-3)",
                 hidden=(128, 128, 128, 128), activation="relu"),
    HeldOutModel("mnist_mlp_512_tanh", "mnist", "mlp", 64, 500, "width 512 (sampled: 16-256)",
                 hidden=(512,), activation="tanh"),
    HeldOutModel("cifar10_mlp_256x128_relu", "cifar10", "mlp", 256, 1000, "an MLP on CIFAR-10 (MLPs: MNIST, FMNIST)",
                 hidden=(256, 128), activation="relu"),
    HeldOutModel("fmnist_mlp_64_sigmoid_b16", "fashion_mnist", "mlp", 16, 2000,
                 "batch size 16 (sampled: 32-512); 2,000 steps", hidden=(64,), activation="sigmoid"),
    HeldOutModel("mnist_mlp_128x64_silu_b1024", "mnist", "mlp", 1024, 300,
                 "SiLU (never sampled) and batch size 1,024", hidden=(128, 64), activation="silu"),
    HeldOutModel("cifar10_cnn_4conv_bn", "cifar10", "cnn", 128, 1000, "4 conv layers (sampled: 1-3)",
                 activation="relu", channels=(32, 32, 64, 64), batchnorm=True, pooling="max"),
    HeldOutModel("fmnist_cnn_128_avg_elu", "fashion_mnist", "cnn", 64, 500,
                 "128 channels (sampled: 8-64) and ELU (never sampled)", activation="elu", channels=(128,),
                 batchnorm=False, pooling="avg"),
    HeldOutModel("fmnist_convdense", "fashion_mnist", "convdense", 128, 800,
                 "a dense hidden layer after 3 conv layers (sampled CNNs have none)", hidden=(20,)),
    HeldOutModel("cifar10_allconv_b64", "cifar10", "conv", 64, 2000,
                 "a global-average-pooling head (sampled CNNs: a linear layer on the features); 2,000 steps"),
)


def model(name: str) -> HeldOutModel:
    """The held-out model ``name``; a ValueError lists the names when there is none."""
    for m in HELDOUT_MODELS:
        if m.name == name:
            return m
    raise ValueError(f"unknown held-out model {name!r}; known: {', '.join(m.name for m in HELDOUT_MODELS)}")


def card(result: dict[str, Any], source: str) -> dict[str, Any]:
    """The held-out part of a shipped optimizer's model card: which models ran (and which did not), the target and
    verdict counts, the models it did not train at all, and every model where the optimizer is not better than a
    tuned reference, with its figures. A run that tuned the optimizer's ``lr`` per model (``--tune-learned-lr``)
    also gives the grid (``lr_grid``) and the ``lr`` chosen for each model (``chosen_lr``); a run that adapted it
    online (``--hypergradient``) gives its rate (``hypergradient_beta``) and the median final ``lr`` factor of each
    model's runs (``median_final_lr_factor``).
    ``result``: a ``heldout.json`` (:mod:`l2l_torch.benchmark`); ``source``: its folder."""
    comps = result["comparisons"]
    run = list(result["models"])
    rows = []
    for name, r in result["models"].items():
        verdicts = {c["reference"]: c["verdict"] for c in comps if c["model"] == name}
        if r["target_met"] and all(v == "better" for v in verdicts.values()):
            continue
        rows.append({"model": name, "ratio_to_adam_tuned": r["ratio_to_adam_tuned"], **{f"vs_{k}": v for k, v in
                                                                                        verdicts.items()}})
    refs = dict.fromkeys(c["reference"] for c in comps)
    counts = {ref: {v: sum(c["verdict"] == v and c["reference"] == ref for c in comps)
                    for v in ("better", "level", "worse", "diverged")} for ref in refs}
    tuned = {}
    if result.get("learned_lr_grid"):
        tuned = {"lr_grid": result["learned_lr_grid"],
                 "chosen_lr": {n: r["learned_lr"] for n, r in result["models"].items()}}
    if result.get("hypergradient") is not None:
        tuned = {"hypergradient_beta": result["hypergradient"],
                 "median_final_lr_factor": {n: round(statistics.median(f[0] for f in r["hypergradient_factors"]), 3)
                                            for n, r in result["models"].items()}}
    return {"version": result["version"], "source": source, "seeds": result["seeds"],
            "tune_trials": result.get("tune_trials"), **tuned, "models_run": run,
            "models_not_run": [m.name for m in HELDOUT_MODELS if m.name not in run],
            "target_ratio": result["target_ratio"], "target_met": result["summary"]["target_met"],
            "did_not_train": [n for n, r in result["models"].items() if r.get("learned_did_not_train")],
            "verdicts": counts, "not_better_on": rows}
