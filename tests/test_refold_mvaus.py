"""transforms.refold_mvaus_by_resources: an MVAU refolded for fewer LUTs is no slower, on no more DSPs, and is the
cheapest legal pair by the resource model (builds with the step verify their outputs: tests/test_build_digits.py)."""

import pytest
from qonnx.custom_op.registry import getCustomOp

from test_layer_resources import U50, figures, mvau_model  # noqa: I100  (tests/ is on sys.path, as graphs.py)

from psa_finn.transforms.refold_mvaus_by_resources import RefoldMVAUsByResources


def mvau_cycles_per_vector(mw, mh, pe, simd):
    return (mw // simd) * (mh // pe)


def folding(model):
    layer = getCustomOp(model.graph.node[0])
    return layer.get_nodeattr("PE"), layer.get_nodeattr("SIMD")


def all_pairs(mw, mh):
    return [(pe, simd) for pe in range(1, mh + 1) if mh % pe == 0 for simd in range(1, mw + 1) if mw % simd == 0]


@pytest.mark.parametrize("mw, mh, pe, simd", [(96, 96, 24, 4), (64, 64, 16, 4), (96, 192, 48, 4), (192, 96, 48, 4),
                                              (48, 96, 12, 4)])
def test_refold_is_no_slower_on_no_more_dsps_and_cheapest(mw, mh, pe, simd):
    model = mvau_model(mw, mh, pe, simd, odt="INT21")
    before = figures(model)
    refolded = model.transform(RefoldMVAUsByResources(U50))
    after = figures(refolded)
    new_pe, new_simd = folding(refolded)
    assert mvau_cycles_per_vector(mw, mh, new_pe, new_simd) <= mvau_cycles_per_vector(mw, mh, pe, simd)
    assert new_pe * new_simd <= pe * simd
    assert after["dsp"] <= before["dsp"] and after["bram18"] <= before["bram18"]
    # SetFolding's PE-first choice is never the cheapest of these layers: each PE lane has its own accumulator and
    # output-buffer bits, which a deeper SIMD adder tree does not need.
    assert after["lut"] < before["lut"]
    # no other legal pair ranks lower by (DSP, LUT, BRAM18, URAM)
    layer = getCustomOp(refolded.graph.node[0])
    best = (after["dsp"], after["lut"], after["bram18"], after["uram"])
    for cand_pe, cand_simd in all_pairs(mw, mh):
        if cand_pe * cand_simd > pe * simd or mvau_cycles_per_vector(mw, mh, cand_pe, cand_simd) > \
                mvau_cycles_per_vector(mw, mh, pe, simd):
            continue
        layer.set_nodeattr("PE", cand_pe)
        layer.set_nodeattr("SIMD", cand_simd)
        cand = figures(refolded)
        assert (cand["dsp"], cand["lut"], cand["bram18"], cand["uram"]) >= best, (cand_pe, cand_simd)


def test_refold_never_trades_dsps_for_luts():
    # PE=1, SIMD=64 is the fewest LUTs of a 64x64 layer at 64 cycles, but it leaves one of the two 8-bit lanes of
    # every DSP48E2 empty: twice the DSPs. The refold keeps SetFolding's 32 DSPs.
    model = mvau_model(64, 64, 16, 4, odt="INT21")
    pe1 = mvau_model(64, 64, 1, 64, odt="INT21")
    assert figures(pe1)["lut"] < figures(model)["lut"] and figures(pe1)["dsp"] == 2 * figures(model)["dsp"]
    refolded = model.transform(RefoldMVAUsByResources(U50))
    assert folding(refolded) != (1, 64)
    assert figures(refolded)["dsp"] == figures(model)["dsp"]


def test_refold_is_idempotent():
    refolded = mvau_model(96, 96, 24, 4, odt="INT21").transform(RefoldMVAUsByResources(U50))
    assert folding(refolded) != (24, 4)
    _, modified = RefoldMVAUsByResources(U50).apply(refolded)
    assert not modified


def test_refold_leaves_a_fully_folded_layer():
    model = mvau_model(96, 10, 1, 1, odt="INT24")
    assert folding(model.transform(RefoldMVAUsByResources(U50))) == (1, 1)
