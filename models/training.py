"""Training of ResMLP students as in the reference recipe (REFERENCE_SPEC 5): plain cross-entropy, block-wise
knowledge transfer from a teacher (KT, 5.3), logit distillation (KD, 5.4) and the B-spline TV2 regulariser
(`ResMLP.tv2()`, weighted by `bspline_lambda`; REFERENCE_SPEC 3).

One run is a list of epochs: `kt_epochs` KT epochs for each block in turn, then `epochs` CE or KD epochs.
`Trainer.run()` writes the checkpoint `<out>/model.pt` atomically after every epoch (model, optimisers, schedulers,
RNG state, history) and, with `resume=True`, continues from it exactly: each epoch's shuffling and augmentation come
from a generator seeded by (seed, epoch), so an interrupted and resumed run gives bit-identical weights on CPU.
It refuses to start over an existing checkpoint unless told to resume or overwrite it, checks that <out> can be
written before the first epoch, and stops with `ResultRejected` (exit 1) as soon as the loss or a weight becomes
non-finite: a diverged epoch is never saved, the checkpoint keeps the last good one.

Optimisers (defaults of the reference scripts): KT uses one AdamW(kt_lr, kt_weight_decay) at constant rate shared by
all block stages; CE/KD use AdamW(lr, weight_decay) with CosineAnnealingLR(T_max=epochs, eta_min) stepped per epoch.
B-spline coefficients (parameters named `*_coefficients_vect`) are kept out of AdamW and trained by a separate
Adam(spline_lr) in each phase, with its own cosine schedule in the CE/KD phase.
"""

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from psa_finn.common.cli_errors import BadInput, ResultRejected
from psa_finn.common.output_paths import check_output_folder, check_own_folder
from psa_finn.models import load_checkpoint, save_checkpoint
from psa_finn.models.evaluation import evaluate

CHECKPOINT_NAME = "model.pt"
SPLINE_PARAMETER_SUFFIX = "_coefficients_vect"


def default_qat_lr(bits: int) -> float:
    """The QAT learning rate by bit width (the one default of `train --qat`, the demo and the sweeps): the
    reference's 1e-4 from 6 bits up (1e-3 wrecks a trained 8-bit model: LERP-PSA on digits fell from 96% to 15% in 5
    epochs), 1e-3 below (4-bit QAT needs about 1e-3)."""
    return 1e-4 if bits >= 6 else 1e-3


@dataclass
class TrainSettings:
    """Hyper-parameters of one training run (reference defaults, REFERENCE_SPEC 5.3-5.4)."""

    epochs: int = 300
    lr: float = 1e-3
    weight_decay: float = 0.0
    eta_min: float = 1e-5
    batch_size: int = 128
    test_batch_size: int = 256
    kd: bool = False
    kd_alpha: float = 0.8
    kd_temperature: float = 1.0
    kt_epochs: int = 0
    kt_lr: float = 1e-3
    kt_weight_decay: float = 0.0
    spline_lr: float = 1e-3
    bspline_lambda: float = 1e-5
    seed: int = 2023


def distillation_loss(student_logits, teacher_logits, labels, alpha: float, temperature: float):
    """alpha * soft cross-entropy(teacher -> student at T) * T^2 + (1 - alpha) * CE(labels) (REFERENCE_SPEC 5.4).

    The soft term is the cross-entropy against the teacher's softened distribution (not the KL divergence; the two
    differ by the teacher's entropy, which has no gradient).
    """
    soft_targets = torch.softmax(teacher_logits / temperature, dim=-1)
    log_probs = torch.log_softmax(student_logits / temperature, dim=-1)
    soft = -(soft_targets * log_probs).sum() / student_logits.shape[0] * temperature ** 2
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


def spline_parameters(model):
    """The B-spline coefficient vectors of `model` (empty for ReLU and PSA models)."""
    return [p for name, p in model.named_parameters() if name.endswith(SPLINE_PARAMETER_SUFFIX)]


def block_features(model, x, num_blocks: int):
    """The [B, T, D] representation after the embedding and the first `num_blocks` blocks."""
    return model(x, early_exit_after_block=num_blocks)


