#!/usr/bin/env python3
"""PyTorch peer of `xdistill bench train` (and `distill`): the same models, data, batch size,
optimizer and thread counts, timed the same way, so the two can be put side by side.

Models: the Fashion-MNIST teacher CNN (conv3x3 1->32 pad 1, ReLU, maxpool 2, conv3x3 32->64 pad 1,
ReLU, maxpool 2, fc 3136->128, ReLU, fc 128->10) and the MLP student (784-128-10). One step is
forward + cross-entropy + backward + AdamW (lr 1e-3, weight decay 0, as the recipes), batch 128,
on the first 4096 training images of data/fashion-mnist/dataset.xds (read here with NumPy from the
container layout of io/dataset.h, versions 1 and 2, checksums checked), converted to floats x/255
once before timing; random data of the same shape when the file is missing, as the C suite does.
Case teacher_cnn_fwd is the teacher's forward alone at batch 256 in eval mode (what building a
teacher-output cache costs). Each figure is the median of repeated steps (at least 20 and at
least --seconds) with min and max; epoch = 60000 images.

Every case runs in float32 (rows NAME) and under bf16 autocast (torch.autocast on the CPU with
torch.bfloat16: rows NAME_bf16), as ours runs with train.precision float32 and bf16. PyTorch gets
its best configuration of each precision: torch.set_num_threads(n) per thread count, and before
the timed run each case tries the variants that can matter on a CPU (for the teacher oneDNN or
PyTorch's own convolution and NCHW or channels-last memory; for training steps AdamW's for-each
or per-parameter update; for forwards torch.no_grad or torch.inference_mode) and keeps the
fastest; the table names the one kept and the fastest overall. The distill suite runs one fixed
configuration (float32, oneDNN, NCHW, per-parameter AdamW). The script prints what PyTorch runs:
its build configuration, the BLAS library it loaded and the kernel OpenBLAS chose.

PyTorch's linear layers run in OpenBLAS, whose kernel is fixed when the library loads: by
OPENBLAS_CORETYPE if the environment sets it, else by OpenBLAS's own look at the CPU. Before it
imports torch, the script times PyTorch's MLP step in a child process under each (the
environment's setting, and the library's choice with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
removed for PyTorch alone) and keeps the faster; --blas-kernel NAME forces one. (xdistill's own
products do not use OpenBLAS.)

With --ours FILE (the output of `xdistill bench train --json`) it takes the thread counts from our
run and prints a table of our figures next to PyTorch's with the ratios and the targets
(COMPARISONS): float32 against float32, bf16 against bf16, and each side's fastest.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
import zlib

EPOCH = 60000
POOL = 4096
BATCH = 128
DATA = "data/fashion-mnist/dataset.xds"
KD_T, KD_ALPHA = 4.0, 0.9
FWD_BATCH = 256
PRECISIONS = ("float32", "bf16")
# the train suite's cases, named as ours: case -> (model, what is timed, batch); each runs at both
# precisions (rows CASE and CASE_bf16)
CASES = {"mlp_student": ("student", "train", BATCH),
         "teacher_cnn": ("teacher", "train", BATCH),
         "teacher_cnn_fwd": ("teacher", "forward", FWD_BATCH)}
# the comparison table: (what, our cases, PyTorch's cases, minimum ratio or None); each side
# enters with the fastest of its cases at the thread count; ratio = our images/s / PyTorch's
COMPARISONS = [
    ("teacher step, float32", ("teacher_cnn",), ("teacher_cnn",), 1.4),
    ("teacher step, bf16", ("teacher_cnn_bf16",), ("teacher_cnn_bf16",), 1.3),
    ("teacher step, fastest", ("teacher_cnn", "teacher_cnn_bf16"),
     ("teacher_cnn", "teacher_cnn_bf16"), 1.3),
    ("MLP step, float32", ("mlp_student",), ("mlp_student",), None),
    ("MLP step, bf16", ("mlp_student_bf16",), ("mlp_student_bf16",), None),
    ("MLP step, fastest", ("mlp_student", "mlp_student_bf16"),
     ("mlp_student", "mlp_student_bf16"), 3.0),
    ("teacher fwd, float32", ("teacher_cnn_fwd",), ("teacher_cnn_fwd",), 2.0),
    ("teacher fwd, bf16", ("teacher_cnn_fwd_bf16",), ("teacher_cnn_fwd_bf16",), None),
    # what building a teacher-output cache costs: float32, or bf16 for a teacher with precision: bf16
    ("teacher fwd, cache", ("teacher_cnn_fwd", "teacher_cnn_fwd_bf16"),
     ("teacher_cnn_fwd", "teacher_cnn_fwd_bf16"), 2.0),
]
SCALING_TARGET = 1.8  # our 2-thread speed over our 1-thread speed

# ------------------------------------------------------------------------------------------------
# data: the dataset container (io/dataset.h) read with NumPy

DTYPES = {0: "<f4", 1: "<f8", 2: "<i4", 3: "<i8", 4: "u1", 5: "i1", 6: "<u2", 7: "<i2",
          8: "<u4", 9: "<u8"}


def read_sections(path):
    """Maps name -> (dtype, shape, offset, length) for the array sections of a dataset file."""
    import numpy as np
    raw = np.memmap(path, dtype="u1", mode="r")
    head = bytes(raw[:32])
    if head[:8] != b"XDSET\0\0\0":
        raise ValueError(f"{path}: offset 0: not a dataset file (bad magic)")
    version, count = int.from_bytes(head[8:12], "little"), int.from_bytes(head[12:16], "little")
    total = int.from_bytes(head[16:24], "little")
    if version not in (1, 2) or total != len(raw) or 32 + 160 * count > len(raw):
        raise ValueError(f"{path}: offset 8: version {version}, {count} sections, size {total} "
                         f"(file has {len(raw)} bytes)")
    table = bytes(raw[32:32 + 160 * count])
    # version 2: CRC-32 of the header's first 24 bytes and the table at offset 24, and of each
    # section's bytes in its entry (version 1: no checksums)
    stored = int.from_bytes(head[24:28], "little")
    if version == 2 and zlib.crc32(table, zlib.crc32(head[:24])) != stored:
        raise ValueError(f"{path}: offset 24: the header and section table do not match their "
                         "checksum; the file is damaged")
    out = {}
    for i in range(count):
        e = table[160 * i: 160 * (i + 1)]
        name = e[:64].split(b"\0", 1)[0].decode()
        kind, dtype, ndim, crc = (int.from_bytes(e[64 + 4 * k: 68 + 4 * k], "little")
                                  for k in range(4))
        shape = [int.from_bytes(e[80 + 8 * k: 88 + 8 * k], "little", signed=True)
                 for k in range(min(ndim, 8))]
        off, length = int.from_bytes(e[144:152], "little"), int.from_bytes(e[152:160], "little")
        if kind == 0 and dtype in DTYPES and off + length <= len(raw):
            out[name] = (DTYPES[dtype], shape, off, length, crc if version == 2 else None)
    return raw, out


def check_section(path, raw, sec, name):
    """Raises ValueError when a version-2 section's bytes do not match their checksum."""
    _, _, off, length, crc = sec[name]
    if crc is not None and zlib.crc32(raw[off:off + length]) != crc:
        raise ValueError(f"{path}: section '{name}': checksum does not match, the data is damaged")


