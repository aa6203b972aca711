"""`build.py train | eval`: training (float or QAT) and scoring of every kind of model file.

    train  --variant lerp_psa --hidden-factor 0.5 --dataset digits --epochs N --out DIR
           [--teacher CKPT --kt-epochs K --kd] [--resume] [--seed S]
           [--init CKPT [--qat --bits B]]
    eval   --checkpoint FILE (float or QAT .pt, reference .bin, or any exported QONNX classifier .onnx)
           | --all REFERENCE_OUTPUT_DIR

Model files are read by `export.checkpoints.load_model_file` (float, QAT or reference, told apart by content); a QONNX
classifier is scored by `export.onnx_eval`, its input layout detected from its shape ([N, 64], [N, 1, 8, 8],
[N, 8, 8, 1] or ResMLP patches for digits).
"""

from dataclasses import fields
from pathlib import Path

import torch

from psa_finn.common.cli_args import (DefaultsHelpFormatter, grid_size_int, non_negative_float, non_negative_int,
                                      positive_float, positive_int, unit_fraction)
from psa_finn.common.cli_errors import BadInput
from psa_finn.export.checkpoints import load_model_file, save_model_file
from psa_finn.export.onnx_eval import evaluate_onnx
from psa_finn.export.qat import to_qat_model
from psa_finn.export.quant_resmlp import QuantResMLP
from psa_finn.models.cli import torch_device
from psa_finn.models.datasets import DATASET_GEOMETRY, DEFAULT_DATA_DIR, load_dataset
from psa_finn.models.evaluation import dataset_of_config, evaluate, find_reference_models, format_accuracy_table
from psa_finn.models.resmlp import VARIANTS, ResMLP
from psa_finn.models.training import CHECKPOINT_NAME, TrainSettings, Trainer, default_qat_lr

ONNX_DEFAULT_DATASET = "digits"  # an ONNX file does not say its dataset; --dataset overrides
# TrainSettings field -> command-line flag where the two names differ (the reference scripts' spelling).
SETTING_FLAGS = {"kd_temperature": "kd-t", "kt_weight_decay": "kt-wd"}
SETTING_HELP = {
    "epochs": "CE/KD epochs after any knowledge transfer (cosine schedule over them)",
    "lr": "AdamW learning rate of the CE/KD phase", "weight_decay": "AdamW weight decay of the CE/KD phase",
    "eta_min": "final learning rate of the cosine schedule", "batch_size": "training batch (last partial dropped)",
    "test_batch_size": "evaluation batch", "kd": "distil from --teacher logits (soft CE, REFERENCE_SPEC 5.4)",
    "kd_alpha": "weight of the soft term", "kd_temperature": "distillation temperature",
    "kt_epochs": "knowledge-transfer epochs per block before CE/KD (block-wise feature matching to --teacher)",
    "kt_lr": "AdamW learning rate of knowledge transfer (constant)", "kt_weight_decay": "AdamW weight decay of KT",
    "spline_lr": "Adam learning rate of the B-spline coefficients (separate optimiser)",
    "bspline_lambda": "weight of the TV2 regulariser (B-spline models)",
    "seed": "seed of init, shuffling, augmentation",
}
# TrainSettings field -> argument type (a bad value is a one-line error naming the flag, before any work).
SETTING_TYPES = {"epochs": non_negative_int, "kt_epochs": non_negative_int, "batch_size": positive_int,
                 "test_batch_size": positive_int, "lr": positive_float, "kt_lr": positive_float,
                 "spline_lr": positive_float, "kd_temperature": positive_float, "kd_alpha": unit_fraction,
                 "weight_decay": non_negative_float, "kt_weight_decay": non_negative_float,
                 "eta_min": non_negative_float, "bspline_lambda": non_negative_float, "seed": int}
# Defaults that depend on --dataset: the small recipe of the demo on the built-in datasets (digits: 93.9% for LERP-PSA
# h=1 in 15 CPU-s) and the reference's CIFAR-10/SVHN recipe (TrainSettings and the ResMLP's own defaults).
# On digits one CPU thread: the tiny model gains nothing from more, and on a busy machine a second spinning thread
# costs up to 10x the CPU time (measured: 161 s instead of 16 s for the 30-epoch run).
DATASET_DEFAULTS = {"digits": dict(embed_dim=32, depth=2, epochs=30, batch_size=64, threads=1),
                    "cifar10": dict(embed_dim=96, depth=4, epochs=TrainSettings.epochs,
                                    batch_size=TrainSettings.batch_size, threads=None)}
