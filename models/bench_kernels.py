"""Training-step time and peak memory of the learnable 1-D functions against fixed activations (REFERENCE_SPEC 7).

Workload of the reference `kernel_time_mes.py`: x = randn(rows, 768) with rows = 8192 * scale, and
`Sequential([activation, Linear(768, 768)] * 4)` — the same two modules applied four times (shared weights); ReLU
and GELU put the Linear first. One training step is zero_grad, forward, `loss = out.sum()` (+ 1e-4 * TV2 for the
B-spline), backward and AdamW(lr 1e-3, weight decay 5e-4). The B-spline coefficients get their own AdamW (the
reference's second optimiser also re-stepped the Linear, a bug not reproduced here).

Variants: `lerp_psa` (LerpPSA, save_memory off), `lerp_psa_save_memory`, `psa` (exact PSA, plain autograd),
`bspline` (the spec's baseline: DeepSplines' DeepBSpline kernel with save_memory on, models/deep_bspline.py),
`bspline_lerp` (our BSpline module: the same function on the LERP kernel that LerpPSA uses), `relu`, `gelu`;
768 channels, E = 8, LERP grid 64 and B-spline grid 65 over [-4, 4].

Time: median of `repeats` steps after warm-up, the variants' steps interleaved round-robin (CUDA: CUDA events).
On CPU the process CPU time per step is reported too (`median_cpu_ms`): on a machine shared with other work it
varies far less than the wall time (`build.py bench` runs one thread unless --threads says otherwise; with several
threads the CPU time adds them up). Peak memory: on CUDA `max_memory_allocated` over one step; on CPU the bytes
resident at the start of a step (parameters, optimiser state, input) plus the highest running total of the
allocations and frees that torch's profiler records during one step (its memory events): the CPU counterpart of
CUDA's figure, temporaries included. Ratios are to `bspline` (`*_vs_bspline`) and to `bspline_lerp`
(`*_vs_bspline_lerp`): LerpPSA does everything `bspline_lerp` does plus the grid PSA once per step, so against
that one it can at best draw level.
"""

import statistics
import time

import torch
from torch import nn

from psa_finn.common.atomic_files import write_json_atomic
from psa_finn.models import BSpline, LerpPSA, PSA
from psa_finn.models.deep_bspline import DeepBSpline

REFERENCE_ROWS = 16 * 512
CHANNELS = 768
APPLICATIONS = 4
DEFAULT_SCALE = 0.125
KERNEL_REPEATS = 10
WARMUP_STEPS = 2
TV2_WEIGHT = 1e-4
KERNEL_VARIANTS = ("lerp_psa", "lerp_psa_save_memory", "psa", "bspline", "bspline_lerp", "relu", "gelu")
BASELINES = ("bspline", "bspline_lerp")


def build_kernel_model(variant: str, channels: int = CHANNELS) -> nn.Sequential:
    """The reference workload: one activation module and one Linear, applied APPLICATIONS times in turn."""
    linear = nn.Linear(channels, channels)
    psa_kwargs = dict(expansion=8, epsilon=1.0, distill_init=True)
    activation = {
        "lerp_psa": lambda: LerpPSA(channels, save_memory=False, **psa_kwargs),
        "lerp_psa_save_memory": lambda: LerpPSA(channels, save_memory=True, **psa_kwargs),
        "psa": lambda: PSA(channels, **psa_kwargs),
        "bspline": lambda: DeepBSpline(channels),
        "bspline_lerp": lambda: BSpline(channels, save_memory=True),
        "relu": nn.ReLU,
        "gelu": nn.GELU,
    }[variant]()
    pair = [linear, activation] if variant in ("relu", "gelu") else [activation, linear]
    return nn.Sequential(*(pair * APPLICATIONS))


def _optimizers(model: nn.Sequential):
    splines = [p for m in model.modules() if isinstance(m, BSpline) for p in m.parameters()]
    dense = [p for p in model.parameters() if all(p is not s for s in splines)]
    optimizers = [torch.optim.AdamW(dense, lr=1e-3, weight_decay=5e-4)]
    if splines:
        optimizers.append(torch.optim.AdamW(splines, lr=1e-3, weight_decay=5e-4))
    return optimizers


def _tv2(model: nn.Sequential):
    return sum(m.tv2() for m in model.modules() if isinstance(m, BSpline))


def _training_step(model, optimizers, x, has_splines: bool) -> None:
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    loss = model(x).sum()
    if has_splines:
        loss = loss + TV2_WEIGHT * _tv2(model)
    loss.backward()
    for optimizer in optimizers:
        optimizer.step()


def _resident_bytes(model, optimizers, x) -> int:
    storages = {}
    tensors = [x, *model.parameters()]
    for optimizer in optimizers:
        for state in optimizer.state.values():
            tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    for t in tensors:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def _cpu_peak_bytes(step, model, optimizers, x) -> int:
    """Resident bytes at the start of `step()` plus the peak of its allocations net of frees (profiler events)."""
    resident = _resident_bytes(model, optimizers, x)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return resident + peak