def load_pool(path):
    """(x (POOL, 784) float32 in [0, 1], y (POOL,) int64, 'fashion-mnist' | 'random')."""
    import numpy as np
    if not os.path.exists(path):
        rng = np.random.default_rng(1)
        return (rng.random((POOL, 784), dtype=np.float32),
                rng.integers(0, 10, POOL).astype(np.int64), "random")
    raw, sec = read_sections(path)
    for name in ("train/image", "train/label"):
        if name not in sec:
            raise ValueError(f"{path}: no array section {name}")
        check_section(path, raw, sec, name)
    dt, shape, off, _, _ = sec["train/image"]
    if dt != "u1" or shape[1:] != [28, 28, 1] or shape[0] < POOL:
        raise ValueError(f"{path}: train/image is {dt} {shape}, expected u8 (N>={POOL}, 28, 28, 1)")
    img = np.frombuffer(raw, dtype="u1", count=POOL * 784, offset=off).reshape(POOL, 784)
    dt, shape, off, _, _ = sec["train/label"]
    if dt != "<i4" or shape[0] < POOL:
        raise ValueError(f"{path}: train/label is {dt} {shape}, expected i32 (N>={POOL})")
    lab = np.frombuffer(raw, dtype="<i4", count=POOL, offset=off).astype(np.int64)
    if lab.min() < 0 or lab.max() > 9:
        raise ValueError(f"{path}: train/label: labels outside 0..9")
    return img.astype(np.float32) / 255.0, lab, "fashion-mnist"

