// PerChannelLUT streaming kernels (psa-finn). Self-contained: needs only ap_int.h and hls_stream.h, so it
// compiles with Vitis HLS and with g++ against the open ap_types headers.
//
// Stream format (FINN packing): one ap_uint<PE * W> word per cycle, lane p in bits [p*W, (p+1)*W).
// A frame is TMEM = NumChannels / PE words; lane p of word t carries channel t * PE + p.
// Table index of an input code x: k = x - min(TI), i.e. the raw bits with the sign bit flipped for signed TI.
//
//   per_channel_lut_full   : y = table[p][t][k]                       (ENTRIES = 2^b)
//   per_channel_lut_lerp64 : s = k >> 2, f = k & 3, y0 = T[s], y1 = T[s+1],
//                            y = y0 + ((y1 - y0) * f + 2) >> 2         (ENTRIES = 2^(b-2) + 1, round half up)
//     T is stored as two banks, even = T[0::2] and odd = T[1::2], so that y0 and y1 always come from
//     different banks and each bank is read once per cycle (single-port ROMs, no duplication).
#ifndef PSA_FINN_PER_CHANNEL_LUT_HPP
#define PSA_FINN_PER_CHANNEL_LUT_HPP

#include <ap_int.h>
#include <hls_stream.h>

namespace psa_finn {

// Signedness of an ap_int / ap_uint type (portable across the Vitis and the open ap_types headers).
template <typename T>
struct is_signed_ap;
template <int W>
struct is_signed_ap<ap_int<W> > {
    static const bool value = true;
};
template <int W>
struct is_signed_ap<ap_uint<W> > {
    static const bool value = false;
};

// Table index k = x - min(TI) of the raw input bits of one lane.
template <typename TI>
ap_uint<TI::width> lut_index(ap_uint<TI::width> raw) {
#pragma HLS INLINE
    if (is_signed_ap<TI>::value) {
        raw[TI::width - 1] = !raw[TI::width - 1];
    }
    return raw;
}

template <unsigned TMEM, unsigned PE, unsigned ENTRIES, typename TI, typename TO>
void per_channel_lut_full(hls::stream<ap_uint<PE * TI::width> > &in,
                          hls::stream<ap_uint<PE * TO::width> > &out,
                          const TO (&table)[PE][TMEM][ENTRIES], unsigned num_reps) {
    constexpr unsigned IW = TI::width;
    constexpr unsigned OW = TO::width;
    unsigned t = 0;
    for (unsigned i = 0; i < num_reps * TMEM; i++) {
#pragma HLS PIPELINE II = 1
        ap_uint<PE * IW> const word = in.read();
        ap_uint<PE * OW> result;
        for (unsigned p = 0; p < PE; p++) {
#pragma HLS UNROLL
            ap_uint<IW> const k = lut_index<TI>(word((p + 1) * IW - 1, p * IW));
            TO const y = table[p][t][k];
            result((p + 1) * OW - 1, p * OW) = y(OW - 1, 0);
        }
        out.write(result);
        t = (t == TMEM - 1) ? 0 : t + 1;
    }
}

template <unsigned TMEM, unsigned PE, unsigned ENTRIES, typename TI, typename TO>
void per_channel_lut_lerp64(hls::stream<ap_uint<PE * TI::width> > &in,
                            hls::stream<ap_uint<PE * TO::width> > &out,
                            const TO (&even)[PE][TMEM][(ENTRIES + 1) / 2],
                            const TO (&odd)[PE][TMEM][ENTRIES / 2], unsigned num_reps) {
    constexpr unsigned IW = TI::width;
    constexpr unsigned OW = TO::width;
    static_assert(IW >= 3 && ENTRIES == (1u << (IW - 2)) + 1, "lerp64 needs >= 3 input bits and 2^(b-2) + 1 entries");
    unsigned t = 0;
    for (unsigned i = 0; i < num_reps * TMEM; i++) {
#pragma HLS PIPELINE II = 1
        ap_uint<PE * IW> const word = in.read();
        ap_uint<PE * OW> result;
        for (unsigned p = 0; p < PE; p++) {
#pragma HLS UNROLL
            ap_uint<IW> const k = lut_index<TI>(word((p + 1) * IW - 1, p * IW));
            ap_uint<IW - 2> const segment = k(IW - 1, 2);
            ap_uint<2> const frac = k(1, 0);
            TO const from_even = even[p][t][(segment + 1) >> 1];
            TO const from_odd = odd[p][t][segment >> 1];
            bool const odd_segment = segment[0];
            ap_int<OW + 1> const y0 = odd_segment ? from_odd : from_even;
            ap_int<OW + 1> const y1 = odd_segment ? from_even : from_odd;
            ap_int<OW + 2> const delta = y1 - y0;
            ap_int<OW + 4> const scaled = delta * frac + 2;
            ap_int<OW + 2> const step = scaled >> 2;
            TO const y = y0 + step;
            result((p + 1) * OW - 1, p * OW) = y(OW - 1, 0);
        }
        out.write(result);
        t = (t == TMEM - 1) ? 0 : t + 1;
    }
}

}  // namespace psa_finn

#endif  // PSA_FINN_PER_CHANNEL_LUT_HPP