class KernelCase:
    """One variant's model, optimisers and input, ready to run training steps."""

    def __init__(self, variant: str, rows: int, device):
        torch.manual_seed(0)
        self.variant = variant
        self.device = device
        self.model = build_kernel_model(variant).to(device).train()
        self.optimizers = _optimizers(self.model)
        self.x = torch.randn(rows, CHANNELS, device=device)
        self.times_ms = []
        self.cpu_times_ms = []

    def step(self) -> None:
        _training_step(self.model, self.optimizers, self.x, self.variant in BASELINES)

    def timed_step(self) -> None:
        if self.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.step()
            end.record()
            torch.cuda.synchronize()
            self.times_ms.append(start.elapsed_time(end))
        else:
            t0, c0 = time.perf_counter(), time.process_time()
            self.step()
            self.times_ms.append(1e3 * (time.perf_counter() - t0))
            self.cpu_times_ms.append(1e3 * (time.process_time() - c0))

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated(self.device)
        return _cpu_peak_bytes(self.step, self.model, self.optimizers, self.x)


def measure_variants(variants, rows: int, repeats: int, device) -> dict:
    """{variant: {'median_ms', 'peak_mb', 'times_ms'}}; timed steps are interleaved round-robin over the variants
    so that load from other processes on a shared machine spreads evenly over them."""
    cases = [KernelCase(v, rows, device) for v in variants]
    for case in cases:
        for _ in range(WARMUP_STEPS):
            case.step()
    for _ in range(repeats):
        for case in cases:
            case.timed_step()
    results = {}
    for case in cases:
        results[case.variant] = {"median_ms": statistics.median(case.times_ms), "peak_mb": case.peak_bytes() / 2 ** 20,
                                 "times_ms": case.times_ms}
        if case.cpu_times_ms:
            results[case.variant]["median_cpu_ms"] = statistics.median(case.cpu_times_ms)
    return results


def _print_table(results: dict, baselines, rows: int, repeats: int, device) -> None:
    cpu = device.type == "cpu"
    print(f"training step of [Act, Linear({CHANNELS},{CHANNELS})] x {APPLICATIONS} on [{rows}, {CHANNELS}] "
          f"({device}, {torch.get_num_threads()} threads, median of {repeats})")
    short = {"bspline": "bspl", "bspline_lerp": "bs_lerp"}
    header = f"{'variant':22s} {'median_ms':>10s}" + (f" {'cpu_ms':>8s}" if cpu else "") + f" {'peak_mb':>8s}"
    for baseline in baselines:
        header += f" {'time/' + short[baseline]:>12s} {'mem/' + short[baseline]:>11s}"
    print(header)
    for variant, f in results.items():
        line = f"{variant:22s} {f['median_ms']:10.1f}" + (f" {f['median_cpu_ms']:8.1f}" if cpu else "") + \
            f" {f['peak_mb']:8.1f}"
        for baseline in baselines:
            line += f" {f['time_vs_' + baseline]:12.3f} {f['memory_vs_' + baseline]:11.3f}"
        print(line)
    if "psa" in results and "lerp_psa" in results:
        print(f"lerp_psa / psa time: {results['lerp_psa']['median_ms'] / results['psa']['median_ms']:.2f}")


def run_kernel_bench(scale: float = DEFAULT_SCALE, repeats: int = KERNEL_REPEATS, json_path=None,
                     device=torch.device("cpu"), variants=KERNEL_VARIANTS) -> dict:
    """Measure every variant, print a table with ratios to both B-spline kernels, and optionally write JSON
    atomically."""
    if not scale > 0:
        raise ValueError(f"--scale must be positive, got {scale}")
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    unknown = [v for v in variants if v not in KERNEL_VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants: {'unknown ' + ', '.join(unknown) if unknown else 'none given'}; choose from "
                         f"{', '.join(KERNEL_VARIANTS)}")
    rows = max(1, round(REFERENCE_ROWS * scale))
    results = measure_variants(variants, rows, repeats, device)
    baselines = [b for b in BASELINES if b in results]
    for figures in results.values():
        for baseline in baselines:
            base = results[baseline]
            figures[f"time_vs_{baseline}"] = figures["median_ms"] / base["median_ms"]
            figures[f"memory_vs_{baseline}"] = figures["peak_mb"] / base["peak_mb"]
            if "median_cpu_ms" in figures:
                figures[f"cpu_time_vs_{baseline}"] = figures["median_cpu_ms"] / base["median_cpu_ms"]
    _print_table(results, baselines, rows, repeats, device)
    report = {"device": str(device), "rows": rows, "channels": CHANNELS, "scale": scale, "repeats": repeats,
              "threads": torch.get_num_threads(),
              "peak_memory_method": "cuda max_memory_allocated" if device.type == "cuda" else
              "resident parameters/optimiser state/input + peak of torch profiler CPU allocation events in a step",
              **results}
    if json_path:
        write_json_atomic(json_path, report)
    return report