DATASET_DEFAULTS["svhn"] = DATASET_DEFAULTS["cifar10"]
DATASET_DEFAULTS["mnist1d"] = DATASET_DEFAULTS["digits"]
TRAIN_EXAMPLE = ("Small run on digits (built in; 30 epochs in about 15 s of CPU, 93.9% test accuracy): build.py train "
                 "--variant lerp_psa --hidden-factor 1 --out out/lerp_psa. Then: train --qat --init "
                 "out/lerp_psa/model.pt --epochs 5 --out out/lerp_psa_qat; export; lower; build (see README).")
MODEL_DEFAULTS = {"variant": "lerp_psa", "hidden_factor": 1.0}
MAX_HIDDEN_WIDTH = 1 << 16  # a hidden layer wider than this does not fit any FPGA build (nor most memories)
MODEL_FLAGS = ("variant", "hidden_factor", "embed_dim", "depth", "grid_size")


def _dataset_default_help(key: str) -> str:
    """E.g. "32 on digits, 96 on cifar10 and svhn" (None reads "torch's own")."""
    def shown(value):
        return "torch's own" if value is None else str(value)

    return f"{shown(DATASET_DEFAULTS['digits'][key])} on digits and mnist1d, " \
           f"{shown(DATASET_DEFAULTS['cifar10'][key])} on cifar10 and svhn"


def _add_data_arguments(parser) -> None:
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help="folder with cifar-10-batches-py/ or {train,test}_32x32.mat")
    parser.add_argument("--download", action="store_true", help="fetch the official CIFAR-10/SVHN files first")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")


def _add_train_arguments(parser) -> None:
    parser.add_argument("--variant", choices=VARIANTS, default=None,
                        help=f"activation of the ResMLP (default: {MODEL_DEFAULTS['variant']})")
    parser.add_argument("--hidden-factor", type=positive_float, default=None,
                        help=f"MLP hidden width = int(embed-dim * factor) (default: {MODEL_DEFAULTS['hidden_factor']})")
    parser.add_argument("--embed-dim", type=positive_int, default=None,
                        help=f"embedding width (default: {_dataset_default_help('embed_dim')})")
    parser.add_argument("--depth", type=positive_int, default=None,
                        help=f"number of ResMLP blocks (default: {_dataset_default_help('depth')})")
    parser.add_argument("--grid-size", type=grid_size_int, default=None,
                        help="grid points of the learnable functions (default: LERP-PSA 64, B-spline 65 knots, odd)")
    parser.add_argument("--dataset", choices=sorted(DATASET_GEOMETRY), default="digits",
                        help="digits or mnist1d (built in, offline; default digits), cifar10 or svhn (--data-dir)")
    parser.add_argument("--out", required=True,
                        help=f"output folder; {CHECKPOINT_NAME} is rewritten every epoch. An existing run there needs "
                             f"--resume (continue) or --force (start over)")
    parser.add_argument("--teacher", help="teacher checkpoint (.pt or reference .bin) for --kd / --kt-epochs")
    parser.add_argument("--init", help="start from the weights of this float checkpoint (.pt or reference .bin) "
                                       "instead of a random init; the model (--variant, --hidden-factor, --embed-dim, "
                                       "--depth) then comes from it, and a flag that disagrees is an error")
    parser.add_argument("--qat", action="store_true",
                        help="quantization-aware fine-tuning of the QAT form of --init (export.qat) with this loop")
    parser.add_argument("--bits", type=int, default=8, help="weight and activation bits of the QAT form")
    parser.add_argument("--calibration-batches", type=positive_int, default=4,
                        help="unaugmented training batches that calibrate the QAT activation ranges")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true", help=f"continue from OUT/{CHECKPOINT_NAME} if present")
    resume.add_argument("--force", action="store_true",
                        help=f"start over even if OUT/{CHECKPOINT_NAME} exists (replaced at the first saved epoch)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars or per-epoch lines (bars are drawn only on a terminal anyway)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help=f"CPU threads for torch (default: {_dataset_default_help('threads')})")
    defaults = TrainSettings()
    for field in fields(TrainSettings):
        flag = "--" + SETTING_FLAGS.get(field.name, field.name.replace("_", "-"))
        default = getattr(defaults, field.name)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=field.name, action="store_true", help=SETTING_HELP[field.name])
        elif field.name == "lr":
            parser.add_argument(flag, dest="lr", type=positive_float, default=None,
                                help=f"{SETTING_HELP['lr']} (default: {default}; with --qat "
                                     f"{default_qat_lr(8)} from 6 bits up, {default_qat_lr(4)} below)")
        elif field.name in ("epochs", "batch_size"):
            parser.add_argument(flag, dest=field.name, type=SETTING_TYPES[field.name], default=None,
                                help=f"{SETTING_HELP[field.name]} (default: {_dataset_default_help(field.name)})")
        else:
            parser.add_argument(flag, dest=field.name, type=SETTING_TYPES[field.name], default=default,
                                help=SETTING_HELP[field.name])
    _add_data_arguments(parser)


