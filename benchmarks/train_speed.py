"""DP training speed against the same model trained without DP, in one process.

For each backend (vae, gan) and table size, the backend's own ``fit`` runs a fixed number of
steps three ways, swapping only the trainer:

* ``dp-ghost``: the shipped DPSGDTrainer (Poisson mask on the device, ghost clipping, noise);
* ``dp-hooks`` (``--modes``): materialised per-sample gradients (Opacus GradSampleModule with its
  vectorised einsum grad samplers + DPOptimizer), the other correct Opacus mode;
* ``plain``: the same model, the same Poisson batches (same mask generator), a plain torch Adam
  step on the mean loss: no clipping, no noise.

Rows/s = (steps - 1) · E[B] / time from the end of the first step to the end of the last one
(calibration and warm-up excluded), best of ``--repeats`` interleaved rounds (a shared machine's
load then biases no mode). Peak memory is measured in a fresh process per run:
``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the peak resident-set growth during
``fit`` over the process's size before it, sampled every 5 ms (approximate).

The large tables are Adult (privsynth/demo or /work/shared/datasets/adult.csv.gz) resampled with
replacement to the requested number of rows, encoded with the demo policy's public bins.

    python benchmarks/train_speed.py --device cpu --rows 50000 1000000 --steps 30
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

from privsynth.data.table import prepare_table, read_table
from privsynth.encoding.table_encoder import TableEncoder
from privsynth.generators import dp_sgd, gan, vae
from privsynth.generators.dp_sgd import DPSGDConfig, DPSGDPlan, resolve_device
from privsynth.policy.loader import load_policy
from privsynth.privacy.events import PrivacySpend
from privsynth.privacy.noise import SeededNoise

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT.parent / "shared" / "datasets" / "adult.csv.gz",
           ROOT / "privsynth" / "demo" / "adult.csv.gz"]


class _Hookless(torch.nn.Module):
    """Stands in for Opacus' wrapper where a backend toggles hooks (the GAN's G step)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self._module = module

    def forward(self, *args, **kwargs):
        return self._module(*args, **kwargs)

    def disable_hooks(self) -> None:
        """No hooks here."""

    def enable_hooks(self) -> None:
        """No hooks here."""


class _BaselineTrainer(dp_sgd.DPSGDTrainer):
    """Same Poisson batches as the DP trainer; subclasses set the module, optimizer, backward."""

    def _setup(self, plan, config, generator, device) -> None:
        self.plan, self.config, self.device, self.generator = plan, config, device, generator
        self.steps_done = 0

    def _backward(self, losses: torch.Tensor) -> None:
        raise NotImplementedError

    def step(self, data, loss_fn):
        batch = data[self.poisson_mask()]
        self.optimizer.zero_grad(set_to_none=True)
        losses = loss_fn(self.module, batch)
        self._backward(losses)
        self.optimizer.step()
        self.steps_done += 1
        return float(losses.detach().mean())

    def charge(self):
        return None

    def unwrapped(self):
        return self.module._module


class PlainTrainer(_BaselineTrainer):
    """Plain Adam on the mean loss: the non-private baseline."""

    def __init__(self, module, plan, config, *, generator, device, optimizer=torch.optim.Adam):
        self._setup(plan, config, generator, device)
        self.module = _Hookless(module.to(device))
        self.optimizer = optimizer(module.parameters(), lr=config.learning_rate)

    def _backward(self, losses: torch.Tensor) -> None:
        losses.mean().backward()


class HooksTrainer(_BaselineTrainer):
    """Materialised per-sample gradients (vectorised grad samplers), then clip and noise."""

    def __init__(self, module, plan, config, *, generator, device, optimizer=torch.optim.Adam):
        self._setup(plan, config, generator, device)
        self.module = GradSampleModule(module.to(device), batch_first=True, loss_reduction="sum")
        self.optimizer = DPOptimizer(
            optimizer(self.module.parameters(), lr=config.learning_rate),
            noise_multiplier=plan.noise_multiplier, max_grad_norm=config.max_grad_norm,
            expected_batch_size=max(1, round(plan.sample_rate * plan.n_rows)),
            loss_reduction="mean", generator=generator)

    def _backward(self, losses: torch.Tensor) -> None:
        losses.sum().backward()


TRAINERS = {"dp-ghost": dp_sgd.DPSGDTrainer, "dp-hooks": HooksTrainer, "plain": PlainTrainer}


@contextlib.contextmanager
def trainer_as(cls):
    """Swap the trainer class the backends build (module attribute lookup at fit time)."""
    saved = vae.DPSGDTrainer, gan.DPSGDTrainer
    vae.DPSGDTrainer = gan.DPSGDTrainer = cls
    try:
        yield
    finally:
        vae.DPSGDTrainer, gan.DPSGDTrainer = saved


