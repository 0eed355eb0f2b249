"""The compute floor of a latency run: each variant's GFLOPs over the machine's measured fp32 GEMM rate.

floor ms = GFLOPs / GEMM GFLOP/s x 1000: the time the model's convolutions and matmuls would take at the best
dense fp32 rate this machine reaches (ppbackbone.flops.gemm_rate, at the benchmark's thread count). A cell's
fraction of the floor is floor ms / its median ms: 100% would be every MAC at GEMM speed with no other cost;
depthwise convolutions, activations, memory traffic and per-call overhead keep real runs below it. bf16 and
int8 cells compute faster than fp32, so their fraction of this fp32 floor may pass 100%.
"""

__all__ = ["floor_ms", "floor_fraction", "format_floor"]


def floor_ms(row, gemm):
    """The fp32 floor of a result row (ms), or None without its GFLOPs or a measured rate."""
    if row.get("gflops") is None or not gemm or not gemm.get("gflops"):
        return None
    return row["gflops"] / gemm["gflops"] * 1000.0


def floor_fraction(row, cell, gemm):
    """floor ms / the cell's median ms (a cell is (runtime, precision) of row["cells"]), or None."""
    floor = floor_ms(row, gemm)
    median = row["cells"][cell][0]
    return None if floor is None or not median else floor / median


def _gemm_line(gemm):
    threads = f"{gemm['threads']} BLAS threads" if gemm.get("threads") else "the BLAS's default threads"
    return (f"fp32 floor: the GEMM probe measured **{gemm['gflops']:.1f} GFLOP/s** (the fastest of {gemm['runs']} "
            f"numpy float32 {gemm['size']}x{gemm['size']} matmuls, {threads}, {gemm['blas']}); floor ms = GFLOPs "
            f"(2 x the MACs of convolutions and matmuls) / that rate; each cell is floor / its median (bf16 and "
            f"int8 may pass 100%).")


def format_floor(result, labels):
    """Markdown: the GEMM rate, then per row its GFLOPs, floor ms and every cell's fraction of the floor.
    `labels`: {(runtime, precision): column title}. Empty when the run has no probe (older records)."""
    gemm = result.get("gemm")
    if not gemm:
        return []
    columns = [tuple(c) for c in result["columns"]]
    head = ["model", "implementation", "variant", "GFLOPs", "floor ms"] + [labels[c] for c in columns]
    lines = [_gemm_line(gemm), "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        floor = floor_ms(row, gemm)
        cells = []
        for column in columns:
            fraction = floor_fraction(row, column, gemm) if column in row["cells"] else None
            cells.append("-" if fraction is None else f"{fraction:.0%}")
        gflops = "-" if row.get("gflops") is None else f"{row['gflops']:.3g}"
        lines.append("| " + " | ".join([row["model"], row["implementation"], row["variant"], gflops,
                                        "-" if floor is None else f"{floor:.3g}"] + cells) + " |")
    return lines
