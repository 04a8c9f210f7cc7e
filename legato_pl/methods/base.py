"""The method plug-in interface and the self-describing artifact every method writes.

A method decides what trains on top of the frozen base UNet. Subclass :class:`UnlearningMethod` with
an ``__init__(unet, **options)`` that attaches it; a config selects it the way LightningCLI selects an
optimizer (``method: {class_path: my_pkg.MyMethod, init_args: {...}}``), and a ``name`` registers a
short form (``method: lora``). The strength sweeps, ``python -m legato_pl sample`` and the
benchmarks then work with it without knowing it: they read the artifact it saves.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn

from legato_pl.errors import LegatoInputError
from legato_pl.methods.artifact import FORMAT, FORMAT_VERSION, METHOD_FILE, read_method_file
from legato_pl.methods.card import card_from_method, read_model_card, write_model_card
from legato_pl.methods.stack import STACK_DIR, verified_stack, write_stack
from legato_pl.strength import StrengthKnob

DEFAULT_STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
_REGISTRY: dict[str, type[UnlearningMethod]] = {}


def unet_fingerprint(unet: nn.Module) -> str:
    """A short hash of the UNet's architecture config (private ``_`` keys left out)."""
    config = {k: v for k, v in dict(getattr(unet, "config", {})).items() if not k.startswith("_")}
    blob = json.dumps({"class": type(unet).__name__, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class UnlearningMethod(StrengthKnob, nn.Module):
    """What an unlearning run trains, and the strength knob of the trained result.

    Subclasses implement ``__init__(unet, **options)`` (attach to the UNet, trainable), :meth:`teacher`,
    :meth:`set_strength` (0 = the base model exactly), :meth:`save_weights` and :meth:`load_weights`,
    and :meth:`options` when they take any. The UNet is referenced, never owned: it is not in this
    module's state.
    """

    name: ClassVar[str] = ""
    stackable: ClassVar[bool] = False  # a later request may train on top of this one (frozen, at strength 1)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, unet: nn.Module):
        super().__init__()
        object.__setattr__(self, "_unet", unet)
        self._strength = 1.0
        # earlier removal requests this one is trained on top of (a stack, see methods/stack.py): their artifact
        # directories, copied into this artifact by save(), and once loaded the methods themselves (frozen, at 1)
        self.on_top_of: list[str] = []
        self.earlier: list[UnlearningMethod] = []

    # building and training ----------------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """JSON-able keyword arguments of ``__init__`` that rebuild this method (saved in the artifact)."""
        return {}

    @contextmanager
    def teacher(self) -> Iterator[nn.Module]:
        """The frozen teacher network (the base, plus anything earlier requests added)."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What this method trains (by structure, whatever their ``requires_grad``): its own parameters
        unless the method trains parameters that live in the UNet."""
        return list(self.parameters())

    def trajectory_states(self) -> dict[str, Tensor]:
        return {}

    def stop_recording_states(self) -> None:
        """A later request is stacked on this one: nothing reads its trajectory any more (ODE methods stop keeping
        the states they visit)."""

    # the strength knob (``strength``, ``at_strength`` from StrengthKnob) -----------------------------
    def _apply_strength(self, value: float) -> None:
        self.set_strength(value)

    def set_strength(self, value: float) -> None:
        """Apply strength ``value`` in [0, 1] to the UNet: 0 is the base model exactly, 1 the trained one."""
        raise NotImplementedError

    def strength_grid(self) -> list[float]:
        """Strengths a sweep visits by default."""
        return list(DEFAULT_STRENGTHS)

    mergeable: ClassVar[bool] = False  # merge() folds the method into the UNet's weights exactly

    def merge(self) -> nn.Module:
        """Fold the method, at its current strength, into the UNet's own weights and detach it: the
        result is a plain diffusers UNet (nothing left to remove). Only where that is exact."""
        raise LegatoInputError(f"method {self.name or type(self).__name__!r} cannot be merged into the UNet's weights")

    # artifact -------------------------------------------------------------------------------------
    def save_weights(self, path: Path) -> None:
        raise NotImplementedError

    def load_weights(self, path: Path) -> None:
        raise NotImplementedError

    def warm_start(self, path: str | Path) -> list[str]:
        """Continue from an earlier request's weights (one request of this method, options and base): the next
        artifact replaces it, so the deployed model stays one request whatever their number (a stack grows by one
        request each). Returns the people it forgot, who must stay in the new request's ``forget``."""
        meta = read_method_file(path)
        mine = json.loads(json.dumps(self.options()))  # as the artifact stores them (tuples as lists)
        if meta.get("method") != self.name or meta.get("options", {}) != mine:
            raise LegatoInputError(f"warm_start: {path} is a {meta.get('method')} artifact with options "
                                   f"{meta.get('options', {})}, not {self.name} with {mine}")
        if meta.get("stack"):
            raise LegatoInputError(f"warm_start: {path} is a stack of {len(meta['stack']) + 1} requests; start from one "
                                   "request (or stack on it with previous_adapters)")
        _check_base(meta, self._unet, type(self), path)
        self.load_weights(Path(path))
        for p in self.trainable_parameters():
            p.requires_grad_(True)
        return list(read_model_card(path).get("forget") or [])

    def save(self, path: str | Path, base_model: str | None = None, forget: list[str] | None = None,
             training: dict[str, Any] | None = None) -> Path:
        """Write the weights, ``legato_method.json`` (kind, options, base UNet, version, the stack of earlier
        requests it was trained on top of) and the model card ``README.md`` (base model, the ``forget`` people,
        method, strength, ``training`` settings) into ``path``."""
        import shutil

        from legato_pl import __version__

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.save_weights(path)
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "method": self.name,
                "class": f"{type(self).__module__}:{type(self).__qualname__}", "options": self.options(),
                "base_model": {"path": base_model, "unet_class": type(self._unet).__name__,
                               "unet_fingerprint": unet_fingerprint(self._unet)},
                "legato_pl_version": __version__}
        if self.on_top_of:
            meta["stack"] = write_stack(self.on_top_of, path)
        else:
            shutil.rmtree(path / STACK_DIR, ignore_errors=True)  # a stack left by an earlier save is not this one's
        (path / METHOD_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        write_model_card(path, card_from_method(meta, forget, training))
        return path


MethodFactory = Callable[[nn.Module], UnlearningMethod]  # a method class, or one with its options bound


def _registered() -> dict[str, type[UnlearningMethod]]:
    """Every registered method by name, the built-in ones included."""
    import legato_pl.methods  # noqa: F401  (importing the package registers the built-in methods)

    return _REGISTRY


def method_class(name: str) -> type[UnlearningMethod]:
    """The registered method called ``name``."""
    if name not in _registered():
        raise LegatoInputError(f"method must be one of {tuple(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


def build_method(method: str | MethodFactory | dict[str, Any], unet: nn.Module) -> UnlearningMethod:
    """Attach ``method`` to ``unet``: a registered name (default options), a factory taking the UNet (a
    method class, ``functools.partial(LoRA, rank=8)``, what LightningCLI builds from a class_path), or
    the plain ``{"class_path": ..., "init_args": {...}}`` that :func:`method_spec` writes."""
    if isinstance(method, dict):
        cls = _import_class(method.get("class_path", ""))
        return build_method(functools.partial(cls, **method.get("init_args", {})), unet)
    if isinstance(method, str):  # a registered name, or a class path given without init_args
        factory = _import_class(method) if "." in method else method_class(method)
    else:
        factory = method
    if not callable(factory):
        raise LegatoInputError(f"method must be a registered name or a callable taking the UNet, got {method!r}")
    built = factory(unet)
    if not isinstance(built, UnlearningMethod):
        raise LegatoInputError(f"method factory {method!r} returned {type(built).__name__}, not an UnlearningMethod")
    return built


def method_spec(method: UnlearningMethod) -> dict[str, Any]:
    """``{"class_path", "init_args"}`` that rebuilds ``method`` (plain data, as in a LightningCLI config)."""
    return {"class_path": f"{type(method).__module__}.{type(method).__qualname__}", "init_args": method.options()}


def load_method(unet: nn.Module, path: str | Path, strength: float = 1.0) -> UnlearningMethod:
    """Attach the artifact in ``path`` (any method) to ``unet`` at ``strength``: 0 is the model it was trained on
    (the base exactly, or base + the earlier requests of a stack). A stack loads whole: its earlier requests first,
    frozen at strength 1 (``method.earlier``), so ``unet`` becomes the deployed model."""
    meta = read_method_file(path)
    # a registered name first; else the class the artifact names (a plug-in not imported yet)
    cls = _registered().get(meta["method"]) or _import_class(meta.get("class", meta["method"]))
    _check_base(meta, unet, cls, path)
    earlier = [load_method(unet, Path(path) / e["dir"], strength=1.0) for e in verified_stack(Path(path), meta)]
    for part in earlier:
        part.stop_recording_states()
    method = cls(unet, **meta.get("options", {}))
    method.earlier, method.on_top_of = earlier, [str(Path(path) / e["dir"]) for e in meta.get("stack", [])]
    method.load_weights(Path(path))
    method.requires_grad_(False)
    for p in method.trainable_parameters():
        p.requires_grad_(False)
    method.strength = strength
    return method


def _check_base(meta: dict[str, Any], unet: nn.Module, cls: type[UnlearningMethod], path: str | Path) -> None:
    saved = meta.get("base_model", {}).get("unet_fingerprint")
    if saved and saved != unet_fingerprint(unet) and not cls.stackable:  # ODE adapters name the mismatching stage
        raise LegatoInputError(f"{path} was trained on another UNet ({meta['base_model'].get('unet_class')} "
                               f"{saved}), not on this {type(unet).__name__} {unet_fingerprint(unet)}")


def _import_class(spec: str) -> type[UnlearningMethod]:
    """``package.module:Class`` or ``package.module.Class``."""
    module, _, qualname = spec.partition(":") if ":" in spec else spec.rpartition(".")
    try:
        obj = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError):
        raise LegatoInputError(f"method class {spec} cannot be imported; is its package installed?") from None
    return obj