def set_kt_trainable(model, block: int) -> None:
    """Freeze the embedding and blocks before `block`; blocks from `block` on stay trainable (REFERENCE_SPEC 5.3)."""
    for p in model.embed_linear.parameters():
        p.requires_grad_(False)
    for index, layer in enumerate(model.layers):
        for p in layer.parameters():
            p.requires_grad_(index >= block)


def set_all_trainable(model) -> None:
    for p in model.parameters():
        p.requires_grad_(True)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that shuffles and augments epoch `epoch` of a run with `seed` (independent of history)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class Trainer:
    """Runs the epochs of one training run of `model` on `data` (an `ImageSplits`), checkpointing into `out_dir`.

    `teacher` is needed for KT (`settings.kt_epochs > 0`) and KD (`settings.kd`); it is kept in eval mode.
    `checkpoint_extra` is stored in every checkpoint (e.g. the dataset name, the teacher path).
    `save_fn(path, model, **extra)` / `load_fn(path) -> (model, extra)` write and read the checkpoint: the
    float ResMLP's by default; `build.py train` passes `export.checkpoints.save_model_file` / `load_model_file`, which
    handle the QAT form too.
    """

    def __init__(self, model, data, settings: TrainSettings, out_dir, teacher=None, device="cpu",
                 progress: bool = True, checkpoint_extra=None, save_fn=save_checkpoint, load_fn=load_checkpoint):
        if (settings.kd or settings.kt_epochs > 0) and teacher is None:
            raise ValueError("knowledge transfer (--kt-epochs > 0) and distillation (--kd) need a teacher "
                             "(--teacher CHECKPOINT)")
        if settings.kt_epochs > 0 and (teacher.config["embed_dim"] != model.config["embed_dim"]
                                       or teacher.config["depth"] < model.config["depth"]):
            raise ValueError(f"knowledge transfer matches block outputs: the teacher (embed_dim "
                             f"{teacher.config['embed_dim']}, depth {teacher.config['depth']}) needs the student's "
                             f"embed_dim {model.config['embed_dim']} and at least its depth {model.config['depth']}")
        if data.num_train_batches(settings.batch_size) == 0:
            raise ValueError(f"batch size {settings.batch_size} exceeds the {len(data.y_train)} training samples "
                             f"of {data.name}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.teacher = None if teacher is None else teacher.to(self.device).eval()
        self.data = data
        self.settings = settings
        self.out_dir = Path(out_dir)
        self.progress = progress
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.save_fn, self.load_fn = save_fn, load_fn
        self.num_blocks = len(model.layers)
        self.epoch = 0
        self.history = []
        self.build_optimizers()

    def build_optimizers(self) -> None:
        """Fresh optimisers and schedulers over the model's current parameter objects.

        Called again after loading a checkpoint: Brevitas rebuilds a quantizer's `tensor_quant` when a state dict
        is loaded (`brevitas.config.REINIT_ON_STATE_DICT_LOAD`), so every activation scale becomes a new Parameter
        and optimisers made before the load would step the discarded ones (the resumed run's scales then froze)."""
        settings = self.settings
        spline = spline_parameters(self.model)
        dense = [p for p in self.model.parameters() if all(p is not q for q in spline)]
        self.optimizers = {
            "kt": torch.optim.AdamW(dense, lr=settings.kt_lr, weight_decay=settings.kt_weight_decay),
            "main": torch.optim.AdamW(dense, lr=settings.lr, weight_decay=settings.weight_decay),
        }
        if spline:
            self.optimizers["kt_spline"] = torch.optim.Adam(spline, lr=settings.spline_lr)
            self.optimizers["main_spline"] = torch.optim.Adam(spline, lr=settings.spline_lr)
        t_max = max(settings.epochs, 1)
        self.schedulers = {name: torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizers[name], t_max,
                                                                            eta_min=settings.eta_min)
                           for name in ("main", "main_spline") if name in self.optimizers}

    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME

    @property
    def total_epochs(self) -> int:
        return self.num_blocks * self.settings.kt_epochs + self.settings.epochs

    def stage_of(self, epoch: int):
        """('kt', block) for a knowledge-transfer epoch, ('kd' or 'ce', None) otherwise."""
        kt_total = self.num_blocks * self.settings.kt_epochs
        if epoch < kt_total:
            return "kt", epoch // self.settings.kt_epochs
        return ("kd" if self.settings.kd else "ce"), None

    def _step_optimizers(self, prefix: str) -> None:
        for name, optimizer in self.optimizers.items():
            if name.startswith(prefix):
                optimizer.step()

    def _zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def _regulariser(self):
        if "main_spline" not in self.optimizers:
            return 0.0
        return self.settings.bspline_lambda * self.model.tv2()

    def run_epoch(self, epoch: int) -> dict:
        """Train one epoch (KT or CE/KD by position in the run), evaluate, and return its history entry."""
        stage, block = self.stage_of(epoch)
        start = time.perf_counter()
        if epoch == 0 and stage == "kt":
            with torch.no_grad():
                self.model.embed_linear.weight.copy_(self.teacher.embed_linear.weight)
                self.model.embed_linear.bias.copy_(self.teacher.embed_linear.bias)
        if stage == "kt":
            set_kt_trainable(self.model, block)
        else:
            set_all_trainable(self.model)
        self.model.train()
        generator = epoch_generator(self.settings.seed, epoch)
        batches = self.data.train_batches(self.settings.batch_size, generator)
        label = f"epoch {epoch + 1}/{self.total_epochs} {stage}" + (f" block {block}" if stage == "kt" else "")
        bar = tqdm(batches, total=self.data.num_train_batches(self.settings.batch_size), desc=label,
                   disable=not (self.progress and sys.stderr.isatty()), leave=False)
        loss_sum, correct, seen = 0.0, 0, 0
        for batch, (x, y) in enumerate(bar):
            x, y = x.to(self.device), y.to(self.device)
            self._zero_grad()
            if stage == "kt":
                with torch.no_grad():
                    target = block_features(self.teacher, x, block + 1)
                loss = F.mse_loss(block_features(self.model, x, block + 1), target)
            else:
                logits = self.model(x)
                if stage == "kd":
                    with torch.no_grad():
                        teacher_logits = self.teacher(x)
                    loss = distillation_loss(logits, teacher_logits, y, self.settings.kd_alpha,
                                             self.settings.kd_temperature)
                else:
                    loss = F.cross_entropy(logits, y)
                correct += int((logits.argmax(dim=-1) == y).sum())
            loss = loss + self._regulariser()
            if not torch.isfinite(loss.detach()):
                self._diverged(epoch, batch, stage, f"the loss is {loss.item()}")
            loss.backward()
            self._step_optimizers("kt" if stage == "kt" else "main")
            bad = self._non_finite_parameter()
            if bad is not None:
                self._diverged(epoch, batch, stage, f"weight '{bad}' holds NaN/inf after the optimiser step")
            loss_sum += loss.item() * len(y)
            seen += len(y)
            postfix = {"loss": f"{loss_sum / seen:.4f}"}
            if stage != "kt":
                postfix["acc"] = f"{100.0 * correct / seen:.2f}"
            bar.set_postfix(postfix)
        if stage != "kt":
            for scheduler in self.schedulers.values():
                scheduler.step()
        test = evaluate(self.model, self.data, self.settings.test_batch_size, self.device)
        entry = {"epoch": epoch + 1, "stage": stage, "block": block, "train_loss": loss_sum / seen,
                 "train_accuracy": None if stage == "kt" else 100.0 * correct / seen,
                 "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                 "lr": self.optimizers["kt" if stage == "kt" else "main"].param_groups[0]["lr"],
                 "seconds": time.perf_counter() - start}
        return entry

    def _non_finite_parameter(self):
        """The name of the first parameter holding NaN or inf (None when all are finite: one check per step)."""
        named = [(name, p) for name, p in self.model.named_parameters() if p.is_floating_point()]
        if torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).all():
            return None
        return next(name for name, p in named if not torch.isfinite(p.detach()).all())

    def _diverged(self, epoch: int, batch: int, stage: str, what: str):
        """Stop the run: the loss or the weights became non-finite (nothing of this epoch is saved)."""
        flag, lr = ("--kt-lr", self.settings.kt_lr) if stage == "kt" else ("--lr", self.settings.lr)
        kept = (f"{self.checkpoint_path} keeps epoch {self.epoch}" if self.checkpoint_path.is_file()
                else "nothing was saved")
        raise ResultRejected(f"training diverged in epoch {epoch + 1}/{self.total_epochs}, batch {batch + 1}: "
                             f"{what} (non-finite); lower the learning rate ({flag}, now {lr:g}); {kept}")

    def state(self) -> dict:
        """Everything besides the model that resuming needs."""
        return {"epoch": self.epoch, "settings": asdict(self.settings), "history": self.history,
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}

    def load_state(self, state: dict) -> None:
        if state["settings"] != asdict(self.settings):
            changed = sorted(k for k, v in asdict(self.settings).items() if state["settings"].get(k) != v)
            raise ValueError(f"cannot resume from {self.checkpoint_path}: settings differ in {changed}; "
                             f"rerun with the original options or use a new --out folder")
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def save(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.save_fn(self.checkpoint_path, self.model, training=self.state(), **self.checkpoint_extra)

    def resume(self) -> bool:
        """Load model and training state from `checkpoint_path` if it exists; True when it did."""
        if not self.checkpoint_path.is_file():
            return False
        saved_model, extra = self.load_fn(self.checkpoint_path)
        if "training" not in extra:
            raise ValueError(f"{self.checkpoint_path} holds no training state (not written by `build.py train`)")
        saved = (type(saved_model).__name__, saved_model.config, getattr(saved_model, "bits", None))
        wanted = (type(self.model).__name__, self.model.config, getattr(self.model, "bits", None))
        if saved != wanted:
            raise ValueError(f"cannot resume from {self.checkpoint_path}: it holds a {saved} model, this run "
                             f"builds {wanted}; rerun with the original options or use a new --out folder")
        self.model.load_state_dict(saved_model.state_dict())
        self.build_optimizers()
        self.load_state(extra["training"])
        return True

    def check_out_dir(self, resume: bool = False, overwrite: bool = False) -> None:
        """Before any epoch: <out> must be a writable folder, and a checkpoint already there is continued
        (`resume`) or replaced (`overwrite`, at the first saved epoch), never silently overwritten."""
        check_own_folder(self.out_dir, (CHECKPOINT_NAME,), "training run")
        check_output_folder(self.out_dir)
        if self.checkpoint_path.is_file() and not (resume or overwrite):
            try:
                done = f"{self.load_fn(self.checkpoint_path)[1]['training']['epoch']} epoch(s) done"
            except Exception:
                done = "a model"
            raise BadInput(f"--out {self.out_dir} already holds a run ({self.checkpoint_path}, {done}); pass "
                           f"--resume to continue it, --force to start over (it is replaced when the first new "
                           f"epoch is saved), or choose another --out")

    def run(self, resume: bool = False, overwrite: bool = False) -> list:
        """Train the remaining epochs (all, or those after the checkpoint with `resume`); return the history.

        An existing checkpoint without `resume` or `overwrite` is BadInput (see `check_out_dir`)."""
        self.check_out_dir(resume, overwrite)
        if resume and self.resume() and self.progress:
            print(f"resuming {self.checkpoint_path} after epoch {self.epoch}/{self.total_epochs}")
        while self.epoch < self.total_epochs:
            entry = self.run_epoch(self.epoch)
            self.history.append(entry)
            self.epoch += 1
            if self.progress:
                accuracy = f" train acc {entry['train_accuracy']:.2f}%" if entry["train_accuracy"] is not None else ""
                tqdm.write(f"epoch {entry['epoch']}/{self.total_epochs} {entry['stage']}: loss "
                           f"{entry['train_loss']:.4f}{accuracy}, test acc {entry['test_accuracy']:.2f}% "
                           f"({entry['seconds']:.1f} s)")
            self.save()
        set_all_trainable(self.model)
        return self.history
