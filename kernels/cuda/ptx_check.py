"""Compile every launched CUDA kernel variant without a GPU, and check its resources:
`python -m kernels.cuda.ptx_check [--resources]`.

The CUDA simulator checks no types, so a kernel that runs there can still fail to compile
(a float64 literal meeting a float32 array, a None argument that is not compiled out).
`numba.cuda.compile_ptx` runs the real front end and NVVM (numba-cuda[cu13] ships NVVM;
no driver is needed). Each kernel is compiled with the argument types its wrapper passes:
every row-length bucket, the affine and the None (affine=False, RMSNorm, no dbias)
variants, float32 and float64, for compute capabilities 8.0 and 9.0.

--resources also links each PTX with nvJitLink (cuda.core's Linker, which needs no device
either: it runs ptxas for the named arch) and reads registers, spill bytes and shared
memory from the link log. It prints a table and fails when a kernel is over budget:
REGISTER_BUDGET registers (WARP_ROW_BUDGET for the warp-per-row kernels, whose occupancy
is what hides their memory latency), and no spills. For the row kernels of a row-length
bucket (a warp or a block per row, and the chunked long rows) it also disassembles the
cubin (nvdisasm, from the nvidia-cuda-nvdisasm wheel) and requires a lane's row loads (a
long row's chunk) to be issued back to back, before any instruction reads one of them
(sass_loads_in_flight): per_lane loads forward, 2·per_lane backward. The table is cached in
ptx_resources.json (committed), keyed by the kernel sources and the compiler versions: a
rerun with unchanged kernels is instant, a changed kernel recompiles everything (minutes on
2 cores) and rewrites the file. Must run with the simulator off.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from numba import config, types

F64 = types.float64
NONE = types.none
TARGETS = (("float32", (8, 0)), ("float32", (9, 0)), ("float64", (8, 0)), ("float64", (9, 0)))
REGISTER_BUDGET = 128
# The warp-per-row kernels hide memory latency by occupancy: at 80 registers three
# 256-thread blocks (24 warps) share an SM's 64 K registers. Measured (ptx_resources.json)
# with the row buckets of helpers.GEOMETRY: see the README; sm_80's ptxas allocates more for
# the same PTX, so its budget is the general one.
WARP_ROW_BUDGET = {"sm_90": 80, "sm_80": 128}
SPILL_BUDGET = 0


def _array(dtype, ndim: int):
    return types.Array(dtype, ndim, "C")


def kernel_signatures(dtype) -> list[tuple[str, object, tuple]]:
    """(name, kernel, argument types) for every launch the wrappers make, for `dtype`."""
    from kernels.cuda import batch_norm, group_norm, helpers, layer_norm

    v, m2, m3 = _array(dtype, 1), _array(dtype, 2), _array(dtype, 3)
    p2, p3 = _array(F64, 2), _array(F64, 3)
    i64, flag = types.int64, types.boolean
    # (weight, bias, mean) of LayerNorm/GroupNorm with and without affine, LayerNorm(bias=
    # False), RMSNorm with and without weight
    forward_kinds = (("layer_norm", v, v, v), ("layer_norm no bias", v, NONE, v),
                     ("layer_norm no affine", NONE, NONE, v),
                     ("rms_norm", v, NONE, NONE), ("rms_norm no weight", NONE, NONE, NONE))
    # (weight, mean, dbias partial)
    backward_kinds = (("layer_norm", v, v, m2), ("layer_norm no affine", NONE, v, m2),
                      ("rms_norm", v, NONE, NONE), ("rms_norm no weight", NONE, NONE, NONE))
    out = []
    # GroupNorm's forward (a per-channel affine, with and without it) also writes var
    group_kinds = (("group_norm", v, v), ("group_norm no affine", NONE, NONE))
    # the row kernels of every bucket, a warp or a block per row (same arguments; the block
    # kernels for the launch block size), and the block-per-row kernels of longer rows
    buckets, block = helpers.row_buckets(str(dtype)), helpers.GEOMETRY.block
    for per_lane in buckets:
        for layout, threads in (("warp", None), ("block", block)):
            kernel = layer_norm.forward_kernel(per_lane, threads)
            for kind, weight, bias, mean in forward_kinds:
                out.append((f"forward_{layout}_rows[{per_lane}] {kind}", kernel,
                            (m2, weight, bias, F64, NONE, i64, m2, mean, v, NONE)))
            for kind, weight, bias in group_kinds:
                out.append((f"forward_{layout}_rows[{per_lane}] {kind}", kernel,
                            (m2, weight, bias, F64, i64, i64, m2, v, v, v)))
            kernel = layer_norm.backward_kernel(per_lane, threads)
            for kind, weight, mean, dbias in backward_kinds:
                out.append((f"backward_{layout}_rows[{per_lane}] {kind}", kernel,
                            (m2, m2, mean, v, weight, m2, m2, dbias)))
    for kind, weight, bias, mean in forward_kinds:
        out.append((f"forward_long_rows {kind}", layer_norm.forward_long_rows,
                    (m2, weight, bias, F64, i64, i64, flag, m2, mean, v, NONE)))
    for kind, weight, bias in group_kinds:
        out.append((f"forward_long_rows {kind}", layer_norm.forward_long_rows,
                    (m2, weight, bias, F64, i64, i64, flag, m2, v, v, v)))
    for kind, weight, mean, dbias in backward_kinds:
        out.append((f"backward_long_rows {kind}", layer_norm.backward_long_rows,
                    (m2, m2, mean, v, weight, m2, m2, dbias)))
    out += [
        ("column_sums", helpers.column_sums, (m2, v, m2, v)),
        ("column_sums (one)", helpers.column_sums, (m2, v, NONE, NONE)),
        ("column_sums (float64 partials)", helpers.column_sums, (p2, v, p2, v)),
        ("group_norm.channel_sums", group_norm.channel_sums, (m2, m2, v, i64, p2)),
        ("group_norm.input_gradient", group_norm.input_gradient,
         (m2, m2, v, v, i64, i64, v, p3, m2, p2, p2)),
        ("group_norm.input_gradient no affine", group_norm.input_gradient,
         (m2, m2, v, v, i64, i64, NONE, p3, m2, p2, p2)),
        ("batch_norm.channel_moments", batch_norm.channel_moments, (m3, p3)),
        ("batch_norm.merge_moments", batch_norm.merge_moments,
         (p3, m3, v, v, F64, p2, v, v, v)),
        ("batch_norm.merge_moments no affine", batch_norm.merge_moments,
         (p3, m3, NONE, NONE, F64, p2, v, v, v)),
        ("batch_norm.eval_coefficients", batch_norm.eval_coefficients, (v, v, v, v, F64, p2)),
        ("batch_norm.eval_coefficients no affine", batch_norm.eval_coefficients,
         (v, v, NONE, NONE, F64, p2)),
        ("batch_norm.affine_channels", batch_norm.affine_channels, (m3, p2, m3)),
        ("batch_norm.channel_gradient_sums", batch_norm.channel_gradient_sums, (m3, m3, v, p3)),
        ("batch_norm.merge_gradient_sums", batch_norm.merge_gradient_sums,
         (p3, m3, v, v, F64, flag, p2, v, v)),
        ("batch_norm.merge_gradient_sums no affine", batch_norm.merge_gradient_sums,
         (p3, m3, v, NONE, F64, flag, p2, v, v)),
        ("batch_norm.input_gradient", batch_norm.input_gradient, (m3, m3, v, p2, m3)),
    ]
    return out


def is_warp_row_kernel(name: str) -> bool:
    return "_warp_rows[" in name


_ROW_KERNEL = re.compile(r"_rows\[(\d+)\]")


def is_row_kernel(name: str) -> bool:
    """The row kernels of a row-length bucket (a warp or a block per row, or chunked long
    rows), whose row loads must be in flight together."""
    return _ROW_KERNEL.search(name) is not None


@dataclasses.dataclass
class Resources:
    name: str
    dtype: str
    arch: str
    registers: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int  # static shared memory; the row kernels add dynamic shared at launch
    loads_in_flight: int | None = None  # row kernels: see sass_loads_in_flight

    @property
    def budget(self) -> int:
        return WARP_ROW_BUDGET[self.arch] if is_warp_row_kernel(self.name) else REGISTER_BUDGET

    @property
    def loads_wanted(self) -> int:
        """Global loads a row kernel must have in flight together: a lane's row elements
        (a long row's chunk) (forward: x; backward: x and dy), 0 for the other kernels."""
        match = _ROW_KERNEL.search(self.name)
        if match is None:
            return 0
        return int(match.group(1)) * (2 if self.name.startswith("backward") else 1)

    @property
    def over_budget(self) -> bool:
        too_few_loads = self.loads_in_flight is not None and \
            self.loads_in_flight < self.loads_wanted
        return (self.registers > self.budget or self.spill_stores > SPILL_BUDGET
                or self.spill_loads > SPILL_BUDGET or too_few_loads)


_USED = re.compile(r"Used (\d+) registers")
_SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")
_SHARED_DECL = re.compile(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]")


def parse_link_log(log: str, ptx: str) -> tuple[int, int, int, int]:
    """(registers, spill store bytes, spill load bytes, static shared bytes) of the one
    kernel in a `ptxas -v` style nvJitLink info log; shared memory from the log, or from
    the PTX's .shared declarations where the log reports none."""
    used = _USED.search(log)
    spills = _SPILLS.search(log)
    if used is None or spills is None:
        raise ValueError(f"no register or spill line in the link log:\n{log}")
    smem = sum(int(m) for m in _SMEM.findall(log))
    if smem == 0:
        smem = sum(int(m) for m in _SHARED_DECL.findall(ptx))
    return int(used.group(1)), int(spills.group(1)), int(spills.group(2)), smem


_INSTRUCTION = re.compile(r"/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
_REGISTER = re.compile(r"\bR(\d+)\b")
_STORES = ("ST", "RED", "ATOM", "BRA", "BRX", "RET", "CALL", "EXIT", "BAR", "BSSY", "BSYNC",
           "ISETP", "FSETP", "DSETP")


def nvdisasm() -> str | None:
    """The nvdisasm binary: on PATH, from the nvidia-cuda-nvdisasm wheel, or in CUDA."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    for root in [*sys.path, "/usr/local/cuda"]:
        for candidate in (pathlib.Path(root, "nvidia/cu13/bin/nvdisasm"),
                          pathlib.Path(root, "bin/nvdisasm")):
            if candidate.is_file():
                return str(candidate)
    return None


def sass_loads_in_flight(sass: str) -> int:
    """The most global loads (LDG) issued back to back before any instruction reads one of
    their destination registers, in the order the SASS lists them: a lower bound on the
    loads a warp has in flight together (control flow is ignored)."""
    pending: set[int] = set()
    count = best = 0
    for opcode, operands in _INSTRUCTION.findall(sass):
        registers = [int(r) for r in _REGISTER.findall(operands)]
        if opcode.startswith("LDG"):
            if pending.intersection(registers[1:]):  # an address from a pending load
                best, pending, count = max(best, count), set(), 0
            width = 4 if ".128" in opcode else 2 if ".64" in opcode else 1
            pending.update(range(registers[0], registers[0] + width))
            count += 1
            continue
        sources = registers if opcode.startswith(_STORES) else registers[1:]
        if pending.intersection(sources):
            best, pending, count = max(best, count), set(), 0
    return max(best, count)


def disassemble(cubin: bytes) -> str | None:
    tool = nvdisasm()
    if tool is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as file:
        file.write(cubin)
        file.flush()
        return subprocess.run([tool, "-c", file.name], capture_output=True, text=True,
                              check=True).stdout


def link(ptx: str, arch: str) -> tuple[str, bytes]:
    """(info log, cubin) of `ptx` linked for `arch` ("sm_90") by nvJitLink."""
    from cuda.core import Linker, LinkerOptions, ObjectCode

    linker = Linker(ObjectCode.from_ptx(ptx.encode()), options=LinkerOptions(arch=arch,
                                                                             verbose=True))
    try:
        cubin = linker.link("cubin").code
        return linker.get_info_log(), bytes(cubin)
    finally:
        linker.close()


def compile_one(dtype_name: str, cc: tuple[int, int], index: int, resources: bool):
    """Compile the index-th kernel signature for one dtype and compute capability; return
    (failure or None, Resources or None)."""
    from numba import cuda

    name, kernel, signature = kernel_signatures(getattr(types, dtype_name))[index]
    arch = f"sm_{cc[0]}{cc[1]}"
    where = f"{name} {dtype_name} {arch}"
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
        if ".entry" not in ptx:
            return f"{where}: no kernel entry in the PTX", None
        if not resources:
            return None, None
        log, cubin = link(ptx, arch)
        loads = None
        if is_row_kernel(name):
            sass = disassemble(cubin)
            loads = None if sass is None else sass_loads_in_flight(sass)
        return None, Resources(name, dtype_name, arch, *parse_link_log(log, ptx), loads)
    except Exception as error:  # report every kernel, not just the first failure
        return f"{where}: {type(error).__name__}: {error}", None


def jobs(targets=TARGETS) -> list[tuple[str, tuple[int, int], int]]:
    return [(dtype, cc, index) for dtype, cc in targets
            for index in range(len(kernel_signatures(getattr(types, dtype))))]


def compile_all(targets=TARGETS, resources: bool = False, workers: int | None = None):
    """compile_one for every kernel and target, spread over processes (NVVM compiles
    serially); returns (failures, resource rows)."""
    todo = jobs(targets)
    workers = workers or os.cpu_count() or 1
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(compile_one, *zip(*todo), [resources] * len(todo),
                                chunksize=4))
    failures = [failure for failure, _ in results if failure is not None]
    rows = [row for _, row in results if row is not None]
    return failures, rows


def _code(source: str) -> str:
    """The source's syntax tree without docstrings: comments and docstrings do not change
    what compiles."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def cache_key() -> str:
    """Hash of the kernel sources, the variants compiled and the compiler versions: the
    cached table is valid while none of them changes (budgets are applied on reading)."""
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(__file__).parent.glob("*.py")):
        if path.name not in ("ptx_check.py", "gpu_check.py"):
            digest.update(path.name.encode() + _code(path.read_text()).encode())
    for dtype, cc in TARGETS:
        names = [(name, str(signature)) for name, _, signature in
                 kernel_signatures(getattr(types, dtype))]
        digest.update(repr((dtype, cc, names)).encode())
    for package in ("numba", "numba-cuda", "cuda-core", "nvidia-nvjitlink", "cuda-bindings"):
        try:
            digest.update(f"{package}={importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{package}=none".encode())
    return digest.hexdigest()[:20]


# The table of the last full run, committed with the kernels: valid while cache_key() (the
# kernel sources and compiler versions) is unchanged, recomputed and rewritten otherwise.
CACHE = pathlib.Path(__file__).with_name("ptx_resources.json")


def load_cached() -> list[Resources] | None:
    try:
        cached = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return None
    if cached.get("key") != cache_key():
        return None
    return [Resources(**row) for row in cached["rows"]]


def store_cached(rows: list[Resources]) -> None:
    rows = sorted(rows, key=lambda r: (r.name, r.dtype, r.arch))
    text = json.dumps({"key": cache_key(), "rows": [dataclasses.asdict(r) for r in rows]},
                      indent=0)
    try:
        temporary = CACHE.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text + "\n")
        temporary.replace(CACHE)
    except OSError:
        pass  # a cache that cannot be written only costs time


