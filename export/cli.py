"""`build.py export`: a ResMLP checkpoint (float, QAT or reference .bin) or a random init -> QONNX file.

    python build.py export --checkpoint CKPT --out model.onnx [--bits 8]
    python build.py export --variant {relu,gelu,lerp_psa,bspline} --hidden-factor F --dataset {cifar10,digits}
                           --random-init --out model.onnx [--bits 8]

A float checkpoint is converted to its QAT form (export.qat) and its quantizer ranges calibrated on a few training
batches of its dataset (or on random images with `--calibration random`); a QAT checkpoint
(export.qat.save_qat_checkpoint) is exported as it is; `--random-init` calibrates random weights on random inputs
(hardware studies). --out is checked before any work; the file is written atomically, after qonnx executed it equal
to the QAT model on a random image. Errors go to build.py: one line on stderr, exit status 2 for bad input, 3 when
--out cannot be written.
"""


import onnx
import torch

from psa_finn.common.bit_widths import MAX_BITS, MIN_BITS
from psa_finn.common.cli_args import DefaultsHelpFormatter, positive_float, positive_int
from psa_finn.common.output_paths import check_output_file, require_input_file
from psa_finn.export.checkpoints import load_model_file
from psa_finn.export.qat import random_calibration_batches, to_qat_model
from psa_finn.export.qonnx_export import export_qonnx
from psa_finn.export.quant_resmlp import QuantResMLP
from psa_finn.nn.quantizers import DEFAULT_BITS, check_bits
from psa_finn.models import ResMLP
from psa_finn.models.datasets import DATASET_GEOMETRY, DEFAULT_DATA_DIR, load_dataset
from psa_finn.models.evaluation import dataset_of_config
from psa_finn.models.resmlp import VARIANTS

CALIBRATION_SEED = 0


def add_arguments(parser, command: str) -> None:
    """Options of `build.py export`."""
    parser.formatter_class = DefaultsHelpFormatter
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="our .pt checkpoint (float or QAT) or a reference *_model.bin")
    source.add_argument("--random-init", action="store_true",
                        help="random weights (needs --variant, --hidden-factor, --dataset)")
    parser.add_argument("--out", required=True, help="QONNX file to write")
    parser.add_argument("--bits", type=int, default=None,
                        help=f"weight and activation bits, {MIN_BITS}..{MAX_BITS} (default {DEFAULT_BITS}; a QAT "
                             f"checkpoint keeps its own)")
    parser.add_argument("--variant", choices=VARIANTS, help="model variant (with --checkpoint: must match it)")
    parser.add_argument("--hidden-factor", type=positive_float, help="hidden width = int(embed_dim * F)")
    parser.add_argument("--dataset", choices=sorted(DATASET_GEOMETRY),
                        help="input geometry (and calibration data for a float checkpoint)")
    parser.add_argument("--embed-dim", type=positive_int, default=96, help="embedding width (--random-init)")
    parser.add_argument("--depth", type=positive_int, default=4, help="number of blocks (--random-init)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (--random-init)")
    parser.add_argument("--calibration", choices=("dataset", "random"), default="dataset",
                        help="what a float checkpoint's quantizer ranges are calibrated on")
    parser.add_argument("--calibration-batches", type=positive_int, default=8, help="batches to calibrate ranges on")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="calibration batch size")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder of the cifar10/svhn files")


def _check_against_flags(config: dict, args, source) -> None:
    """ValueError when --variant/--hidden-factor/--dataset contradict the checkpoint's model."""
    wrong = []
    if args.variant and args.variant != config["variant"]:
        wrong.append(f"variant {config['variant']!r} (not --variant {args.variant})")
    if args.hidden_factor is not None and args.hidden_factor != config["hidden_factor"]:
        wrong.append(f"hidden factor {config['hidden_factor']} (not --hidden-factor {args.hidden_factor})")
    if args.dataset:
        geometry = DATASET_GEOMETRY[args.dataset].model_kwargs()
        mismatch = {k: config[k] for k, v in geometry.items() if config[k] != v}
        if mismatch:
            wrong.append(f"input geometry {mismatch} (not that of --dataset {args.dataset}: {geometry})")
    if wrong:
        raise ValueError(f"{source} holds a ResMLP of {'; '.join(wrong)}; drop the disagreeing flags or pass the "
                         f"checkpoint you meant")


