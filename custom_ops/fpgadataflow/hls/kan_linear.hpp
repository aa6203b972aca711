// KANLinear streaming kernel (psa-finn): y_j = sum_i T[j][i][x_i - min(TI)], folded by SIMD inputs and PE outputs
// per cycle like finn's MVAU. Self-contained: needs ap_int.h, hls_stream.h and per_channel_lut.hpp (lut_index).
//
// Streams (FINN packing): input words of SIMD codes (lane s in bits [s*IW, (s+1)*IW)), SF = MW / SIMD words per
// vector; output words of PE accumulator values, NF = MH / PE words per vector. For output group nf the kernel walks
// the SF input words (read from the stream for nf = 0, from its buffer after), adds the SIMD table values of each of
// the PE outputs and accumulates over the words; the word sf = SF - 1 completes the group. II = 1: NF * SF cycles.
// table[s][nf * SF + sf][k][p] = T[nf * PE + p][sf * SIMD + s][k] (KANLinear.get_lane_tables).
#ifndef PSA_FINN_KAN_LINEAR_HPP
#define PSA_FINN_KAN_LINEAR_HPP

#include <ap_int.h>
#include <hls_stream.h>

#include "per_channel_lut.hpp"

namespace psa_finn {

template <unsigned SF, unsigned NF, unsigned SIMD, unsigned PE, unsigned ENTRIES, typename TI, typename TT,
          typename TA>
void kan_linear(hls::stream<ap_uint<SIMD * TI::width> > &in, hls::stream<ap_uint<PE * TA::width> > &out,
                const TT (&table)[SIMD][NF * SF][ENTRIES][PE], unsigned num_reps) {
    constexpr unsigned IW = TI::width;
    constexpr unsigned AW = TA::width;
    ap_uint<SIMD * IW> buffer[SF];
    TA acc[PE];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    unsigned sf = 0, nf = 0;
    for (unsigned i = 0; i < num_reps * NF * SF; i++) {
#pragma HLS PIPELINE II = 1
        ap_uint<SIMD * IW> word;
        if (nf == 0) {
            word = in.read();
            buffer[sf] = word;
        } else {
            word = buffer[sf];
        }
        ap_uint<PE * AW> result;
        for (unsigned p = 0; p < PE; p++) {
#pragma HLS UNROLL
            TA sum = (sf == 0) ? TA(0) : acc[p];
            for (unsigned s = 0; s < SIMD; s++) {
#pragma HLS UNROLL
                ap_uint<IW> const k = lut_index<TI>(word((s + 1) * IW - 1, s * IW));
                sum += table[s][nf * SF + sf][k][p];
            }
            acc[p] = sum;
            result((p + 1) * AW - 1, p * AW) = sum(AW - 1, 0);
        }
        if (sf == SF - 1) {
            out.write(result);
        }
        if (sf == SF - 1) {
            sf = 0;
            nf = (nf == NF - 1) ? 0 : nf + 1;
        } else {
            sf++;
        }
    }
}

}  // namespace psa_finn

#endif  // PSA_FINN_KAN_LINEAR_HPP
