#!/usr/bin/env python3
"""Side-by-side CPU benchmark: dype (Rust, burn Flex) against the reference PyTorch FiT.

The same FiTv2 model (the bundled shapes model, ``examples/shapes``), the same weights and the
same closed-form inputs run in

* dype: ``benches/bin/vs_torch.rs`` (built with cargo unless ``--dype-bin`` is given, run with
  ``RAYON_NUM_THREADS=<threads>``), and
* PyTorch: the reference FiT code (whlzy/FiT) from a checkout you supply with ``--fit``; nothing
  of it is vendored here.

Rows (defined by ``vs_torch.rs``; the inputs below are built the same way on both sides):

* ``eval_b2_{n}x{n}`` (n = 8, 16, 32): one guided evaluation, ``FiT.forward_with_cfg`` with
  scale 1.5 on ``x[j] = sin(0.37 j)`` over the flat ``[2, n², 48]`` tokens, ``t = [0.4, 0.4]``,
  ``y = [3, 8]`` (8 = the null class), base 2-D RoPE on the n × n grid.
* ``train_b{b}_8x8`` (b = 32, 64): one training step (zero_grad, flow-matching forward, backward,
  per-parameter gradient-norm clipping to 1, AdamW, EMA update) on 32² px images
  ``sin(0.37 j)``, noise ``cos(0.23 j)``, ``t_i = (i + 0.5)/b``, ``y_i = i mod 9``.

A parity check compares dype's raw output of every evaluation row (``--dump``) with PyTorch's
(relative L2 error; about 1e-6 expected, f32 rounding).

Usage::

    python scripts/bench_vs_torch.py --fit ~/src/FiT [--threads 2] [--samples 10] [--compile]
        [--rows eval_b2_8x8,train_b32_8x8] [--dype-bin target/release/vs_torch]
        [--json results.json] [--dype-only | --torch-only]

Needs Python 3.9+, torch (CPU is enough), numpy, safetensors, timm and einops (FiT's own
dependencies for the RoPE/SwiGLU/adaLN-LoRA model). A FiT checkout lacks ``fit/model/sincos.py``
(imported by ``fit_model.py`` but used only by absolute sin-cos position embeddings); that module
and a few other import-time-only dependencies are replaced by stubs when, and only when, they
cannot be imported; the script says which.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS = [
    "eval_b2_8x8",
    "eval_b2_16x16",
    "eval_b2_32x32",
    "train_b32_8x8",
    "train_b64_8x8",
]
GUIDANCE = 1.5
EVAL_T = 0.4
EVAL_CLASS = 3
# dype_lab::train::TrainConfig::default() (the training rows use it with only the batch changed)
# and burn's AdamWConfig defaults (beta 0.9 / 0.999, epsilon 1e-5).
TRAIN = {
    "image_size": 32,
    "learning_rate": 6e-4,
    "warmup_steps": 200,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "ema_decay": 0.995,
    "betas": (0.9, 0.999),
    "eps": 1e-5,
}
F32_MIN_POSITIVE = 1.1754943508222875e-38  # burn's clip_by_norm adds it to the norm
PARITY_WARN = 1e-5


def die(msg: str) -> "None":
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="CPU benchmark of dype (burn Flex) against the reference PyTorch FiT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python scripts/bench_vs_torch.py --fit ~/src/FiT --threads 2 --compile",
    )
    p.add_argument("--fit", type=Path, help="path to a checkout of github.com/whlzy/FiT")
    p.add_argument("--threads", type=int, default=2, help="threads for both sides (default 2)")
    p.add_argument("--samples", type=int, default=10, help="timed calls per row (default 10)")
    p.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows (default: all)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    p.add_argument("--dype-bin", type=Path, help="prebuilt vs_torch binary (skips cargo build)")
    p.add_argument(
        "--weights",
        type=Path,
        default=REPO / "examples/shapes/model.safetensors",
        help="FiT-layout safetensors (default: examples/shapes/model.safetensors)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=REPO / "examples/shapes/config.json",
        help="model config, read from train.model (default: examples/shapes/config.json)",
    )
    p.add_argument("--json", type=Path, help="also write all results to this JSON file")
    side = p.add_mutually_exclusive_group()
    side.add_argument("--dype-only", action="store_true", help="run only the dype side")
    side.add_argument("--torch-only", action="store_true", help="run only the PyTorch side")
    a = p.parse_args()
    a.rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    bad = [r for r in a.rows if r not in ROWS]
    if bad or not a.rows:
        p.error(f"unknown row(s) {', '.join(bad) or '(none given)'}; rows: {', '.join(ROWS)}")
    if a.threads < 1:
        p.error("--threads must be at least 1")
    if a.samples < 1:
        p.error("--samples must be at least 1")
    if not a.dype_only:
        if a.fit is None:
            p.error("--fit PATH (a checkout of github.com/whlzy/FiT) is required for the PyTorch side")
        a.fit = a.fit.expanduser().resolve()
        if not (a.fit / "fit/model/fit_model.py").is_file():
            p.error(f"--fit {a.fit}: no fit/model/fit_model.py there (is it a FiT checkout?)")
    for what, path in (("--weights", a.weights), ("--config", a.config)):
        if not path.is_file():
            p.error(f"{what} {path}: no such file")
    return a


def median(v):
    return statistics.median(v) if v else None


def model_config(path: Path) -> dict:
    cfg = json.loads(path.read_text())
    try:
        return cfg["train"]["model"]
    except (KeyError, TypeError):
        die(f"{path}: no train.model section")


# ---------------------------------------------------------------------------------------------
# dype side
# ---------------------------------------------------------------------------------------------


def cargo_target_dir() -> Path:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(json.loads(out)["target_directory"])


def dype_binary(args) -> Path:
    if args.dype_bin is not None:
        b = args.dype_bin.expanduser().resolve()
        if not b.is_file():
            die(f"--dype-bin {b}: no such file")
        return b
    if shutil.which("cargo") is None:
        die("cargo not found: install Rust or pass --dype-bin PATH")
    cmd = ["cargo", "build", "--release", "-p", "dype-benches", "--bin", "vs_torch"]
    print("$", " ".join(cmd), file=sys.stderr)
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        die("cargo build failed")
    exe = "vs_torch.exe" if os.name == "nt" else "vs_torch"
    return cargo_target_dir() / "release" / exe


def run_dype(args, binary: Path, dump: Path) -> dict:
    cmd = [
        str(binary),
        "--rows", ",".join(args.rows),
        "--samples", str(args.samples),
        "--weights", str(args.weights.resolve()),
        "--dump", str(dump),
    ]
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    print(f"$ RAYON_NUM_THREADS={args.threads} {' '.join(cmd)}", file=sys.stderr)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        die(f"the dype binary failed (exit {proc.returncode})")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        die(f"the dype binary printed no JSON ({e}): {proc.stdout[:400]!r}")
    if report.get("threads") != args.threads:
        print(f"warning: dype reports {report.get('threads')} threads", file=sys.stderr)
    return report


# ---------------------------------------------------------------------------------------------
# PyTorch side: importing the reference
# ---------------------------------------------------------------------------------------------


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__bench_stub__ = True
    sys.modules[name] = mod
    return mod


def _unavailable(what: str):
    def f(*_a, **_k):
        raise RuntimeError(f"{what} is a stub in bench_vs_torch.py (not needed by the benchmark)")

    return f


def _importable(name: str):
    """None when `name` imports, else the reason it does not."""
    try:
        importlib.import_module(name)
        return None
    except Exception as e:  # any import-time failure (missing module, no driver, ...)
        return f"{type(e).__name__}: {e}"


def import_fit(fit_path: Path):
    """Imports FiT from the checkout, stubbing only absent import-time-only modules.

    Returns (FiT class, [stub descriptions]).
    """
    sys.path.insert(0, str(fit_path))
    stubs = []
    # Never stubbed: they are on the forward path (SwiGLU from timm, rearrange from einops).
    for need in ("timm", "einops"):
        why = _importable(need)
        if why:
            die(f"FiT needs {need} on its forward path ({why}); pip install {need}")
    # 1. fit/model/sincos.py is absent from the public repo; fit_model.py imports
    #    get_2d_sincos_pos_embed_from_grid from it but only absolute sin-cos embeddings use it.
    if importlib.util.find_spec("fit.model.sincos") is None:
        _stub(
            "fit.model.sincos",
            get_2d_sincos_pos_embed_from_grid=_unavailable("get_2d_sincos_pos_embed_from_grid"),
        )
        stubs.append(
            "fit.model.sincos (absent from the FiT repo; only absolute sin-cos position "
            "embeddings use it, not the RoPE model)"
        )
    # 2. fit/model/norms.py imports triton for fused kernels; create_norm('layernorm') is
    #    plain torch.nn.LayerNorm.
    why = _importable("triton.language")
    if why:
        class _Any:
            def __getattr__(self, _n):
                return _Any()

            def __call__(self, *a, **_k):
                return a[0] if len(a) == 1 and callable(a[0]) else _Any()

        tl = _stub("triton.language", constexpr=_Any())
        tl.__getattr__ = lambda _n: _Any()
        _stub("triton", language=tl, jit=lambda f=None, **_k: f if f else (lambda g: g),
              autotune=lambda *a, **k: (lambda g: g), Config=_Any(), heuristics=lambda *a, **k: (lambda g: g),
              cdiv=lambda a, b: -(-a // b))
        stubs.append(
            f"triton, triton.language ({why}); fit/model/norms.py imports them for fused kernels, "
            "the layernorm used here is torch.nn.LayerNorm"
        )
    # 3. fit/utils/eval_utils.py (PIL, tqdm, ...): fit_model.py imports init_from_ckpt, used only
    #    with pretrain_ckpt; the script loads the weights itself with load_state_dict(strict=True).
    why = _importable("fit.utils.eval_utils")
    if why:
        for k in [k for k in sys.modules if k == "fit.utils.eval_utils"]:
            del sys.modules[k]
        _stub("fit.utils.eval_utils", init_from_ckpt=_unavailable("init_from_ckpt"))
        stubs.append(f"fit.utils.eval_utils ({why}); only init_from_ckpt(pretrain_ckpt) uses it")
    try:
        fm = importlib.import_module("fit.model.fit_model")
    except Exception as e:
        die(f"cannot import fit.model.fit_model from {fit_path}: {type(e).__name__}: {e}")
    src = Path(fm.__file__).resolve()
    if fit_path not in src.parents:
        die(f"fit.model.fit_model was imported from {src}, not from --fit {fit_path}")
    return fm.FiT, stubs


def fit_kwargs(m: dict) -> dict:
    """FiT constructor arguments that reproduce FiTv2 (configs/fitv2/config_fitv2_xl.yaml) at the
    shapes model's size, with base ('normal') RoPE as sample_fitv2_ddp.py sets it for no
    interpolation."""
    if m.get("learn_sigma"):
        die("learn_sigma models are not supported (FiTv2 uses use_sit=True, learn_sigma=False)")
    return dict(
        context_size=int(m["ori_max_pe_len"]) ** 2,
        patch_size=int(m["patch_size"]),
        in_channels=int(m["in_channels"]),
        hidden_size=int(m["hidden_size"]),
        depth=int(m["depth"]),
        num_heads=int(m["num_heads"]),
        mlp_ratio=float(m["mlp_ratio"]),
        class_dropout_prob=0.1,  # > 0: the table gets the null-class row (num_classes + 1 rows)
        num_classes=int(m["num_classes"]),
        learn_sigma=False,
        use_sit=True,  # tokens [B, N, C], velocity prediction
        use_swiglu=True,
        use_swiglu_large=False,  # hidden (2/3)·mlp_ratio·D
        q_norm="layernorm",
        k_norm="layernorm",
        qk_norm_weight=False,  # LayerNorm without affine on q and k
        rel_pos_embed="rope",
        abs_pos_embed=None,
        norm_type="layernorm",
        adaln_type="lora",
        adaln_lora_dim=int(m["adaln_lora_dim"]),
        rope_theta=float(m["rope_theta"]),
        custom_freqs="normal",  # base RoPE, no extrapolation
        decouple=True,
        ori_max_pe_len=int(m["ori_max_pe_len"]),
        online_rope=False,
    )


# ---------------------------------------------------------------------------------------------
# PyTorch side: inputs, rows
# ---------------------------------------------------------------------------------------------


class TorchSide:
    def __init__(self, args, torch, np):
        self.args, self.torch, self.np = args, torch, np
        self.mcfg = model_config(args.config)
        self.FiT, self.stubs = import_fit(args.fit)
        self.kwargs = fit_kwargs(self.mcfg)
        self.p = int(self.mcfg["patch_size"])
        self.c = int(self.mcfg["in_channels"]) * self.p * self.p
        self.null = int(self.mcfg["num_classes"])
        from safetensors.torch import load_file

        self.state = load_file(str(args.weights))
        self.model = self.build()
        try:
            missing, unexpected = self.model.load_state_dict(self.state, strict=True)
        except RuntimeError as e:
            die(f"{args.weights} does not load into FiT({self.kwargs}) with strict=True:\n{e}")
        self.load_report = {
            "tensors": len(self.state),
            "missing": list(missing),
            "unexpected": list(unexpected),
        }
        self.model.eval()

    def build(self):
        return self.FiT(**self.kwargs)

    # -- closed-form inputs ------------------------------------------------------------------

    def wave(self, n: int, freq: float, cos: bool = False):
        a = freq * self.np.arange(n, dtype=self.np.float64)
        return (self.np.cos(a) if cos else self.np.sin(a)).astype(self.np.float32)

    def grid(self, b: int, h: int, w: int):
        """FiT's grid [B, 2, N] (long): row 0 = column index, row 1 = row index, row-major tokens,
        as sample_fitv2_ddp.py builds it."""
        torch = self.torch
        gw, gh = torch.meshgrid(
            torch.arange(w, dtype=torch.long), torch.arange(h, dtype=torch.long), indexing="xy"
        )
        g = torch.cat([gw.reshape(1, -1), gh.reshape(1, -1)], dim=0)
        return g.unsqueeze(0).repeat(b, 1, 1).contiguous()

    def eval_inputs(self, n: int):
        torch = self.torch
        tokens = n * n
        x = torch.from_numpy(self.wave(2 * tokens * self.c, 0.37).reshape(2, tokens, self.c))
        t = torch.tensor([EVAL_T, EVAL_T], dtype=torch.float32)
        y = torch.tensor([EVAL_CLASS, self.null], dtype=torch.long)
        mask = torch.ones(2, tokens, dtype=torch.float32)
        return x, t, y, self.grid(2, n, n), mask

    # -- timing --------------------------------------------------------------------------------

    @staticmethod
    def time(fn, samples: int, warmup: int):
        first = None
        for i in range(warmup):
            s = time.perf_counter()
            fn()
            if i == 0:
                first = (time.perf_counter() - s) * 1e3
        out = []
        for _ in range(samples):
            s = time.perf_counter()
            fn()
            out.append((time.perf_counter() - s) * 1e3)
        return out, first

    def eval_fn(self, model, n: int, compiled: bool):
        torch = self.torch
        x, t, y, grid, mask = self.eval_inputs(n)
        f = model.forward_with_cfg
        if compiled:
            torch._dynamo.reset()
            f = torch.compile(f)

        def call():
            with torch.no_grad():
                return f(x, t, y, grid, mask, None, GUIDANCE)

        return call

    def eval_row(self, n: int, compiled: bool):
        fn = self.eval_fn(self.model, n, compiled)
        times, first = self.time(fn, self.args.samples, 2)
        return {"median_ms": median(times), "samples_ms": times, "first_call_ms": first}, fn

    def output(self, n: int, dtype=None):
        """The eager output of eval row n (float64 copy of the model when dtype is float64)."""
        torch = self.torch
        model = self.model
        if dtype is not None:
            model = copy.deepcopy(self.model).to(dtype)
        x, t, y, grid, mask = self.eval_inputs(n)
        if dtype is not None:
            x64 = torch.from_numpy(
                self.np.sin(0.37 * self.np.arange(x.numel(), dtype=self.np.float64)).reshape(x.shape)
            ).to(dtype)
            x, t, mask = x64, t.to(dtype), mask.to(dtype)
        with torch.no_grad():
            return model.forward_with_cfg(x, t, y, grid, mask, None, GUIDANCE)

    # -- training ------------------------------------------------------------------------------

    def train_step_fn(self, b: int, compiled: bool):
        torch, np = self.torch, self.np
        s, p = TRAIN["image_size"], self.p
        per = 3 * s * s
        images = self.wave(b * per, 0.37).reshape(b, 3, s, s)
        noise = self.wave(b * per, 0.23, cos=True).reshape(b, 3, s, s)
        t = torch.from_numpy(((np.arange(b, dtype=np.float64) + 0.5) / b).astype(np.float32))
        y = torch.from_numpy((np.arange(b) % 9).astype(np.int64))
        n = s // p
        grid = self.grid(b, n, n)  # one object: FiT's lru_cache keeps its RoPE tables
        mask = torch.ones(b, n * n, dtype=torch.float32)

        # A fresh model with FiT's own DiT-style init (dype's Trainer::new draws the same scheme:
        # Xavier linears, N(0, 0.02) table and t-MLP, zero adaLN and final layer).
        torch.manual_seed(0)
        model = self.build()
        model.train()
        # dype's Trainer::step_on takes the batch's labels as they are (its label dropout happens
        # when batches are drawn; y_i = i mod 9 already holds null labels), so FiT's in-forward
        # token_drop is turned off; the null-class row stays.
        model.y_embedder.dropout_prob = 0.0
        ema = copy.deepcopy(model)
        for q in ema.parameters():
            q.requires_grad_(False)
        params = [q for q in model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(
            params,
            lr=TRAIN["learning_rate"],
            betas=TRAIN["betas"],
            eps=TRAIN["eps"],
            weight_decay=TRAIN["weight_decay"],
        )
        fwd = model
        if compiled:
            torch._dynamo.reset()
            fwd = torch.compile(model)
        step = [0]
        update_ema = _update_ema(torch)

        def patchify(v):
            return (
                torch.from_numpy(v)
                .reshape(b, 3, s // p, p, s // p, p)
                .permute(0, 2, 4, 1, 3, 5)
                .reshape(b, n * n, 3 * p * p)
            )

        def train_step():
            k = step[0]
            x1, x0 = patchify(images), patchify(noise)
            opt.zero_grad(set_to_none=True)
            tt = t.view(-1, 1, 1)
            xt = tt * x1 + (1 - tt) * x0
            v = fwd(xt, t, y, grid, mask)
            loss = ((v - (x1 - x0)) ** 2).mean()
            value = loss.item()  # dype reads the loss back (and checks it) before backward
            if not math.isfinite(value):
                raise RuntimeError(f"non-finite loss {value} at step {k}")
            loss.backward()
            grads = [q.grad for q in params if q.grad is not None]
            norms = torch.stack(torch._foreach_norm(grads, 2.0))
            coef = (TRAIN["grad_clip"] / (norms + F32_MIN_POSITIVE)).clamp(max=1.0)
            torch._foreach_mul_(grads, list(coef.unbind(0)))
            warm = min((k + 1) / max(TRAIN["warmup_steps"], 1), 1.0)
            for g in opt.param_groups:
                g["lr"] = TRAIN["learning_rate"] * warm
            opt.step()
            update_ema(ema, model, min(TRAIN["ema_decay"], (1 + k) / (10 + k)))
            step[0] += 1
            return value

        return train_step

    def train_row(self, b: int, compiled: bool):
        fn = self.train_step_fn(b, compiled)
        times, first = self.time(fn, self.args.samples, 1)
        return {"median_ms": median(times), "samples_ms": times, "first_call_ms": first}


def _update_ema(torch):
    # The body of FiT's fit.utils.utils.update_ema (called as train_fitv2.py calls it). The
    # reference function itself cannot run: its module uses OrderedDict without importing it.
    @torch.no_grad()
    def update_ema(ema_model, model, decay):
        ema_params = dict(ema_model.named_parameters())
        for name, param in model.named_parameters():
            ema_params[name].mul_(decay).add_(param.data, alpha=1 - decay)

    return update_ema


def row_n(name: str) -> int:
    return int(name.rsplit("_", 1)[1].split("x")[0])


def row_batch(name: str) -> int:
    return int(name.split("_")[1][1:])


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v, unit=" ms"):
    return "—" if v is None else f"{v:.2f}{unit}"


def main():
    args = parse_args()
    torch = np = None
    if not args.dype_only:
        try:
            import numpy as np  # noqa: F811
            import torch  # noqa: F811
        except ImportError as e:
            die(f"{e.name or e} is not installed (pip install torch numpy safetensors timm einops)")
        try:
            import safetensors  # noqa: F401
        except ImportError:
            die("safetensors is not installed (pip install safetensors)")
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError as e:
            print(f"warning: set_num_interop_threads(1): {e}", file=sys.stderr)

    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": getattr(torch, "__version__", None),
        "python": platform.python_version(),
        "dype_commit": git_commit(),
        "samples": args.samples,
        "rows": {r: {} for r in args.rows},
        "notes": [],
    }

    # dype first, then PyTorch: the two never run at the same time.
    dump = Path(tempfile.mkdtemp(prefix="dype_vs_torch_"))
    try:
        if not args.torch_only:
            binary = dype_binary(args)
            results["dype_bin"] = str(binary)
            rep = run_dype(args, binary, dump)
            results["dype_impl"] = rep.get("impl")
            for r in rep.get("rows", []):
                if r["name"] in results["rows"]:
                    results["rows"][r["name"]]["dype"] = {
                        "median_ms": r["median_ms"],
                        "samples_ms": r["samples_ms"],
                    }

        side = None
        if not args.dype_only:
            side = TorchSide(args, torch, np)
            results["fit_kwargs"] = side.kwargs
            results["fit_load"] = side.load_report
            results["stubs"] = side.stubs
            print(
                f"FiT: loaded {side.load_report['tensors']} tensors from {args.weights} with "
                f"load_state_dict(strict=True): {len(side.load_report['missing'])} missing, "
                f"{len(side.load_report['unexpected'])} unexpected",
                file=sys.stderr,
            )
            if side.stubs:
                for s in side.stubs:
                    print(f"stub used: {s}", file=sys.stderr)
            else:
                print("stubs used: none", file=sys.stderr)
            for name in args.rows:
                row = results["rows"][name]
                print(f"torch {name} ...", file=sys.stderr)
                if name.startswith("eval"):
                    row["torch"], _ = side.eval_row(row_n(name), compiled=False)
                else:
                    row["torch"] = side.train_row(row_batch(name), compiled=False)
                if args.compile:
                    try:
                        if name.startswith("eval"):
                            row["compile"], cfn = side.eval_row(row_n(name), compiled=True)
                            eager = side.output(row_n(name))
                            got = cfn()
                            row["compile"]["rel_l2_vs_eager"] = float(
                                (got.double() - eager.double()).norm() / eager.double().norm()
                            )
                        else:
                            row["compile"] = side.train_row(row_batch(name), compiled=True)
                    except Exception as e:  # report and go on
                        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
                        row["compile"] = {"error": msg}
                        print(f"torch.compile failed on {name}: {msg}", file=sys.stderr)

        # parity of every evaluation row both sides ran
        if side is not None and not args.torch_only:
            for name in args.rows:
                if not name.startswith("eval"):
                    continue
                f = dump / f"{name}.f32"
                if not f.is_file():
                    continue
                n = row_n(name)
                ref = side.output(n).double()
                ours = torch.from_numpy(np.fromfile(f, dtype="<f4").astype(np.float64))
                if ours.numel() != ref.numel():
                    die(f"{f}: {ours.numel()} values, PyTorch gives {ref.numel()}")
                ours = ours.reshape(ref.shape)
                exact = side.output(n, torch.float64)
                results["rows"][name]["parity"] = {
                    "rel_l2": float((ours - ref).norm() / ref.norm()),
                    "max_abs": float((ours - ref).abs().max()),
                    "rel_l2_dype_vs_f64": float((ours - exact).norm() / exact.norm()),
                    "rel_l2_torch_vs_f64": float((ref - exact).norm() / exact.norm()),
                }
    finally:
        shutil.rmtree(dump, ignore_errors=True)

    results["notes"] = notes(args)
    print_report(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    bad = [
        (n, r["parity"]["rel_l2"])
        for n, r in results["rows"].items()
        if "parity" in r and r["parity"]["rel_l2"] > PARITY_WARN
    ]
    if bad:
        print(
            "\nwarning: parity above 1e-5 on "
            + ", ".join(f"{n} ({v:.2e})" for n, v in bad)
            + ": the two sides do not compute the same model",
            file=sys.stderr,
        )
        sys.exit(1)


def notes(args) -> list:
    out = [
        "Both sides take the RoPE cos/sin tables out of the timed call: dype builds them once "
        "(RotaryEmbedding) before timing; FiT's forward calls get_cached_2d_rope_from_grid, a "
        "functools.lru_cache keyed on the grid tensor's identity, so every timed call (same grid "
        "object) reuses the tables from the first warm-up call.",
        "FiT's forward always takes a mask: each attention builds a [B,1,N,N] bool mask (all true "
        "here) for scaled_dot_product_attention and multiplies by the mask; dype runs unmasked "
        "(mask None).",
        "Train step, both sides: patchify from host arrays, x_t = t·x1 + (1−t)·x0, MSE to x1 − x0, "
        "loss read back, backward, per-tensor grad L2 clip to 1 (burn GradientClippingConfig::Norm), "
        "AdamW (lr 6e-4·warm-up (s+1)/200, betas 0.9/0.999, eps 1e-5 = burn's default, no weight "
        "decay), EMA decay min(0.995, (1+s)/(10+s)) (the per-parameter mul_/add_ of FiT's update_ema). FiT's own "
        "train_fitv2.py clips the global norm instead; FiT's label dropout is off "
        "(y_embedder.dropout_prob = 0) since dype's step takes labels as given.",
        "Training models start from the DiT/FiT init (zero adaLN and final layer) on both sides, "
        "not from the shapes weights; torch's AdamW runs its default path (the for-loop one on CPU).",
    ]
    if args.compile:
        out.append(
            "torch.compile: default mode, torch._dynamo.reset() before each row, compile time "
            "(first call) excluded and reported in the JSON as first_call_ms; Dynamo traces through "
            "lru_cache wrappers, so the compiled graph recomputes the RoPE lookup/cos/sin per call."
        )
    return out


def print_report(args, res):
    print()
    print(
        f"{res['date']} · {res['cpu']} · {res['threads']} threads · torch {res['torch']} · "
        f"dype {res['dype_commit']} · {res['samples']} samples (median)"
    )
    if res.get("stubs"):
        print("stubs: " + "; ".join(res["stubs"]))
    elif "stubs" in res:
        print("stubs: none")
    print()
    head = "| work | dype (burn Flex) median | PyTorch eager median | ratio dype/eager |"
    sep = "|---|---:|---:|---:|"
    if args.compile:
        head += " torch.compile median | ratio dype/compile |"
        sep += "---:|---:|"
    print(head)
    print(sep)
    for name in args.rows:
        r = res["rows"][name]
        d = r.get("dype", {}).get("median_ms")
        e = r.get("torch", {}).get("median_ms")
        ratio = f"{d / e:.2f}" if d and e else "—"
        line = f"| {name} | {fmt(d)} | {fmt(e)} | {ratio} |"
        if args.compile:
            c = r.get("compile", {})
            if "error" in c:
                line += " failed | — |"
            else:
                cm = c.get("median_ms")
                line += f" {fmt(cm)} | {f'{d / cm:.2f}' if d and cm else '—'} |"
        print(line)
    par = [(n, r["parity"]) for n, r in res["rows"].items() if "parity" in r]
    if par:
        print()
        print("| parity | rel L2 dype vs torch | max abs | dype vs f64 | torch f32 vs f64 |")
        print("|---|---:|---:|---:|---:|")
        for n, p in par:
            print(
                f"| {n} | {p['rel_l2']:.2e} | {p['max_abs']:.2e} | "
                f"{p['rel_l2_dype_vs_f64']:.2e} | {p['rel_l2_torch_vs_f64']:.2e} |"
            )
    fails = {n: r["compile"]["error"] for n, r in res["rows"].items() if "error" in r.get("compile", {})}
    for n, e in fails.items():
        print(f"torch.compile failed on {n}: {e}")
    print()
    for line in res["notes"]:
        print(f"- {line}")


if __name__ == "__main__":
    main()