def _calibration_batches(config: dict, dataset: str, args):
    if args.calibration == "random":
        return random_calibration_batches(config, args.calibration_batches, args.batch_size, CALIBRATION_SEED)
    data = load_dataset(dataset, args.data_dir)
    batches = data.train_batches(args.batch_size, torch.Generator().manual_seed(CALIBRATION_SEED))
    return [x for _, (x, _) in zip(range(args.calibration_batches), batches)]


def qat_from_checkpoint(args):
    """(calibrated QAT model, dataset name) for `--checkpoint`."""
    path = require_input_file(args.checkpoint, "--checkpoint", "checkpoint")
    model, extra = load_model_file(path)
    if isinstance(model, QuantResMLP):
        if args.bits is not None and args.bits != model.bits:
            raise ValueError(f"{path} is a QAT checkpoint trained at {model.bits} bits; omit --bits or pass "
                             f"--bits {model.bits} (re-train with `build.py train --qat --bits B` for other bits)")
        _check_against_flags(model.config, args, path)
        return model, extra.get("dataset") or args.dataset or dataset_of_config(model.config)
    _check_against_flags(model.config, args, path)
    dataset = extra.get("dataset") or args.dataset or dataset_of_config(model.config)
    bits = DEFAULT_BITS if args.bits is None else args.bits
    source = "random images" if args.calibration == "random" else f"the {dataset} training set"
    print(f"{path} is a float checkpoint: quantizing it to {bits} bits after training (PTQ), activation ranges "
          f"calibrated on {args.calibration_batches} batches of {source}; `build.py train --qat --init {path}` "
          f"fine-tunes the quantized model instead (QAT, usually more accurate)")
    return to_qat_model(model, bits, _calibration_batches(model.config, dataset, args)), dataset


def qat_from_random_init(args):
    """(QAT model of a seeded random ResMLP calibrated on random images, dataset name) for `--random-init`."""
    missing = [flag for flag, value in (("--variant", args.variant), ("--hidden-factor", args.hidden_factor),
                                        ("--dataset", args.dataset)) if value is None]
    if missing:
        raise ValueError(f"--random-init needs {', '.join(missing)} (the model to build)")
    torch.manual_seed(args.seed)
    model = ResMLP(args.variant, args.hidden_factor, embed_dim=args.embed_dim, depth=args.depth,
                   **DATASET_GEOMETRY[args.dataset].model_kwargs()).eval()
    bits = DEFAULT_BITS if args.bits is None else args.bits
    batches = random_calibration_batches(model.config, args.calibration_batches, args.batch_size, CALIBRATION_SEED)
    return to_qat_model(model, bits, batches), args.dataset


def run(args, command: str) -> int:
    """Export; errors go to build.py (one line on stderr, exit code by kind)."""
    if args.bits is not None:
        check_bits(args.bits)
    check_output_file(args.out)
    qat, dataset = qat_from_random_init(args) if args.random_init else qat_from_checkpoint(args)
    model = onnx.load(str(export_qonnx(qat, qat.example_input(CALIBRATION_SEED), args.out)))
    luts = sum(n.op_type == "LerpPSA" for n in model.graph.node)
    print(f"{args.out}: {qat.variant} ResMLP h={qat.hidden_dim} ({dataset} geometry, input "
          f"{list(qat.input_shape)}), {qat.bits}-bit, {len(model.graph.node)} nodes, {luts} LerpPSA")
    return 0
