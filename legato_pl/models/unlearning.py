"""UnlearningModule: a frozen diffusers UNet, a trainable unlearning method, and the LEGATO/GUIDE objective."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from legato_pl.adapters import ODEAdapters
from legato_pl.errors import LegatoInputError
from legato_pl.methods import MethodFactory, UnlearningMethod, build_method, load_method, method_spec
from legato_pl.methods.stack import stack_parts
from legato_pl.models.base import downsampling_factor, load_base_model
from legato_pl.models.diffusion import BatchedForward, add_noise, diffusion_target, micro_step, step_generator
from legato_pl.objectives import (
    FORGET_TARGETS,
    ConditionAdversary,
    adjacent_embeddings,
    forget_target,
    preservation,
    trajectory_consistency,
)

ADVERSARIAL_INITS = ("name", "unconditional")
RETAIN_TEACHERS = ("stack", "base")
VALIDATION_NOISE_STEP = 10**9  # validation batch i draws the noise of "step" 10**9 + i: never a training step


BASE_DTYPES = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
               "fp32": None, "float32": None}


class UnlearningModule(pl.LightningModule):
    """Make a base model (class-conditional or text-to-image) forget identities by training what ``method``
    adds to its frozen UNet (ODE adapters by default).

    The teacher is the frozen base as the method exposes it (:meth:`UnlearningMethod.teacher`): for adapter
    and LoRA methods the same UNet with them switched off; ``full`` trains the UNet itself and keeps a frozen copy.

    Args:
        base_model: a base model directory (diffusers pipeline + ``identities.json``) or a Stable Diffusion
            layout directory / hub id.
        method: what trains, as LightningCLI selects an optimizer: a class_path with its init_args
            (``{class_path: legato_pl.methods.LoRA, init_args: {rank: 8}}``), any callable that takes
            the UNet and returns an :class:`~legato_pl.methods.UnlearningMethod` (a method class,
            ``functools.partial(Legato, adapter=...)``), or a registered name with default options:
            ``legato`` (ODE adapters; ``init_args.adapter`` is the :class:`~legato_pl.adapters.ODEAdapterConfig`),
            ``residual`` (one residual adapter step), ``lora`` (peft LoRA), ``full`` (the whole UNet
            against a frozen teacher copy), or your own.
        forget_target: ``anchor`` (match the anchor condition: the null class, or ``anchor_prompt`` for a text
            model), ``other`` (match another person's condition: a batch's retain person, so a different one each
            step), ``negative`` (extrapolate away from the person, weight ``eta``) or ``untrained`` (match the base
            under a seeded fresh condition per person, as a model retrained without them holds their condition:
            a fresh class row, or for a text model a prompt naming a made-up person).
        w_forget, w_retain, w_trajectory, w_adjacency: weights of the objective terms.
        w_stranger: weight of the stranger term: another person's noised photo under the forgotten person's
            condition is denoised as the teacher denoises it under that person's own condition, so the condition
            stops pulling towards the person and follows whoever the sample becomes (a plausible stranger, not
            the noise the forget target alone leaves where it was never trained). 0 turns it off.
        w_adversarial: weight of the adversarial term (AdvUnlearn / Receler style): per forgotten person a condition
            is inverted against the current student, starting from the person's own condition input
            (``adversarial_steps`` signed-gradient steps of size ``adversarial_lr`` per training step,
            warm-started, as the audit's condition inversion does), and the
            person's photos under it get the forget target too, so the person cannot be drawn back by another
            input. 0 turns it off. Measured on LFW (docs/results.md): unguarded it disturbs the other people; not a default.
        adversarial_init: where the inner attack starts: ``name`` (the person's own condition input, as AdvUnlearn
            starts from the concept's prompt) or ``unconditional`` (the null class or empty prompt, "nobody in
            particular", where the audit's condition inversion starts: an attacker who does not know the name's input;
            not ``null``, which YAML and the CLI read as None).
        w_adversarial_retain: weight of the adversarial term's guard: another person's noised photo under the
            inverted condition is denoised as the teacher denoises it under that condition, so the push away from
            the person under it does not move whoever else that condition draws. Only with an adversarial term.
        w_untrained_path: weight of the untrained-path term: the base draws ``untrained_path_samples`` strangers per
            forgotten person from the ``untrained`` target's seeded fresh condition (a class row, or a made-up name
            for a text model: Concept-Ablation style) once, and noised they are denoised under the person's
            condition as the base denoises them under the fresh one, so the person's condition follows its sampling
            path (what a model retrained without the person draws), not only the person's photos. 0 turns it off.
        w_adversarial_path: weight of the adversarial path term: under the condition the inner attack inverts (as for
            ``w_adversarial``), the fresh row's strangers (the untrained-path bank) are denoised as the base denoises
            them under the fresh row, so an input that still draws the person is sent along a stranger's sampling
            path rather than pushed away from the person's photos (which carry them under any condition). 0 turns it off.
        adjacency_alpha_max: adjacency embeddings are ``e_f + alpha * unit(e_r - e_f)``, ``alpha ~ U(0, max)``.
        lr: AdamW learning rate of the method's trainable parameters.
        output_dir: where the method's artifact is written at the end of fit (default ``<log_dir>/adapters``).
        seed: seeds the per-step noise, timesteps and adjacency draws (a function of seed, step, rank).
        base_dtype: ``bf16`` / ``fp16``: the frozen UNet, text encoder(s) and VAE in half precision while what trains
            stays fp32 (about half the memory of the frozen model); combine with ``precision: 32`` or
            ``bf16-mixed``, not ``*-true`` (that casts the trained parameters too).
        previous_adapters: artifact directories of earlier removal requests, in the order they were deployed.
            They are loaded at strength 1 and frozen, so base + earlier requests is the new teacher and the new
            method trains on top of them (stackable methods only). The new artifact holds copies of them (a
            stack is one artifact): ``load_method`` on it alone gives the deployed model.
        retain_teacher: what a stacked request holds the people it keeps to (the retain terms and the early stop's
            "before"): ``stack`` (base + earlier requests, as deployed) or ``base`` (the base alone, for everyone no
            earlier request forgot; the people earlier requests forgot keep the stack, so they stay forgotten). With
            ``stack`` each request keeps the others within its bar of the stack it trains on, so a long stack's
            drifts add up; ``base`` holds every request to the base. No effect without ``previous_adapters``.
        warm_start: an earlier request's artifact (same method and options) to continue from instead of stacking
            on it: the new artifact replaces it, so the deployed model stays one request. ``forget`` must list
            the people it forgot too (everyone else is retained, and would be brought back). The fit starts
            from that request, not from the base.
    """

    def __init__(
        self,
        base_model: str,
        method: str | MethodFactory = "legato",
        forget_target: str = "anchor",
        eta: float = 1.0,
        w_forget: float = 1.0,
        w_retain: float = 1.0,
        w_trajectory: float = 0.1,
        w_adjacency: float = 0.5,
        w_stranger: float = 0.0,
        w_adversarial: float = 0.0,
        w_adversarial_retain: float = 0.0,
        w_untrained_path: float = 0.0,
        w_adversarial_path: float = 0.0,
        untrained_path_samples: int = 16,
        adversarial_steps: int = 2,
        adversarial_lr: float = 1e-2,
        adversarial_init: str = "name",
        adjacency_alpha_max: float = 1.0,
        lr: float = 1e-3,
        output_dir: str | None = None,
        seed: int = 0,
        previous_adapters: list[str] | None = None,
        retain_teacher: str = "stack",
        prompt_templates: list[str] | None = None,
        anchor_prompt: str = "a person",
        base_dtype: str | None = None,
        warm_start: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        if forget_target not in FORGET_TARGETS:
            raise LegatoInputError(f"forget_target must be one of {FORGET_TARGETS}, got {forget_target!r}")
        for name in ("w_forget", "w_retain", "w_trajectory", "w_adjacency", "w_stranger", "w_adversarial",
                     "w_adversarial_retain", "w_untrained_path", "w_adversarial_path", "adjacency_alpha_max",
                     "adversarial_steps"):
            if getattr(self.hparams, name) < 0:
                raise LegatoInputError(f"{name} must be >= 0, got {getattr(self.hparams, name)}")
        if w_adversarial_retain > 0 and w_adversarial == w_adversarial_path == 0:
            raise LegatoInputError("w_adversarial_retain guards an adversarial term: set w_adversarial or "
                                   "w_adversarial_path > 0 too")
        if warm_start and previous_adapters:
            raise LegatoInputError("warm_start replaces an earlier request, previous_adapters stacks on them: give one")
        if retain_teacher not in RETAIN_TEACHERS:
            raise LegatoInputError(f"retain_teacher must be one of {RETAIN_TEACHERS}, got {retain_teacher!r}")
        if adversarial_lr <= 0:
            raise LegatoInputError(f"adversarial_lr must be > 0, got {adversarial_lr}")
        if adversarial_init not in ADVERSARIAL_INITS:
            raise LegatoInputError(f"adversarial_init must be one of {ADVERSARIAL_INITS}, got {adversarial_init!r}")
        base = load_base_model(base_model, prompt_templates, anchor_prompt)
        if base.conditioning is None:
            raise LegatoInputError(
                f"{base_model} has an unconditional UNet; UnlearningModule needs class- or text-conditional identities"
            )
        self.unet = base.unet.requires_grad_(False).eval()
        half = self._half = BASE_DTYPES.get(base_dtype, base_dtype) if base_dtype is not None else None
        if half is not None:
            if not isinstance(half, torch.dtype):
                raise LegatoInputError(f"base_dtype must be one of {', '.join(BASE_DTYPES)}, got {base_dtype!r}")
            self.unet.to(half)
            base.conditioning.to(dtype=half)
        self.scheduler = base.scheduler
        self.identities = base.identities
        self.null_class = base.null_class
        self.conditioning = base.conditioning
        self._uses_bank = w_untrained_path > 0 or w_adversarial_path > 0  # the fresh row's strangers
        self._attacks = w_adversarial > 0 or w_adversarial_path > 0  # an inner attack inverts conditions
        if forget_target == "untrained" or self._uses_bank:  # refused here when the base has no fresh row
            self.conditioning.untrained(self.unet, torch.zeros(1, dtype=torch.long))
        if self._uses_bank and untrained_path_samples < 1:
            raise LegatoInputError(f"untrained_path_samples must be >= 1, got {untrained_path_samples}")
        self._untrained_bank: Tensor | None = None
        # earlier requests first: their hooks run before the new adapters' on every stage
        parts = stack_parts(previous_adapters or [])  # a missing, changed or repeated earlier request: refused here
        self._stack_forgot = sorted({name for _, entry in parts for name in entry.get("forget") or []})
        self.previous_adapters = nn.ModuleList(load_method(self.unet, path) for path in previous_adapters or [])
        for path, earlier in zip(previous_adapters or [], self.previous_adapters):
            if not earlier.stackable:
                raise LegatoInputError(f"previous_adapters: {path} is a {earlier.name or type(earlier).__name__} "
                                       "artifact; only ODE adapter requests (legato, residual) stack")
            earlier.stop_recording_states()
        self.method: UnlearningMethod = build_method(method, self.unet)
        if previous_adapters and not self.method.stackable:
            raise LegatoInputError(f"previous_adapters stack ODE adapters: {self.method_label} cannot train on top of them")
        self.method.on_top_of = [str(p) for p in previous_adapters or []]
        self.warm_forget = self.method.warm_start(warm_start) if warm_start else []
        if half is not None:
            if self.method.name == "full":
                raise LegatoInputError("base_dtype: the full fine-tune trains the UNet itself; it cannot stay frozen in "
                                       "half precision (use precision: bf16-mixed instead)")
            for p in self.method.trainable_parameters():  # what trains stays fp32 (diffusers' LoRA examples do so)
                p.data = p.data.float()
        self.register_buffer("label_map", torch.arange(len(self.identities)), persistent=False)
        self._index_stack_forgotten()
        self.strict_loading = False  # checkpoints hold the trainable state only

    @property
    def method_label(self) -> str:
        return self.method.name or type(self.method).__name__

    @property
    def adapters(self) -> ODEAdapters | None:
        """The ODE adapters of ODE methods (``legato`` / ``residual``); None otherwise. Every method's
        strength knob is ``self.method.strength``."""
        return getattr(self.method, "adapters", None)

    def _index_stack_forgotten(self) -> None:
        index = {n: i for i, n in enumerate(self.identities)}
        self.register_buffer("stack_forgotten", torch.tensor([index[n] for n in self._stack_forgot if n in index],
                                                             dtype=torch.long, device=self.device), persistent=False)

    def base_anchored(self, labels: Tensor) -> Tensor | None:
        """Which rows of ``labels`` (base class indices) are held to the base alone, not to the stack
        (``retain_teacher="base"`` on a stack: everyone no earlier request forgot); None when every row's teacher is
        the method's."""
        if self.hparams.retain_teacher != "base" or not len(self.previous_adapters):
            return None
        return ~torch.isin(labels, self.stack_forgotten.to(labels.device))

    @contextmanager
    def base_unet(self) -> Iterator[nn.Module]:
        """The shared UNet with this request's adapters and every earlier request's off: the base alone (a loaded
        stack's ``earlier`` parts are single requests: ``write_stack`` flattens them)."""
        with ExitStack() as off:
            for previous in self.previous_adapters:
                for part in (*previous.earlier, previous):
                    off.enter_context(part.teacher())
            yield off.enter_context(self.method.teacher())

    # setup -----------------------------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        root = self.trainer.strategy.root_device
        if self._half == torch.bfloat16 and root.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise LegatoInputError(f"base_dtype {self.hparams.base_dtype}: {torch.cuda.get_device_name(root)} has no "
                                   "bfloat16; use fp16")
        dm = self.trainer.datamodule
        if dm is None or not hasattr(dm, "class_names"):
            raise LegatoInputError(
                f"UnlearningModule needs a datamodule with class_names, forget and forget/retain batches "
                f"(e.g. legato_pl.data.IdentityDataModule); got {type(dm).__name__ if dm is not None else 'none'}"
            )
        self.bind_data(dm)

    def bind_data(self, dm: pl.LightningDataModule) -> None:
        """Check the datamodule against the base model and map its labels to base classes by name
        (called by ``setup``; call it yourself to drive :meth:`compute_losses` without a Trainer).
        A text-to-image base knows no fixed list: the data's names are its identities (named in prompts)."""
        cond = self.conditioning
        forget_missing = [] if cond.any_name else [n for n in getattr(dm, "forget", []) if n not in self.identities]
        if forget_missing:
            raise LegatoInputError(
                f"forget identity {forget_missing[0]!r} is not a class of the base model "
                f"{self.hparams.base_model} (classes: {', '.join(self.identities[:8])}...)"
            )
        kept_back = [n for n in self.warm_forget if n not in getattr(dm, "forget", [])]
        if kept_back:
            raise LegatoInputError(f"warm_start {self.hparams.warm_start} forgot {', '.join(kept_back)}: list them in "
                                   "forget too (everyone else is retained, and would be brought back)")
        cond.use_identities(list(dm.class_names), f"the data (not a class of the base model {self.hparams.base_model})")
        self.identities = cond.identities
        factor = downsampling_factor(self.unet) * self.conditioning.latent_factor
        if dm.image_size % factor:
            raise LegatoInputError(f"image_size {dm.image_size} must be a multiple of {factor} for this UNet")
        index = {n: i for i, n in enumerate(self.identities)}
        self.label_map = torch.tensor([index[n] for n in dm.class_names], device=self.device)
        forgotten = [index[n] for n in getattr(dm, "forget", [])]
        self.register_buffer("forget_classes", torch.tensor(forgotten, dtype=torch.long, device=self.device),
                             persistent=False)
        self._index_stack_forgotten()
        if self._attacks and getattr(self, "adversary", None) is None:
            own = self.hparams.adversarial_init == "name"  # else from the unconditional input, as the audit's inversion
            self.adversary = ConditionAdversary([cond.soft_init(self.unet, f if own else None) for f in forgotten],
                                                self.hparams.adversarial_steps, self.hparams.adversarial_lr).to(self.device)
        trainable = sum(p.numel() for p in self.method.trainable_parameters())
        frozen = sum(p.numel() for p in self.unet.parameters() if not p.requires_grad)
        rank_zero_info(f"{self.method_label}: trainable parameters {trainable:,}; frozen UNet parameters {frozen:,}")

    @override
    def train(self, mode: bool = True):
        super().train(mode)
        self.unet.eval()  # the base never switches to training behaviour (dropout off for teacher and student)
        return self

    @override
    def on_fit_start(self) -> None:
        self.conditioning.to(self.device)  # text encoder / VAE live outside the module's state
        # Lightning warns once, just before on_train_start, about modules in eval mode: the frozen UNet is on purpose
        self._warning_filters = warnings.filters[:]
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")

    @override
    def on_train_start(self) -> None:
        warnings.filters[:] = getattr(self, "_warning_filters", warnings.filters)

    # objective -------------------------------------------------------------------------------
    def compute_losses(self, batch: dict, noise_step: int | None = None) -> dict[str, Tensor]:
        """Every objective term for one forget/retain batch (one teacher and one student forward).

        Noise, timesteps and adjacency draws are seeded by ``(seed, noise_step)``, by default the global step.
        """
        h = self.hparams
        cond = self.conditioning
        yf, yr = self.label_map[batch["forget_labels"]], self.label_map[batch["retain_labels"]]
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self._trainer else (0, 1)
        step = self.global_step if noise_step is None else noise_step
        gen = step_generator(h.seed, step, self.device)
        lf = cond.to_latents(batch["forget_images"])
        xf, noise_f, tf = add_noise(self.scheduler, lf, gen, rank, world)
        xr, _, tr = add_noise(self.scheduler, cond.to_latents(batch["retain_images"]), gen, rank, world)
        dtype = next(self.unet.parameters()).dtype  # a half-precision frozen base takes its inputs in its dtype
        xf, xr = xf.to(dtype), xr.to(dtype)
        nf, nr = len(xf), len(xr)
        partner_index = torch.arange(nf, device=self.device) % nr
        alpha = torch.rand(nf * world, device=self.device, generator=gen)[rank::world] * h.adjacency_alpha_max

        def conditions(unet: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
            """Forget, retain, ∅, anchor and adjacent conditions as ``unet`` encodes them (the teacher's and
            the student's tables differ only when the method trains them, as the full fine-tune does)."""
            choice = torch.Generator().manual_seed(h.seed * 1_000_003 + step)  # the same prompts for both
            e_f, e_r = cond.encode(unet, yf, generator=choice), cond.encode(unet, yr, generator=choice)
            n = max(nf, nr)
            return e_f, e_r, cond.null(unet, n), cond.anchor(unet, n), adjacent_embeddings(e_f, e_r[partner_index], alpha)

        use_adj, use_stranger = h.w_adjacency > 0, h.w_stranger > 0
        use_adv, guard_adv, use_path = self._attacks, h.w_adversarial_retain > 0, self._uses_bank
        adv_forget, adv_path = h.w_adversarial > 0, h.w_adversarial_path > 0
        negative = h.forget_target == "negative"
        with torch.no_grad(), self.method.teacher() as teacher_unet:
            e_f, e_r, e_null, e_anchor, e_adj = conditions(teacher_unet)
            # the person's fresh row (a model retrained without them): the untrained target's and the path term's
            e_fresh = cond.untrained(teacher_unet, yf).to(e_f) if h.forget_target == "untrained" or use_path else None
        s_f, s_r, s_null, _, s_adj = conditions(self.unet)
        if use_adv or use_path:  # each forget row's index into the forgotten people
            rows = (yf[:, None] == self.forget_classes[None]).float().argmax(1)
        if use_adv:  # the person's inverted conditions, against the student as it is now
            if self.training and torch.is_grad_enabled():
                reduce = (lambda g: self.trainer.strategy.reduce(g, reduce_op="mean")) if self._trainer else (lambda g: g)
                self.adversary.attack(self.unet, cond, xf, tf, diffusion_target(self.scheduler, lf, noise_f, tf),
                                      rows, reduce)
            s_adv = self.adversary.conditions(self.unet, cond, rows).to(dtype)

        if use_path:  # a stranger the fresh row drew, noised (drawn after the others)
            bank = self.untrained_bank()
            pick = torch.randint(0, bank.shape[1], (nf * world,), device=self.device, generator=gen)[rank::world]
            xp, _, tp = add_noise(self.scheduler, bank[rows, pick], gen, rank, world)
            xp = xp.to(dtype)

        # teacher: same UNet, adapters off, one forward (and the base alone for the rows held to it)
        target = h.forget_target
        anchor_f = e_fresh if target == "untrained" else e_r[partner_index] if target == "other" else e_anchor[:nf]
        t_fwd = BatchedForward()
        t_fwd["forget"], t_fwd["retain"], t_fwd["retain_null"] = (xf, tf, anchor_f), (xr, tr, e_r), (xr, tr, e_null[:nr])
        if negative:  # the person's own prediction, which the negative target extrapolates away from
            t_fwd["forget_cond"] = (xf, tf, e_f)
            if use_adj:
                t_fwd["adjacency_cond"] = (xf, tf, e_adj)
        with torch.no_grad(), self.method.teacher() as teacher_unet:
            if adv_forget or guard_adv:  # the adversarial path's target is the fresh row's, below
                e_adv = self.adversary.conditions(teacher_unet, cond, rows).to(dtype)
                if adv_forget:
                    t_fwd["adversarial_cond"] = (xf, tf, e_adv)
                if guard_adv:  # another person's photo under the inverted condition, as the base denoises it
                    t_fwd["adversarial_retain"] = (xr[partner_index], tr[partner_index], e_adv)
            if use_path:  # the fresh row's stranger, as the base denoises it under the fresh row
                t_fwd["path"] = (xp, tp, e_fresh)
            teacher = t_fwd(lambda x, t, e: cond.predict(teacher_unet, x, t, e))
        anchored = self.base_anchored(yr)
        if anchored is not None and anchored.any():  # the others as the base alone predicts them
            held = anchored.nonzero().squeeze(1)
            b_fwd = BatchedForward()
            b_fwd["retain"], b_fwd["retain_null"] = (xr[held], tr[held], e_r[held]), (xr[held], tr[held], e_null[held])
            with torch.no_grad(), self.base_unet() as base_unet:
                base = b_fwd(lambda x, t, e: cond.predict(base_unet, x, t, e))
            for name, value in base.items():
                teacher[name] = teacher[name].index_copy(0, held, value)
        anchor = teacher["forget"]

        def pushed_from(name: str) -> Tensor:  # the forget target against the teacher's prediction ``name``
            return forget_target(anchor, teacher.get(name), target, h.eta)

        # student: adapters on, one forward
        s_fwd = BatchedForward()
        s_fwd["forget"], s_fwd["retain"], s_fwd["retain_null"] = (xf, tf, s_f), (xr, tr, s_r), (xr, tr, s_null[:nr])
        if use_adj:
            s_fwd["adjacency"] = (xf, tf, s_adj)
        if use_stranger:  # another person's photo under the forgotten condition
            s_fwd["stranger"] = (xr[partner_index], tr[partner_index], s_f)
        if adv_forget:  # the person's photo under the condition that still draws them
            s_fwd["adversarial"] = (xf, tf, s_adv)
        if guard_adv:
            s_fwd["adversarial_retain"] = (xr[partner_index], tr[partner_index], s_adv)
        if adv_path:  # the fresh row's stranger under that condition
            s_fwd["adversarial_path"] = (xp, tp, s_adv)
        if h.w_untrained_path > 0:  # the fresh row's stranger under the person's condition
            s_fwd["untrained_path"] = (xp, tp, s_f)
        student = s_fwd(lambda x, t, e: cond.predict(self.unet, x, t, e))

        losses = {
            "forget": preservation(student["forget"], pushed_from("forget_cond")),
            "retain": 0.5 * (preservation(student["retain"], teacher["retain"])
                             + preservation(student["retain_null"], teacher["retain_null"])),
            "trajectory": trajectory_consistency(self.method.trajectory_states().values()).to(self.device),
        }
        if use_adj:
            losses["adjacency"] = preservation(student["adjacency"], pushed_from("adjacency_cond"))
        if use_stranger:  # ... is denoised as the teacher denoises it under that person's own condition
            losses["stranger"] = preservation(student["stranger"], teacher["retain"][partner_index])
        if adv_forget:  # ... gets the forget target, as the name does
            losses["adversarial"] = preservation(student["adversarial"], pushed_from("adversarial_cond"))
        if guard_adv:  # ... while another person's photo under it is denoised as the base does
            losses["adversarial_retain"] = preservation(student["adversarial_retain"], teacher["adversarial_retain"])
        if adv_path:  # ... is denoised as the base denoises it under the fresh row
            losses["adversarial_path"] = preservation(student["adversarial_path"], teacher["path"])
        if h.w_untrained_path > 0:  # ... is denoised as the base denoises it under the fresh row
            losses["untrained_path"] = preservation(student["untrained_path"], teacher["path"])
        return losses

    def untrained_bank(self) -> Tensor:
        """``[forgotten, untrained_path_samples, C, H, W]``: what the base draws from each forgotten person's fresh
        row (seeded, drawn once per fit, in latents)."""
        if self._untrained_bank is None:
            from legato_pl.sampling import sample

            h, cond, n = self.hparams, self.conditioning, self.hparams.untrained_path_samples
            labels = self.forget_classes.repeat_interleave(n).cpu()
            with torch.no_grad(), self.method.teacher() as teacher_unet:
                images = sample(teacher_unet, self.scheduler, labels, conditioning=cond,
                                embeddings=cond.untrained(teacher_unet, labels),
                                seeds=[h.seed * 1_000_003 + i for i in range(len(labels))])
                latents = cond.to_latents(images.to(self.device))
            self._untrained_bank = latents.reshape(len(self.forget_classes), n, *latents.shape[1:])
        return self._untrained_bank

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise FloatingPointError(f"loss term {name!r} is {value.item()}; stopping (the last checkpoint is kept)")
        return sum(getattr(self.hparams, f"w_{name}") * value for name, value in losses.items())

    @override
    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        losses = self.compute_losses(batch, noise_step=micro_step(self, batch_idx))
        loss = self.total_loss(losses)
        for name, value in losses.items():
            self.log(f"train/{name}", value)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: dict, batch_idx: int) -> Tensor:
        """The objective on held-out photos, with the same noise every validation (comparable over a fit)."""
        losses = self.compute_losses(batch, noise_step=VALIDATION_NOISE_STEP + batch_idx)
        loss = self.total_loss(losses)
        for name, value in losses.items():
            self.log(f"val/{name}", value, sync_dist=True)
        self.log("val/loss", loss, sync_dist=True, prog_bar=True)
        return loss

    @override
    def on_before_optimizer_step(self, optimizer) -> None:
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # 16-mixed with a grad scaler: it skips a step whose gradients overflowed and lowers its scale
        for name, p in self.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise FloatingPointError(f"gradient of {name} is not finite; stopping (the last checkpoint is kept)")

    @override
    def configure_optimizers(self):
        return torch.optim.AdamW(self.method.trainable_parameters(), lr=self.hparams.lr, weight_decay=0.0)

    # artifacts -------------------------------------------------------------------------------
    @override
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        keep = {name for name, p in self.named_parameters() if p.requires_grad}  # trainable state only
        keep |= {name for name, _ in self.named_buffers() if name.startswith("adversary.")}  # where the attack is
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        hparams = checkpoint.get("hyper_parameters", {})
        if not isinstance(hparams.get("method"), str | dict):  # plain data, loadable with weights_only=True
            hparams["method"] = method_spec(self.method)

    @property
    def adapter_dir(self) -> Path:
        if self.hparams.output_dir:
            return Path(self.hparams.output_dir)
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        return Path(log_dir or ".") / "adapters"

    @override
    def on_train_end(self) -> None:
        if self.trainer.is_global_zero:
            training = {k: v for k, v in self.hparams.items() if k not in ("base_model", "method", "output_dir")}
            path = self.method.save(self.adapter_dir, base_model=str(self.hparams.base_model),
                                    forget=list(getattr(self.trainer.datamodule, "forget", [])),
                                    training={**training, "steps": self.global_step})
            rank_zero_info(f"{self.method_label} weights written to {path}")


