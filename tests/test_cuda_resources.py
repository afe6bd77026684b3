"""ptx_check's parsing and budgets, on hand-written inputs (no compiler needed): the
nvJitLink info log, the SASS load-window count, the budget rules and the cache key."""

from __future__ import annotations

import pytest

from kernels.cuda import ptx_check

LOG = """ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_ZN7kernels4cuda10layer_norm' for 'sm_90'
ptxas info    : Function properties for _ZN7kernels4cuda10layer_norm
ptxas         .     0 bytes stack frame, 36 bytes spill stores, 40 bytes spill loads
ptxas info    : Used 205 registers, used 0 barriers
info    : used 205 registers, used 6 barriers, 0 stack, 0 bytes smem, 920 bytes cmem[0]
"""
PTX = ".visible .shared .align 8 .b8 _cudapy_smem_1[256];\n.visible .entry k()\n"


def test_link_log_gives_registers_spills_and_shared_memory():
    assert ptx_check.parse_link_log(LOG, PTX) == (205, 36, 40, 256)
    with pytest.raises(ValueError, match="no register"):
        ptx_check.parse_link_log("info : nothing", PTX)


SASS = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/               @P1 LDG.E R69, desc[UR4][R4.64] ;
        /*0020*/               @P2 LDG.E R73, desc[UR6][R4.64+0x80] ;
        /*0030*/                   LDG.E.64 R10, desc[UR4][R6.64] ;
        /*0040*/                   IMAD R2, R2, 0x4, RZ ;
        /*0050*/                   FADD R3, R69, -R5 ;
        /*0060*/                   LDG.E R7, desc[UR4][R4.64+0x100] ;
        /*0070*/                   LDG.E R8, desc[UR4][R7.64] ;
        /*0080*/                   STG.E desc[UR4][R2.64], R8 ;
"""


def test_sass_window_counts_loads_issued_before_any_use():
    # three loads before FADD reads R69; then a load whose address is a pending load's
    # result (R7) closes the window of one; the last load is read by the store
    assert ptx_check.sass_loads_in_flight(SASS) == 3
    assert ptx_check.sass_loads_in_flight(SASS.replace("R69, -R5", "R11, -R5")) == 3
    serial = "\n".join(f"/*{i:04x}*/ LDG.E R{10 + i}, desc[UR4][R2.64] ;\n"
                       f"/*{i:04x}*/ FADD R3, R3, R{10 + i} ;" for i in range(4))
    assert ptx_check.sass_loads_in_flight(serial) == 1


def test_budgets_registers_spills_and_loads():
    row = ptx_check.Resources("forward_warp_rows[8] layer_norm", "float32", "sm_90", 80, 0, 0,
                              256, 8)
    assert row.budget == ptx_check.WARP_ROW_BUDGET["sm_90"] and not row.over_budget
    assert ptx_check.Resources("backward_warp_rows[4] rms_norm", "float32", "sm_90", 60, 0, 0,
                               256, 7).over_budget  # wants 2·4 loads
    # the block-per-row kernels: the general register budget, and their loads checked too
    block = ptx_check.Resources("backward_block_rows[4] layer_norm", "float32", "sm_90", 100, 0,
                                0, 1280, 8)
    assert block.budget == ptx_check.REGISTER_BUDGET and not block.over_budget
    assert ptx_check.Resources("forward_long_rows[8] rms_norm", "float32", "sm_90", 60, 0, 0,
                               1280, 4).over_budget  # wants a chunk's 8 loads
    assert ptx_check.is_row_kernel("forward_long_rows[8] layer_norm")
    assert not ptx_check.is_row_kernel("batch_norm.input_gradient")
    assert ptx_check.Resources("column_sums", "float32", "sm_80", 129, 0, 0, 0).over_budget
    assert ptx_check.Resources("column_sums", "float32", "sm_80", 40, 4, 0, 0).over_budget
    assert not ptx_check.Resources("column_sums", "float32", "sm_80", 128, 0, 0, 0).over_budget


def test_table_lists_every_row_and_flags_over_budget():
    rows = [ptx_check.Resources("column_sums", "float32", "sm_80", 129, 0, 0, 0),
            ptx_check.Resources("forward_warp_rows[2] rms_norm", "float64", "sm_90", 40, 0, 0,
                                256, 2)]
    text = ptx_check.table(rows)
    assert "OVER BUDGET" in text.splitlines()[1] and text.splitlines()[2].endswith("ok")