def table(rows: list[Resources]) -> str:
    lines = [f"{'kernel':<44} {'dtype':<8} {'arch':<6} {'regs':>4} {'budget':>6} "
             f"{'spill st/ld':>11} {'smem':>6} {'loads':>9}  status"]
    for row in sorted(rows, key=lambda r: (r.name, r.dtype, r.arch)):
        loads = "-" if row.loads_in_flight is None else \
            f"{row.loads_in_flight}/{row.loads_wanted}"
        lines.append(f"{row.name:<44} {row.dtype:<8} {row.arch:<6} {row.registers:>4} "
                     f"{row.budget:>6} {row.spill_stores:>5}/{row.spill_loads:<5} "
                     f"{row.shared_bytes:>6} {loads:>9}  "
                     f"{'OVER BUDGET' if row.over_budget else 'ok'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.cuda.ptx_check",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", action="store_true",
                        help="link with nvJitLink, print registers/spills/shared memory and "
                             "fail over budget")
    parser.add_argument("--no-cache", action="store_true",
                        help="recompile even if ptx_resources.json matches")
    parser.add_argument("--jobs", type=int, default=None, help="compile processes (all cores)")
    args = parser.parse_args(argv)
    if config.ENABLE_CUDASIM:
        print("compile_ptx needs the real numba.cuda: unset NUMBA_ENABLE_CUDASIM", file=sys.stderr)
        return 2
    start = time.perf_counter()
    rows = None if args.no_cache else load_cached()
    cached = rows is not None
    failures: list[str] = []
    if rows is None:
        failures, rows = compile_all(resources=args.resources, workers=args.jobs)
        if args.resources and not failures:
            store_cached(rows)
    for failure in failures:
        print(failure, file=sys.stderr)
    over = [row for row in rows if row.over_budget]
    if args.resources and any(is_row_kernel(r.name) and r.loads_in_flight is None
                              for r in rows):
        print("nvdisasm not found: the row kernels' loads were not checked; "
              "pip install nvidia-cuda-nvdisasm", file=sys.stderr)
    if args.resources:
        print(table(rows))
        for row in over:
            print(f"over budget: {row.name} {row.dtype} {row.arch}: {row.registers} registers "
                  f"(budget {row.budget}), {row.spill_stores} B spill stores, "
                  f"{row.spill_loads} B spill loads (budget {SPILL_BUDGET}), "
                  f"{row.loads_in_flight} loads in flight (wanted {row.loads_wanted})",
                  file=sys.stderr)
    print(f"{len(jobs())} kernel variants x targets "
          f"{'compiled with failures' if failures else 'compiled'}"
          f"{', cached table' if cached else ''} in {time.perf_counter() - start:.1f} s")
    return 1 if failures or over else 0


if __name__ == "__main__":
    sys.exit(main())