class PeakRSS:
    """Peak growth of the resident set while the block runs (CPU), sampled in a thread."""

    def __enter__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.start = self.peak = self._rss()
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _watch(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def grown(self) -> int:
        return self.peak - self.start


def adult_codes(rows: int, seed: int = 0) -> tuple[np.ndarray, list[int], str]:
    """Adult encoded with the demo policy's public uniform bins, resampled to ``rows``."""
    source = next(p for p in SOURCES if p.exists())
    policy = load_policy(ROOT / "policies" / "adult-demo.yaml")
    frame = prepare_table(read_table(source, policy), policy).frame
    # Benchmark only: uniform bins (free) so no DP estimate is needed to encode.
    columns = {n: r.model_copy(update={"binning": "uniform"}) for n, r in policy.columns.items()}
    policy = policy.model_copy(update={"columns": columns})
    from privsynth.encoding.table_encoder import EncodingBudget  # noqa: PLC0415

    encoder = TableEncoder.fit(frame, policy, EncodingBudget(0.0, 0.0, 0), PrivacySpend(),
                               SeededNoise(np.random.default_rng(seed)))
    codes = encoder.transform(frame)
    pick = np.random.default_rng(seed).integers(0, len(codes), rows)
    return codes[pick], encoder.widths, str(source)


def make_backend(name: str):
    if name == "vae":
        return vae.DPVAE(hidden=[64], latent_dim=8, kl_weight=0.2)
    return gan.DPGAN(hidden=[64])


def run_one(backend: str, mode: str, codes, widths, config, device, steps):
    times: list[float] = []

    def progress(step, total, loss):
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = make_backend(backend)
    with trainer_as(TRAINERS[mode]), PeakRSS() as rss:
        model.fit(codes, widths, config, generator=torch.Generator(device).manual_seed(0),
                  device=device, progress=progress)
    batch = config.expected_batch_size
    rate = (len(times) - 1) * batch / (times[-1] - times[0])
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else rss.grown
    return rate, peak


def fresh_process_peak(args, backend: str, rows: int, mode: str) -> int:
    """Peak memory of one run in a fresh process (no allocator cache from earlier runs)."""
    command = [sys.executable, __file__, "--memory-only", "--device", args.device,
               "--rows", str(rows), "--steps", str(args.steps), "--batch", str(args.batch),
               "--backends", backend, "--modes", mode, "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(next(line for line in out.splitlines() if line.startswith("PEAK")).split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--steps", type=int, default=30, help="DP-SGD steps measured per run")
    parser.add_argument("--batch", type=int, default=4096, help="expected Poisson batch E[B]")
    parser.add_argument("--backends", nargs="+", default=["vae", "gan"])
    parser.add_argument("--modes", nargs="+", default=["dp-ghost", "plain"],
                        choices=list(TRAINERS))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over the modes, interleaved; the best rate is kept")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # Opacus hook and accountant notices
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{os.cpu_count()}"
    if args.memory_only:
        args.repeats = 1
    else:
        print(f"device: {device} ({name}); torch {torch.__version__}; threads "
              f"{torch.get_num_threads()}; E[B]={args.batch}; {args.steps} steps per run, "
              f"best of {args.repeats}")
    header = (f"{'backend':7} {'rows':>9} {'mode':9} {'rows/s':>10} {'t/plain':>8} "
              f"{'peak MiB':>9}")
    if not args.memory_only:
        print(header)
    results = []
    for rows in args.rows:
        codes, widths, source = adult_codes(rows)
        epochs = args.steps * args.batch / rows
        config = DPSGDConfig(epsilon=1.0, delta=1e-7, expected_batch_size=args.batch,
                             epochs=epochs, max_grad_norm=1.0, learning_rate=1e-3)
        plan = DPSGDPlan.calibrate(config, rows)
        if args.memory_only:
            _, peak = run_one(args.backends[0], args.modes[0], codes, widths, config, device,
                              plan.steps)
            print(f"PEAK {peak}")
            return
        for backend in args.backends:
            rates: dict[str, float] = {}
            for _ in range(args.repeats):
                for mode in args.modes:
                    rate, _ = run_one(backend, mode, codes, widths, config, device, plan.steps)
                    rates[mode] = max(rates.get(mode, 0.0), rate)
            for mode in args.modes:
                peak = fresh_process_peak(args, backend, rows, mode)
                results.append((backend, rows, mode, rates[mode], peak))
            base = rates.get("plain")
            for b, r, m, rate, peak in results[-len(args.modes):]:
                ratio = f"{base / rate:8.2f}" if base else "       -"
                print(f"{b:7} {r:>9} {m:9} {rate:>10.0f} {ratio} {peak / 2**20:>9.1f}",
                      flush=True)
        print(f"  ({rows} rows: {Path(source).name} resampled with replacement; "
              f"{plan.steps} steps, sigma={plan.noise_multiplier:.2f})", flush=True)


if __name__ == "__main__":
    main()
