"""Which protocol message a TensorBoard scalar tag becomes: an ordered table of regular expressions.

The first rule whose pattern matches the *whole* tag wins. A target is ``loss``, ``metric/<name>``,
``grad_norm/<layer>`` or ``ignore``; ``{name}`` in a target is the pattern's ``name`` group (or the
whole tag), sanitised into one address segment. Rules given by the user come before the defaults.

>>> table = TagTable.default()
>>> [table.target(t) for t in ("train/loss", "epoch_loss", "lr-SGD", "grad_norm/features/0", "val/acc")]
['loss', 'loss', 'metric/lr', 'grad_norm/features.0', 'metric/val_accuracy']
>>> table.target("grad_2.0_norm_total"), table.target("grad_2.0_norm/fc1.weight")
('metric/grad_norm', 'grad_norm/fc1.weight')
>>> [table.target(t) for t in ("train/accuracy", "val/loss", "val/accuracy", "val/f1", "train/f1", "epoch_accuracy")]
['metric/accuracy', 'metric/val_loss', 'metric/val_accuracy', 'metric/val_f1', 'metric/f1', 'metric/accuracy']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import TrainsoundError
from ..wire.protocol import sanitize

__all__ = ["DEFAULT_RULES", "TagTable", "TagTableError"]

_VAL = r"(?:val|valid|validation|eval)"

#: (pattern, target): the defaults, in order. Loss tags of PyTorch scripts, Keras' TensorBoard
#: callback (``epoch_loss``, ``batch_loss``), Lightning (``train_loss``, ``lr-<Optimizer>``,
#: ``grad_2.0_norm/<param>``) and the HF Trainer (``train/loss``, ``train/learning_rate``, ``train/grad_norm``).
DEFAULT_RULES: tuple[tuple[str, str], ...] = (
    (r"(?:train[/_.])?(?:epoch_|batch_)?loss|loss[/_.]train|Loss/train", "loss"),
    (r"(?:train[/_.])?(?:epoch_|batch_)?(?:lr|learning_rate)(?:-.*)?|lr-.*", "metric/lr"),
    (r"(?:train[/_.])?grad_norm|grad_[0-9.]+_norm_total|gradients?/(?:global|total)_norm", "metric/grad_norm"),
    (r"(?:grad_norm|gradients?|grad_[0-9.]+_norm)/(?P<name>.+?)(?:/norm)?", "grad_norm/{name}"),
    (r"(?:train[/_.])?loss_scale", "metric/loss_scale"),
    # Accuracy and validation tags, to the metric names the bridge's built-in mapping sounds (docs/mapping.md,
    # "Metric names"): ``train/accuracy`` → ``accuracy``, ``val/loss`` → ``val_loss``, ``val/acc`` → ``val_accuracy``;
    # any other ``val/<x>`` → ``val_<x>`` and ``train/<x>`` → ``<x>``, Keras' names for them.
    (r"(?:train[/_.])?(?:epoch_|batch_)?acc(?:uracy)?|acc(?:uracy)?[/_.]train", "metric/accuracy"),
    (rf"{_VAL}[/_.](?:epoch_)?acc(?:uracy)?|acc(?:uracy)?[/_.]{_VAL}", "metric/val_accuracy"),
    (rf"{_VAL}[/_.](?:epoch_)?loss|(?:Loss|loss)[/_.]{_VAL}", "metric/val_loss"),
    (rf"{_VAL}[/_.](?P<name>.+)", "metric/val_{name}"),
    (r"train[/_.](?P<name>.+)", "metric/{name}"),
    (r"(?P<name>.+)", "metric/{name}"),
)

_KINDS = ("loss", "metric/", "grad_norm/", "ignore")


class TagTableError(TrainsoundError, ValueError):
    """A mapping rule that cannot be used; the message names it."""


@dataclass(frozen=True)
class TagTable:
    """An ordered, validated list of ``(compiled pattern, target)`` rules."""

    rules: tuple[tuple[re.Pattern[str], str], ...]

    @classmethod
    def from_rules(cls, rules: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> TagTable:
        """Validate ``(pattern, target)`` pairs.

        >>> TagTable.from_rules([("acc", "metrc/acc")])
        Traceback (most recent call last):
        ...
        trainsound.bridge.tb.tags.TagTableError: --map acc=metrc/acc: target must be loss, metric/<name>, ...
        """
        compiled = []
        for pattern, target in rules:
            where = f"--map {pattern}={target}"
            if not (target in ("loss", "ignore") or (target.startswith(("metric/", "grad_norm/"))
                                                     and target.count("/") == 1 and target.split("/")[1])):
                raise TagTableError(f"{where}: target must be loss, metric/<name>, grad_norm/<name> or ignore")
            try:
                compiled.append((re.compile(pattern), target))
            except re.error as err:
                raise TagTableError(f"{where}: bad pattern: {err}") from None
        return cls(tuple(compiled))

    @classmethod
    def default(cls, extra: list[tuple[str, str]] | None = None) -> TagTable:
        """The user's rules (``--map TAG=TARGET``) first, then :data:`DEFAULT_RULES`."""
        return cls.from_rules([*(extra or []), *DEFAULT_RULES])

    def target(self, tag: str) -> str:
        """The protocol path (after ``/nn/<run>/``) for ``tag``, or ``ignore``."""
        for pattern, target in self.rules:
            m = pattern.fullmatch(tag)
            if m is None:
                continue
            if "{name}" not in target:
                return target
            groups = m.groupdict()
            name = groups.get("name") or tag
            return target.replace("{name}", sanitize(name))
        return "metric/" + sanitize(tag)


def parse_map(text: str) -> tuple[str, str]:
    """``"PATTERN=TARGET"`` (a ``--map`` value) → ``(pattern, target)``.

    >>> parse_map("my_loss=loss")
    ('my_loss', 'loss')
    """
    pattern, sep, target = text.rpartition("=")
    if not sep or not pattern:
        raise TagTableError(f"--map {text}: want PATTERN=TARGET, e.g. --map 'my_loss=loss'")
    return pattern, target