def _add_eval_arguments(parser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="our .pt checkpoint, a reference *_model.bin, or an exported .onnx")
    which.add_argument("--all", metavar="DIR",
                       help="reference output tree (baseline/, bspline_65_1e-5/, lerp_psa_64/ with h_*_model.bin)")
    parser.add_argument("--dataset", choices=sorted(DATASET_GEOMETRY),
                        help="test split to use (default: the checkpoint's dataset, or the one its geometry implies)")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    _add_data_arguments(parser)


def add_arguments(parser, command: str) -> None:
    """Options of `build.py train | eval`."""
    parser.formatter_class = DefaultsHelpFormatter
    {"train": _add_train_arguments, "eval": _add_eval_arguments}[command](parser)
    if command == "train":
        parser.epilog = f"{TRAIN_EXAMPLE} {parser.epilog or ''}"


def _load_float_model(path, dataset: str, option: str):
    """A float model from `path` whose input geometry fits `dataset` (ValueError naming `option` otherwise)."""
    model, _ = load_model_file(path)
    if isinstance(model, QuantResMLP):
        raise BadInput(f"{option} {path} is a QAT checkpoint ({model.bits}-bit); {option} takes a float checkpoint "
                       f"(the one the QAT run started from; to continue a QAT run use --resume with its --out)")
    geometry = DATASET_GEOMETRY[dataset].model_kwargs()
    mismatch = {k: (model.config[k], v) for k, v in geometry.items() if model.config[k] != v}
    if mismatch:
        raise BadInput(f"{option} {path}: its input geometry {mismatch} (model, {dataset}) does not fit "
                         f"--dataset {dataset}")
    return model


def _check_geometry(config: dict, dataset: str, path) -> None:
    """BadInput naming --checkpoint and --dataset when the model's input geometry does not fit the dataset's."""
    geometry = DATASET_GEOMETRY[dataset].model_kwargs()
    mismatch = {k: (config.get(k), v) for k, v in geometry.items() if config.get(k) != v}
    if mismatch:
        fits = [name for name, g in DATASET_GEOMETRY.items()
                if all(config.get(k) == v for k, v in g.model_kwargs().items())]
        raise BadInput(f"--checkpoint {path} takes other inputs than --dataset {dataset} ({mismatch}, model vs "
                       f"dataset); " + (f"use --dataset {fits[0]}" if fits else "pass a checkpoint of that dataset"))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_init_flags(args, config: dict) -> None:
    """BadInput when a model flag given with --init disagrees with the checkpoint's model."""
    given = {name: getattr(args, name) for name in MODEL_FLAGS if getattr(args, name) is not None}
    wrong = [f"{_flag(name)} {value} (it holds {config.get(name)})" for name, value in given.items()
             if value != config.get(name)]
    if wrong:
        raise BadInput(f"--init {args.init} holds another model than {', '.join(wrong)}; drop those flags (the model "
                       f"comes from the checkpoint) or pass the checkpoint you meant")


def _resolve_defaults(args) -> None:
    """Fill the flags left unset: --lr by --qat, the model flags and --epochs/--batch-size by --dataset."""
    if args.lr is None:
        args.lr = default_qat_lr(args.bits) if args.qat else TrainSettings.lr
    for name, value in DATASET_DEFAULTS[args.dataset].items():
        if getattr(args, name) is None and (args.init is None or name not in MODEL_FLAGS):
            setattr(args, name, value)
    if args.init is None:
        for name, value in MODEL_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        width = args.embed_dim * args.hidden_factor
        if not width <= MAX_HIDDEN_WIDTH:
            raise BadInput(f"--hidden-factor {args.hidden_factor:g} with --embed-dim {args.embed_dim} gives a hidden "
                           f"width of {width:g}, more than {MAX_HIDDEN_WIDTH}; pass a factor like 0.5 to 8")
        if int(width) < 1:
            raise BadInput(f"--hidden-factor {args.hidden_factor:g} with --embed-dim {args.embed_dim} gives a hidden "
                           f"width of int({args.embed_dim} * {args.hidden_factor:g}) = 0; raise either")
    if args.epochs + args.kt_epochs == 0:
        raise BadInput("--epochs 0 (and no --kt-epochs) trains nothing; pass --epochs N with N >= 1")