# ------------------------------------------------------------------------------------------------
# what PyTorch runs


def blas_info():
    """(library path, OpenBLAS core name or None) of the BLAS this process loaded."""
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if ("blas" in p or "openblas" in p) and p not in libs:
                libs.append(p)
    core = None
    for p in libs:
        try:
            lib = ctypes.CDLL(p)
            fn = lib.openblas_get_corename
            fn.restype = ctypes.c_char_p
            core = fn().decode()
            break
        except (OSError, AttributeError):
            continue
    return libs, core


def describe_torch(torch, out):
    libs, core = blas_info()
    cfg = torch.__config__.show()
    keep = [ln.strip(" -") for ln in cfg.splitlines()
            if any(k in ln for k in ("MKL-DNN", "OpenMP 2", "CPU capability", "MKL "))]
    flags = [kv.split()[-1] for kv in cfg.split(",")
             if kv.split() and kv.split()[-1].startswith(("BLAS_INFO", "USE_MKLDNN", "USE_OPENMP"))]
    print(f"pytorch {torch.__version__}: " + "; ".join(keep + flags), file=out)
    print(f"pytorch threads: OpenMP, set per run with torch.set_num_threads; BLAS "
          f"{', '.join(os.path.basename(p) for p in libs) or 'none found'}; OpenBLAS kernel "
          f"{core or '?'} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})",
          file=out)


# ------------------------------------------------------------------------------------------------
# models and steps


def make_models(torch):
    nn = torch.nn
    teacher = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    student = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    return teacher, student


class Trainer:
    """One model, its AdamW and a pool in the chosen layout; step() trains on the next batch."""

    def __init__(self, torch, model, x, y, conv, fmt, foreach, precision="float32",
                 grad_mode="no_grad", loss="ce", teacher=None):
        import torch.nn.functional as F
        self.torch, self.F = torch, F
        self.model, self.loss, self.teacher = model, loss, teacher
        self.conv = conv
        self.bf16 = precision == "bf16"
        self.grad_mode = grad_mode
        memfmt = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        self.model.to(memory_format=memfmt)
        self.x = x.contiguous(memory_format=memfmt)
        self.y = y
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.0,
                                     foreach=foreach)
        self.next = 0
        self.cache = None
        if loss == "kd_cached":
            with torch.no_grad():
                self.cache = torch.cat([teacher(self.x[i:i + BATCH]) for i in range(0, len(x), BATCH)])

    def batch(self, B):
        if self.next + B > len(self.x):
            self.next = 0
        i = self.next
        self.next += B
        return i

    def step(self, B=BATCH):
        torch = self.torch
        i = self.batch(B)
        x, y = self.x[i:i + B], self.y[i:i + B]
        with torch.backends.mkldnn.flags(enabled=self.conv == "onednn"):
            self.opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss = self.loss_of(x, y, i, B)
            loss.backward()
            self.opt.step()

    def autocast(self):
        return self.torch.autocast(device_type="cpu", dtype=self.torch.bfloat16, enabled=self.bf16)

    def loss_of(self, x, y, i, B):
        """The step's loss on rows i..i+B (under autocast when bf16)."""
        torch, F = self.torch, self.F
        s = self.model(x)
        if self.loss == "ce":
            return F.cross_entropy(s, y)
        if self.loss == "kd_online":
            with torch.no_grad():
                t = self.teacher(x)
        else:
            t = self.cache[i:i + B]
        kd = F.kl_div(F.log_softmax(s / KD_T, 1), F.softmax(t / KD_T, 1),
                      reduction="batchmean") * (KD_T * KD_T)
        return KD_ALPHA * kd + (1 - KD_ALPHA) * F.cross_entropy(s, y)

    def forward(self, B=BATCH):
        torch = self.torch
        i = self.batch(B)
        grad = torch.inference_mode() if self.grad_mode == "inference_mode" else torch.no_grad()
        with grad, torch.backends.mkldnn.flags(enabled=self.conv == "onednn"), self.autocast():
            self.model(self.x[i:i + B])


