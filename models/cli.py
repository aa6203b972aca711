"""`build.py bench`: the PyTorch benchmarks on the command line (train and eval take every kind of model file, so
they live in export/train_eval_cli.py).

    bench  accuracy [--json PATH --plot PATH]  |  bench kernels [--scale S --json PATH]
"""

import torch

from psa_finn.common.cli_args import DefaultsHelpFormatter, non_negative_int, positive_float, positive_int
from psa_finn.common.cli_errors import EnvironmentFailure
from psa_finn.common.output_paths import check_output_file
from psa_finn.models.datasets import OFFLINE_DATASETS


def torch_device(name: str) -> torch.device:
    """The torch device of a --device flag: cpu, cuda, cuda:N or auto (cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EnvironmentFailure(f"--device {name}: CUDA is not available in this torch build/machine; use "
                                 f"--device cpu")
    return torch.device(name)


def _add_bench_arguments(parser) -> None:
    from psa_finn.models.bench_accuracy import AccuracyBenchConfig
    from psa_finn.models.bench_kernels import DEFAULT_SCALE, KERNEL_REPEATS, KERNEL_VARIANTS

    parser.add_argument("benchmark", choices=("accuracy", "kernels"))
    parser.add_argument("--json", help="write the measured figures to this JSON file")
    accuracy = parser.add_argument_group("accuracy (ResMLP variants, accuracy vs hidden factor)")
    accuracy.add_argument("--dataset", choices=OFFLINE_DATASETS, default=AccuracyBenchConfig.dataset,
                          help="built-in dataset to measure on (mnist1d: harder, 4000 signals of length 40)")
    accuracy.add_argument("--plot", help="PNG of accuracy against hidden factor with error bars")
    accuracy.add_argument("--seeds", type=positive_int, default=AccuracyBenchConfig.seeds,
                          help="seeds per variant and hidden factor")
    accuracy.add_argument("--epochs", type=positive_int, default=AccuracyBenchConfig.epochs, help="student epochs")
    accuracy.add_argument("--teacher-epochs", type=non_negative_int, default=AccuracyBenchConfig.teacher_epochs,
                          help="epochs of the ReLU teacher the students distil from (0: plain CE, no teacher)")
    accuracy.add_argument("--embed-dim", type=positive_int, default=AccuracyBenchConfig.embed_dim,
                          help="ResMLP width D")
    accuracy.add_argument("--depth", type=positive_int, default=AccuracyBenchConfig.depth, help="ResMLP blocks")
    accuracy.add_argument("--lr", type=positive_float, default=AccuracyBenchConfig.lr,
                          help="AdamW learning rate (all runs)")
    kernels = parser.add_argument_group("kernels (Linear + activation x4 training steps, REFERENCE_SPEC 7)")
    kernels.add_argument("--scale", type=positive_float, default=DEFAULT_SCALE,
                         help="fraction of the reference 8192 rows (16 x 512 tokens) of 768 channels")
    kernels.add_argument("--repeats", type=positive_int, default=KERNEL_REPEATS,
                         help="timed training steps per variant")
    kernels.add_argument("--variants", default=",".join(KERNEL_VARIANTS),
                         help="comma-separated subset to measure (e.g. leave out psa at --scale 1: its exact "
                              "[rows, C, E] intermediates take about 4 GB)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads for torch (1: steadier timings and no spinning on a shared machine; the "
                             "accuracy bench's small models gain nothing from more)")


def add_arguments(parser, command: str) -> None:
    """Options of `build.py bench`."""
    parser.formatter_class = DefaultsHelpFormatter
    _add_bench_arguments(parser)


def run_bench(args) -> int:
    from psa_finn.models.bench_accuracy import AccuracyBenchConfig, run_accuracy_bench
    from psa_finn.models.bench_kernels import run_kernel_bench

    device = torch_device(args.device)
    for flag, path in (("--json", args.json), ("--plot", getattr(args, "plot", None))):
        if path:
            check_output_file(path, flag)
    torch.set_num_threads(args.threads)
    if args.benchmark == "accuracy":
        config = AccuracyBenchConfig(seeds=args.seeds, epochs=args.epochs, teacher_epochs=args.teacher_epochs,
                                     embed_dim=args.embed_dim, depth=args.depth, lr=args.lr, dataset=args.dataset)
        run_accuracy_bench(config, json_path=args.json, plot_path=args.plot, device=device)
    else:
        run_kernel_bench(scale=args.scale, repeats=args.repeats, json_path=args.json, device=device,
                         variants=tuple(v.strip() for v in args.variants.split(",") if v.strip()))
    return 0


def run(args, command: str) -> int:
    """Run `build.py bench`; errors go to build.py (one line, exit code by kind)."""
    return run_bench(args)