def _student(args, data):
    """The model to train: random init (seeded), the --init weights, or the QAT form of --init."""
    if args.init is None:
        if args.qat:
            raise BadInput("--qat fine-tunes a trained float model: pass it with --init CHECKPOINT")
        torch.manual_seed(args.seed)
        try:
            return ResMLP(args.variant, args.hidden_factor, embed_dim=args.embed_dim, depth=args.depth,
                          grid_size=args.grid_size, **DATASET_GEOMETRY[args.dataset].model_kwargs())
        except ValueError as err:  # the function's own rule for its grid (a B-spline's knot count is odd)
            if "grid_size" not in str(err):
                raise
            raise BadInput(f"--grid-size {args.grid_size} with --variant {args.variant}: {err}; pass a --grid-size "
                           f"it takes (default: LERP-PSA 64, B-spline 65)") from err
    model = _load_float_model(args.init, args.dataset, "--init")
    _check_init_flags(args, model.config)
    if not args.qat:
        return model.train()
    return to_qat_model(model, args.bits, data.calibration_batches(args.batch_size, args.calibration_batches))


def run_train(args) -> int:
    _resolve_defaults(args)
    if args.qat:
        from psa_finn.nn.quantizers import check_bits

        check_bits(args.bits)
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in fields(TrainSettings)})
    device = torch_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset, args.data_dir, args.download)
    teacher = _load_float_model(args.teacher, args.dataset, "--teacher") if args.teacher else None
    model = _student(args, data)
    trainer = Trainer(model, data, settings, args.out, teacher=teacher, device=device,
                      progress=not args.no_progress,
                      checkpoint_extra={"dataset": args.dataset, "teacher": args.teacher, "init": args.init},
                      save_fn=save_model_file, load_fn=load_model_file)
    history = trainer.run(resume=args.resume, overwrite=args.force)
    if history:
        final = history[-1]
        kind = f"QAT {args.bits}-bit " if args.qat else ""
        print(f"{kind}{model.config['variant']} h={model.config['hidden_factor']} on {args.dataset}: test accuracy "
              f"{final['test_accuracy']:.2f}% after {final['epoch']} epochs -> {trainer.checkpoint_path}")
    return 0


def run_eval(args) -> int:
    device = torch_device(args.device)
    if args.all:
        paths = find_reference_models(args.all)
        accuracies, datasets = {}, {}
        for key, path in paths.items():
            model, extra = load_model_file(path)
            name = args.dataset or extra.get("dataset") or dataset_of_config(model.config)
            if name not in datasets:
                datasets[name] = load_dataset(name, args.data_dir, args.download)
            result = evaluate(model.to(device), datasets[name], args.batch_size, device)
            print(f"{path}: {result['accuracy']:.2f}% (loss {result['loss']:.4f})")
            accuracies[key] = result["accuracy"]
        print(format_accuracy_table(accuracies))
        return 0
    path = Path(args.checkpoint)
    if path.suffix == ".onnx":
        name = args.dataset or ONNX_DEFAULT_DATASET
        result = evaluate_onnx(path, *load_dataset(name, args.data_dir, args.download).test_tensors(), args.batch_size)
    else:
        model, extra = load_model_file(path)
        name = args.dataset or extra.get("dataset") or dataset_of_config(model.config)
        _check_geometry(model.config, name, path)
        result = evaluate(model.to(device), load_dataset(name, args.data_dir, args.download), args.batch_size,
                          device)
    print(f"{path} on {name} test ({result['samples']} samples): accuracy {result['accuracy']:.2f}%, "
          f"loss {result['loss']:.4f}")
    return 0


def run(args, command: str) -> int:
    """Dispatch `build.py train | eval`; errors go to build.py (one line, exit code by kind)."""
    return {"train": run_train, "eval": run_eval}[command](args)
