"""Cache-sized blocks for the element-wise training kernels (models/lerp.py, models/lerp_psa.py).

On CPU an element-wise chain over a large tensor is limited by memory traffic, and every temporary of the
tensor's size is a fresh allocation that the C library maps from (and returns to) the operating system: those page
faults cost as much as the arithmetic. Running the chain block by block keeps the temporaries in the core's cache
and small enough to be reused by the allocator. Other devices (CUDA: a caching allocator, one kernel per op) get one
block; the values are the same either way, since every block computes the same per-element operations.
"""

CPU_BLOCK_ELEMENTS = 1 << 17


def row_blocks(rows: int, elements_per_row: int, device):
    """Slices over `rows` of at most about `CPU_BLOCK_ELEMENTS` elements each (at least one row; equal sizes, not a
    ragged last block) on CPU, one slice on other devices."""
    if device.type != "cpu":
        return [slice(0, rows)]
    blocks = max(1, -(-rows * elements_per_row // CPU_BLOCK_ELEMENTS))
    step = max(1, -(-rows // blocks))
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]
