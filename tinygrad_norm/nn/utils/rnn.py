"""Variable-length batches for the recurrent layers, as in torch.nn.utils.rnn.

`pack_padded_sequence` turns a padded batch and its lengths into a PackedSequence in PyTorch's
layout: `data` holds the valid steps time-major (step 0 of every sequence, then step 1 of every
sequence still running, ...), longest sequence first; `batch_sizes[t]` is how many sequences
have a step t. `pad_packed_sequence` undoes it, with `padding_value` at the padded positions.
Both are differentiable (they index and concatenate Tensors).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...tensor import Tensor, cat, full, stack


class PackedSequence(NamedTuple):
    data: Tensor
    batch_sizes: np.ndarray
    sorted_indices: np.ndarray | None = None
    unsorted_indices: np.ndarray | None = None


def _lengths_array(lengths) -> np.ndarray:
    array = lengths.data if isinstance(lengths, Tensor) else np.asarray(lengths)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"lengths must be a 1-D sequence of ints, got {array.dtype} array of "
                         f"shape {array.shape}")
    return array.astype(np.int64)


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Pack a padded (T, B, *) batch (or (B, T, *) with batch_first) of sequences whose
    lengths are `lengths` (B,). With enforce_sorted the lengths must be non-increasing;
    otherwise the batch is sorted here and the permutation kept for unpacking."""
    lengths = _lengths_array(lengths)
    if not isinstance(input, Tensor) or input.ndim < 2:
        raise ValueError("pack_padded_sequence: input must be a Tensor of at least 2 dims")
    if batch_first:
        input = input.transpose(0, 1)
    steps, batch = input.shape[:2]
    if len(lengths) != batch:
        raise ValueError(f"pack_padded_sequence: got {len(lengths)} lengths for a batch of "
                         f"{batch} sequences")
    if batch and (lengths.min() <= 0 or lengths.max() > steps):
        raise ValueError(f"pack_padded_sequence: every length must be in 1..{steps} (the "
                         f"padded length), got {lengths.tolist()}")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ValueError("`lengths` array must be sorted in decreasing order when "
                             "`enforce_sorted` is True. You can pass `enforce_sorted=False` "
                             "to pack_padded_sequence and/or pack_sequence to sidestep this "
                             "requirement if you do not need ONNX exportability.")
        order, sorted_indices, unsorted_indices = np.arange(batch), None, None
    else:
        order = np.argsort(-lengths, kind="stable")
        sorted_indices, unsorted_indices = order, np.argsort(order)
    batch_sizes = np.array([(lengths > t).sum() for t in range(lengths.max(initial=0))],
                           dtype=np.int64)
    data = cat([input[t, order[:size]] for t, size in enumerate(batch_sizes)])
    return PackedSequence(data, batch_sizes, sorted_indices, unsorted_indices)


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0,
                        total_length: int | None = None) -> tuple[Tensor, Tensor]:
    """(padded, lengths): the (T, B, *) batch (or (B, T, *)) in the original order, and the
    lengths (int64 Tensor)."""
    data, batch_sizes = sequence.data, [int(b) for b in sequence.batch_sizes]
    steps = len(batch_sizes)
    if total_length is not None and total_length < steps:
        raise ValueError(f"Expected total_length to be at least the length of the longest "
                         f"sequence ({steps}), got {total_length}")
    batch, feature_shape = batch_sizes[0], tuple(data.shape[1:])
    rows, offset = [], 0
    for size in batch_sizes + [0] * ((total_length or steps) - steps):
        step = data[offset:offset + size]
        offset += size
        if size < batch:
            pad = full((batch - size, *feature_shape), padding_value, dtype=data.dtype,
                       device=data.device)
            step = cat([step, pad]) if size else pad
        rows.append(step)
    padded = stack(rows)
    lengths = np.array([sum(b > i for b in batch_sizes) for i in range(batch)], dtype=np.int64)
    if sequence.unsorted_indices is not None:
        padded = padded[:, sequence.unsorted_indices]
        lengths = lengths[sequence.unsorted_indices]
    return (padded.transpose(0, 1) if batch_first else padded), Tensor(lengths)