def time_it(fn, min_seconds, min_reps=20, warmup=3, max_reps=100000, give_up=None):
    """(median, min, max, reps, median CPU time) of fn's wall time, like bench_run (CPU time of
    the process, all threads: at one thread on a shared machine, a call's cost without the waits
    for a free core). With give_up (seconds), a probe stops as soon as a call (a warm-up call:
    ten times that) shows fn is far slower."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        w = time.perf_counter() - t0
        if give_up and w > 10 * give_up:
            return w, w, w, 1, w
    t, cpu = [], []
    start = time.perf_counter()
    while len(t) < max_reps and (len(t) < min_reps or time.perf_counter() - start < min_seconds):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        t.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if give_up and statistics.median(t) > give_up:
            break
    return statistics.median(t), min(t), max(t), len(t), statistics.median(cpu)


def variants(case, precision):
    """The configurations PyTorch tries for a case at one precision: (conv, format, foreach,
    precision, grad_mode); foreach only for training steps, grad_mode only for forwards."""
    cnn = CASES[case][0] == "teacher"
    convs = ("onednn", "native") if cnn else ("onednn",)
    fmts = ("nchw", "channels_last") if cnn else ("nchw",)
    if CASES[case][1] == "forward":
        return [(c, f, None, precision, g) for c in convs for f in fmts
                for g in ("no_grad", "inference_mode")]
    return [(c, f, fe, precision, None) for c in convs for f in fmts for fe in (False, True)]


def describe_variant(v, precision=True):
    conv, fmt, foreach, prec, grad = v
    return ((f"{'bf16-autocast' if prec == 'bf16' else 'float32'} " if precision else "")
            + f"conv={conv} format={fmt}"
            + (f" foreach={foreach}" if foreach is not None else "") + (f" {grad}" if grad else ""))


VARIANT_KEYS = ("conv", "format", "foreach", "precision", "grad_mode")


def variant_json(v):
    return dict(zip(VARIANT_KEYS, v))


def runner(torch, case, build, x, y, v):
    """(Trainer, the function timed) for a case in configuration v."""
    model, forward, B = build(), CASES[case][1] == "forward", CASES[case][2]
    if forward:
        model.eval()
    tr = Trainer(torch, model, x, y, *v)
    return tr, (lambda: tr.forward(B)) if forward else (lambda: tr.step(B))


def choice_key(threads):
    """Which of time_it's figures decides between configurations: the median CPU time at one
    thread (a shared machine's waits for a free core left out), else the median wall time."""
    return 4 if threads == 1 else 0


def best_variant(torch, case, build, x, y, precision, probe_seconds, log):
    """The two fastest configurations for this case and precision at the current thread count:
    every variant is probed in two interleaved rounds and keeps its better median, so that a
    moment of load from elsewhere does not decide; at one thread the median CPU time (a shared
    machine's waits for a free core left out), else wall time. (A variant's fastest call
    misleads: PyTorch's own convolution in channels-last has calls six times faster than its
    median.) A variant three times slower than the best so far is not timed further (PyTorch's
    own convolution under bf16 autocast takes seconds a step)."""
    vs = variants(case, precision)
    if len(vs) == 1:
        return vs
    best = {v: float("inf") for v in vs}
    key = choice_key(torch.get_num_threads())
    for rnd in range(2):
        for v in vs:
            lead = min(best.values())
            if rnd and best[v] > 3 * lead:
                continue
            fn = runner(torch, case, build, x, y, v)[1]
            best[v] = min(best[v], time_it(fn, probe_seconds, min_reps=5, warmup=2,
                                           give_up=3 * lead if lead < float("inf") else None)[key])
    if log:
        print(f"  {case} {precision} variants at {torch.get_num_threads()} thread(s), median "
              f"{'CPU' if key else 'wall'} ms: " +
              ", ".join(f"{describe_variant(v, False)} {1e3 * t:.1f}" for v, t in best.items()),
              file=log)
    return sorted(best, key=best.get)[:2]


def rss_now_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_reset_peak():
    """Resets the process's peak RSS to the current RSS (Linux), as the C suite does."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_peak_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------
# suites


def run_train(torch, args, x, y, data_kind, out_rows):
    if not args.json:
        print(f"\npytorch training step (forward + CE + backward + AdamW), batch {BATCH}; "
              f"teacher_cnn_fwd: the forward alone, batch {FWD_BATCH}, eval mode; step time "
              f"median [min-max]; epoch = {EPOCH} images; each row: the fastest configuration of "
              f"its precision (NAME: float32, NAME_bf16: bf16 autocast)", file=args.out)
        print(f"{'model':<20} {'thr':>3} {'step ms':>24} {'cpu ms':>8} {'images/s':>10} "
              f"{'s/epoch':>9} {'speed-up':>8}  configuration", file=args.out)
    log = None if args.json else args.out
    for case, (model, step, B) in CASES.items():
        def build(model=model):
            return dict(zip(("teacher", "student"), make_models(torch)))[model]
        scoped = rss_reset_peak()
        before = rss_now_mib() if scoped else rss_peak_mib()
        results = []
        for th in args.threads:
            torch.set_num_threads(th)
            for precision in PRECISIONS:
                torch.manual_seed(1)
                # the two best of the probes both timed in full, the faster kept: a probe of a
                # few calls can mislead (some variants slow down after their first steps)
                key = choice_key(th)
                timed = []
                for v in best_variant(torch, case, build, x, y, precision, args.probe, log):
                    torch.manual_seed(1)
                    tr, fn = runner(torch, case, build, x, y, v)
                    timed.append((v, time_it(fn, args.seconds)))
                    del tr, fn
                v, t = min(timed, key=lambda vt: vt[1][key])
                if log and len(timed) > 1:
                    print(f"  {case} {precision} at {th} thread(s), the two best timed in full, "
                          f"median {'CPU' if key else 'wall'} ms: " + ", ".join(
                              f"{describe_variant(w, False)} {1e3 * u[key]:.1f}" for w, u in timed),
                          file=log)
                results.append((precision, th, v, t))
        peak = rss_peak_mib()
        for precision in PRECISIONS:
            first = None
            name = case + ("_bf16" if precision == "bf16" else "")
            for th, v, (med, lo, hi, reps, cpu) in ((r[1], r[2], r[3]) for r in results
                                               if r[0] == precision):
                ips = B / med
                first = first or ips
                row = {"suite": "train", "side": "pytorch", "case": name, "data": data_kind,
                       "batch": B, "threads": th, "step_s": med, "min_s": lo, "max_s": hi,
                       "reps": reps, "cpu_s": cpu, "images_per_s": ips, "epoch_s": EPOCH / ips,
                       "speedup_vs_first": ips / first, "peak_rss_mib": peak,
                       "rss_before_mib": before, "rss_growth_mib": peak - before,
                       "rss_scope": "model" if scoped else "process", "precision": precision,
                       "step": step, "variant": variant_json(v)}
                out_rows.append(row)
                if args.json:
                    print(json.dumps(row), file=args.out)
                else:
                    st = f"{1e3 * med:.2f} [{1e3 * lo:.2f}-{1e3 * hi:.2f}]"
                    print(f"{name:<20} {th:>3} {st:>24} {1e3 * cpu:>8.2f} {ips:>10.0f} "
                          f"{EPOCH / ips:>9.2f} "
                          f"{ips / first:>7.2f}x  {describe_variant(v)}", file=args.out)
        if not args.json:
            for th in args.threads:
                best = min((r for r in results if r[1] == th), key=lambda r: r[3][0])
                print(f"  {case}: fastest at {th} thread(s): {describe_variant(best[2])}",
                      file=args.out)
            print(f"  {case}: peak RSS {peak:.1f} MiB while built and run (all variants "
                  f"tried), +{peak - before:.1f} MiB over the {before:.1f} MiB before it"
                  + ("" if scoped else " (process high-water mark: reset refused)"), file=args.out)


def run_distill(torch, args, x, y, data_kind, out_rows):
    if not args.json:
        print(f"\npytorch distillation overhead, MLP student, batch {BATCH}; images/s median "
              f"[min-max]; ratio = step time / CE step time", file=args.out)
    for th in args.threads:
        torch.set_num_threads(th)
        torch.manual_seed(1)
        teacher, _ = make_models(torch)
        teacher.eval()
        xt = x.reshape(-1, 1, 28, 28)
        ce = None
        for case in ("ce", "kd_online", "kd_cached", "teacher_fwd"):
            if case == "teacher_fwd":
                tr = Trainer(torch, teacher, xt, y, "onednn", "nchw", False)
                fn = tr.forward
            else:
                tr = Trainer(torch, make_models(torch)[1], xt, y, "onednn", "nchw", False,
                             loss=case, teacher=teacher)
                fn = tr.step
            med, lo, hi, reps, _ = time_it(fn, args.seconds)
            ce = ce or med
            row = {"suite": "distill", "side": "pytorch", "case": case, "data": data_kind,
                   "batch": BATCH, "threads": th, "step_s": med, "min_s": lo, "max_s": hi,
                   "reps": reps, "images_per_s": BATCH / med, "epoch_s": EPOCH * med / BATCH,
                   "time_over_ce": med / ce}
            out_rows.append(row)
            if args.json:
                print(json.dumps(row), file=args.out)
            else:
                r = f"{BATCH / med:.0f} [{BATCH / hi:.0f}-{BATCH / lo:.0f}]"
                print(f"{case:<12} {th:>3} {r:>24} {med / ce:>7.2f}x", file=args.out)

# ------------------------------------------------------------------------------------------------
# PyTorch's OpenBLAS kernel


def probe_blas(args):
    """Child process: prints the OpenBLAS kernel PyTorch loaded and the median MLP step time at
    one thread, as JSON."""
    import numpy as np
    import torch
    torch.set_num_threads(1)
    torch.manual_seed(1)
    x_np, y_np, _ = load_pool(args.data)
    x = torch.from_numpy(np.ascontiguousarray(x_np)).reshape(POOL, 1, 28, 28)
    tr = Trainer(torch, make_models(torch)[1], x, torch.from_numpy(y_np), "onednn", "nchw", False)
    med = time_it(tr.step, args.probe * 5, warmup=10)[0]
    print(json.dumps({"core": blas_info()[1], "step_s": med}))


def choose_blas(args):
    """Sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) in this process for PyTorch's fastest
    OpenBLAS kernel; returns a line saying what was tried."""
    if args.blas_kernel != "auto":
        os.environ["OPENBLAS_CORETYPE"] = args.blas_kernel
        return f"peer.py: PyTorch's OpenBLAS kernel {args.blas_kernel} (--blas-kernel)"
    envs = {"environment": dict(os.environ)}
    own = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if own != envs["environment"]:
        envs["library's choice"] = own
    tried = {}
    for label, env in envs.items():
        # two rounds, interleaved, keeping each setting's better median
        for _ in range(2):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe-blas",
                                "--data", args.data, "--probe", str(args.probe)],
                               env=env, capture_output=True, text=True)
            if r.returncode != 0:
                tried[label] = None
                break
            got = json.loads(r.stdout.strip().splitlines()[-1])
            old = tried.get(label)
            if not old or got["step_s"] < old["step_s"]:
                tried[label] = got
    ok = {k: v for k, v in tried.items() if v}
    if not ok:
        return "peer.py: the OpenBLAS kernel probe failed; PyTorch runs the environment's setting"
    best = min(ok, key=lambda k: ok[k]["step_s"])
    os.environ.clear()
    os.environ.update(envs[best])
    desc = ", ".join(f"{k} ({v['core']}): {1e3 * v['step_s']:.3f} ms" if v else f"{k}: failed"
                     for k, v in tried.items())
    return (f"peer.py: PyTorch's OpenBLAS kernel: {ok[best]['core']} ({best}), the faster "
            f"MLP step at 1 thread of {desc}")


# ------------------------------------------------------------------------------------------------
# comparison with our run


def read_ours(path):
    machine, rows = {}, []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                sys.exit(f"peer.py: {path}:{n}: not JSON: {exc}")
            if "machine" in obj:
                machine = obj["machine"]
            elif obj.get("suite") in ("train", "distill"):
                rows.append(obj)
    if not any(r["suite"] == "train" for r in rows):
        sys.exit(f"peer.py: {path}: no `train` rows (run `xdistill bench train --json`)")
    return machine, rows


def fastest(rows, cases, threads):
    """The row with the most images/s among these train cases at this thread count, or None."""
    got = [r for r in rows if r["suite"] == "train" and r["case"] in cases
           and r["threads"] == threads]
    return max(got, key=lambda r: r["images_per_s"]) if got else None


def our_config(row):
    return row.get("precision", "float32")


def compare(ours, theirs, out):
    print("\nxdistill vs PyTorch, same models, data, batch, optimizer and threads; each side "
          "enters with its fastest row of the cases named (PyTorch: its fastest configuration of "
          "each precision); ratio = our images/s / PyTorch's (= PyTorch time / ours; > 1: we are "
          "faster), the verdict's; cpu = the ratio of CPU times (at one thread, without the waits "
          "for a free core on a shared machine)", file=out)
    print(f"{'comparison':<22} {'thr':>3} {'ours':>8} {'images/s':>10} {'pytorch images/s':>17} "
          f"{'ratio':>7} {'cpu':>7} {'target':>7}  {'verdict':<18} pytorch configuration", file=out)
    threads = sorted({t["threads"] for t in theirs if t["suite"] == "train"})
    kinds = {r.get("data") for r in ours + theirs if r["suite"] == "train"}
    if len(kinds) > 1:
        print(f"peer.py: the two sides ran on different data "
              f"({', '.join(sorted(map(str, kinds)))}); the ratios compare unlike runs", file=out)
    for what, our_cases, their_cases, target in COMPARISONS:
        for th in threads:
            o, t = fastest(ours, our_cases, th), fastest(theirs, their_cases, th)
            if not o or not t:
                continue
            ratio = o["images_per_s"] / t["images_per_s"]
            cpu = f"{t['cpu_s'] / o['cpu_s']:.2f}x" if o.get("cpu_s") and t.get("cpu_s") else "-"
            if target is None:
                verdict, tg = "-", "-"
            else:
                verdict = "met" if ratio >= target else f"MISSED ({ratio / target:.0%} of it)"
                tg = f"{target:.1f}x"
            print(f"{what:<22} {th:>3} {our_config(o):>8} {o['images_per_s']:>10.0f} "
                  f"{t['images_per_s']:>17.0f} {ratio:>6.2f}x {cpu:>7} {tg:>7}  {verdict:<18} "
                  f"{describe_variant(tuple(t['variant'][k] for k in VARIANT_KEYS))}", file=out)
    ours_by = {(r["suite"], r["case"], r["threads"]): r for r in ours}
    for case in ("mlp_student", "teacher_cnn"):
        o = next((r for r in ours if r["suite"] == "train" and r["case"] == case), None)
        t = next((r for r in theirs if r["suite"] == "train" and r["case"] == case), None)
        if o and t and "rss_growth_mib" in o:
            print(f"{case}: memory while built and trained (both precisions): ours "
                  f"+{o['rss_growth_mib']:.1f} MiB (peak {o['peak_rss_mib']:.1f}), PyTorch "
                  f"+{t['rss_growth_mib']:.1f} MiB (peak {t['peak_rss_mib']:.1f})", file=out)
    for case in ("mlp_student", "mlp_student_bf16", "teacher_cnn", "teacher_cnn_bf16"):
        o1, o2 = ours_by.get(("train", case, 1)), ours_by.get(("train", case, 2))
        t1 = next((t for t in theirs if t["suite"] == "train" and t["case"] == case and t["threads"] == 1), None)
        t2 = next((t for t in theirs if t["suite"] == "train" and t["case"] == case and t["threads"] == 2), None)
        if o1 and o2:
            s = o2["images_per_s"] / o1["images_per_s"]
            ps = f"; PyTorch {t2['images_per_s'] / t1['images_per_s']:.2f}x" if t1 and t2 else ""
            cap = (f"; two one-thread copies side by side {o2['capacity']:.2f}x one alone, our 2 "
                   f"threads {o2['capacity_threads_speedup']:.2f}x in the same rounds"
                   if "capacity" in o2 else "")
            hand = (f"; the cores' handoff: a cache line's round trip {o2['handoff_round_trip_ns']:.0f} ns "
                    f"[{o2['handoff_round_trip_min_ns']:.0f}-{o2['handoff_round_trip_max_ns']:.0f}], "
                    f"a block the other core wrote read at {o2['handoff_other_gbs']:.1f} GB/s"
                    if "handoff_round_trip_ns" in o2 else "")
            print(f"{case}: our 2 threads vs 1: {s:.2f}x (target {SCALING_TARGET}x: "
                  f"{'met' if s >= SCALING_TARGET else 'MISSED'}){ps}{cap}{hand}", file=out)
    dist = [t for t in theirs if t["suite"] == "distill"]
    if dist and any(r["suite"] == "distill" for r in ours):
        print(f"\n{'distill case':<12} {'thr':>3} {'ours img/s':>11} {'pytorch img/s':>14} "
              f"{'ratio':>7} {'ours xCE':>9} {'pytorch xCE':>12}", file=out)
        for t in dist:
            o = ours_by.get(("distill", t["case"], t["threads"]))
            if o:
                print(f"{t['case']:<12} {t['threads']:>3} {o['images_per_s']:>11.0f} "
                      f"{t['images_per_s']:>14.0f} {o['images_per_s'] / t['images_per_s']:>6.2f}x "
                      f"{o['time_over_ce']:>8.2f}x {t['time_over_ce']:>11.2f}x", file=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ours", help="output of `xdistill bench train [distill] --json` to compare with")
    ap.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: from --ours, "
                    "else 1 and all cores)")
    ap.add_argument("--seconds", type=float, default=0.5, help="minimum time per measurement")
    ap.add_argument("--probe", type=float, default=0.2, help="time per variant when choosing "
                    "PyTorch's fastest configuration")
    ap.add_argument("--suites", default="train", help="train,distill")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--json", action="store_true", help="JSON lines instead of tables")
    ap.add_argument("--blas-kernel", default="auto", help="OpenBLAS kernel for PyTorch: auto (the "
                    "faster of the environment's and the library's own choice), or a name such as "
                    "Haswell or SkylakeX")
    ap.add_argument("--probe-blas", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = sys.stdout
    machine, ours = read_ours(args.ours) if args.ours else ({}, [])
    if args.threads:
        args.threads = [int(t) for t in args.threads.split(",")]
    elif ours:
        args.threads = sorted({r["threads"] for r in ours if r["suite"] == "train"})
    else:
        args.threads = sorted({1, os.cpu_count() or 1})
    # PyTorch's best OpenBLAS kernel: OpenBLAS reads OPENBLAS_CORETYPE when it loads, which is
    # when torch is imported, so the choice is made before that.
    if args.probe_blas:
        return probe_blas(args)
    blas_note = choose_blas(args)
    try:
        import numpy as np  # noqa: F401
        import torch
    except ImportError as exc:
        sys.exit(f"peer.py: {exc}; install Debian's python3-torch (make bench-peer does)")
    if machine and not args.json:
        print(f"xdistill: its own products ({machine.get('gemm_kernel', '?')}), split over OpenMP "
              f"threads; OpenBLAS (kernel {machine.get('blas_kernel')}) not used for training",
              file=args.out)
    describe_torch(torch, args.out if not args.json else sys.stderr)
    print(blas_note, file=args.out if not args.json else sys.stderr)
    try:
        x_np, y_np, data_kind = load_pool(args.data)
    except (ValueError, OSError) as exc:
        sys.exit(f"peer.py: {exc}")
    if not args.json:
        print("data: " + (f"the first {POOL} Fashion-MNIST training images of {args.data}"
                          if data_kind == "fashion-mnist" else
                          f"RANDOM pixels and labels ({args.data} not found)"), file=args.out)
    x = torch.from_numpy(np.ascontiguousarray(x_np)).reshape(POOL, 1, 28, 28)
    y = torch.from_numpy(y_np)
    rows = []
    suites = args.suites.split(",")
    if "train" in suites:
        run_train(torch, args, x, y, data_kind, rows)
    if "distill" in suites:
        run_distill(torch, args, x, y, data_kind, rows)
    if ours:
        compare(ours, rows, args.out)


if __name__ == "__main__":
    main()
