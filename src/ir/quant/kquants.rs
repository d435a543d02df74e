//! The 256-element super-block formats Q2_K..Q6_K (ggml-quants.c
//! `quantize_row_*_ref`, the `_impl` variants used with an importance
//! matrix, and `dequantize_row_*`). Each function handles one row.

use super::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, QK_K, blocks};
use super::float::{f16_to_f32, f32_to_f16};
use super::lanes::{make_q3_lanes, make_qkx_lanes, make_qx_lanes, transpose};
use super::search::{GROUP_MAX_EPS, Sweep, make_qp_quants, make_qx_quants, nearest_int};

const IMATRIX_SWEEP: Sweep = Sweep {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
    use_mad: false,
};

#[inline(always)]
fn sum_squares(x: &[f32]) -> f32 {
    let mut s = 0f32;
    for &v in x {
        s += v * v;
    }
    s
}

/// `qs[j/4 + l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6`, per 128.
#[inline(always)]
fn pack_2bit(levels: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for j in (0..QK_K).step_by(128) {
        for l in 0..32 {
            qs[j / 4 + l] = levels[j + l]
                | (levels[j + l + 32] << 2)
                | (levels[j + l + 64] << 4)
                | (levels[j + l + 96] << 6);
        }
    }
    qs
}

/// `untranspose` of two super-blocks' 16 groups of 32.
#[inline(always)]
fn untranspose_pair(lt: &[[u8; 16]; 32]) -> [[u8; QK_K]; 2] {
    let mut out = [[0u8; QK_K]; 2];
    for k in 0..16 {
        for i in 0..32 {
            out[k / 8][32 * (k % 8) + i] = lt[i][k];
        }
    }
    out
}

/// Levels of `L` groups of `N` (group `k` at `lt[..][k]`) back in element order.
#[inline(always)]
fn untranspose<T: Copy + Default, const N: usize, const L: usize>(lt: &[[T; L]; N]) -> [T; QK_K] {
    let mut out = [T::default(); QK_K];
    for k in 0..L {
        for i in 0..N {
            out[k * N + i] = lt[i][k];
        }
    }
    out
}

// ---------------------------------------------------------------- Q2_K

#[inline(always)]
pub fn quantize_q2_k(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    for (xb, qw, ob) in blocks(x, out, QK_K, BlockQ2K::BYTES, imatrix) {
        let block = match qw {
            None => q2_k_ref(xb),
            Some(qw) => q2_k_impl(xb, qw),
        };
        block.store(ob);
    }
}

#[inline(always)]
fn q2_k_requantize(x: &[f32], block: &BlockQ2K, d_all: f32, m_all: f32, levels: &mut [u8; QK_K]) {
    for j in 0..QK_K / 16 {
        let d = d_all * (block.scales[j] & 0xf) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = m_all * (block.scales[j] >> 4) as f32;
        for ii in 0..16 {
            let l = nearest_int((x[16 * j + ii] + dm) / d);
            levels[16 * j + ii] = l.clamp(0, 3) as u8;
        }
    }
}

#[inline(always)]
fn q2_k_ref(x: &[f32]) -> BlockQ2K {
    let sweep = Sweep {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    let xt = transpose::<16, 16>(x);
    let mut weights = [[0f32; 16]; 16];
    for l in 0..16 {
        for j in 0..16 {
            weights[l][j] = xt[l][j].abs();
        }
    }
    let mut lt = [[0u8; 16]; 16];
    let (scales, mins) = make_qkx_lanes(&xt, &weights, 3, sweep, &mut lt);
    let mut levels = untranspose(&lt);
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let mut block = BlockQ2K::default();
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for j in 0..QK_K / 16 {
            block.scales[j] = nearest_int(iscale * scales[j]) as u8;
        }
        block.d = f32_to_f16(max_scale / 15.0);
    } else {
        block.d = f32_to_f16(0.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for j in 0..QK_K / 16 {
            let l = nearest_int(iscale * mins[j]);
            block.scales[j] |= (l << 4) as u8;
        }
        block.dmin = f32_to_f16(max_min / 15.0);
    } else {
        block.dmin = f32_to_f16(0.0);
    }
    q2_k_requantize(
        x,
        &block,
        f16_to_f32(block.d),
        f16_to_f32(block.dmin),
        &mut levels,
    );
    block.qs = pack_2bit(&levels);
    block
}

#[inline(always)]
fn q2_k_impl(x: &[f32], qw: &[f32]) -> BlockQ2K {
    let mut sw = [0f32; QK_K / 16];
    let (mut ls, mut lm) = ([0u8; QK_K / 16], [0u8; QK_K / 16]);
    let sigma2 = sum_squares(x) / QK_K as f32;
    let xt = transpose::<16, 16>(x);
    let qt = transpose::<16, 16>(qw);
    let mut weight = [[0f32; 16]; 16];
    for l in 0..16 {
        for j in 0..16 {
            weight[l][j] = qt[l][j] * (sigma2 + xt[l][j] * xt[l][j]).sqrt();
            sw[j] += weight[l][j];
        }
    }
    let mut lt = [[0u8; 16]; 16];
    let (scales, mins) = make_qkx_lanes(&xt, &weight, 3, IMATRIX_SWEEP, &mut lt);
    let mut levels = untranspose(&lt);
    let dm = make_qp_quants(&scales, 15, &mut ls, &sw);
    let mm = make_qp_quants(&mins, 15, &mut lm, &sw);
    let mut block = BlockQ2K {
        d: f32_to_f16(dm),
        dmin: f32_to_f16(mm),
        ..Default::default()
    };
    for j in 0..QK_K / 16 {
        block.scales[j] = ls[j] | (lm[j] << 4);
    }
    q2_k_requantize(
        x,
        &block,
        f16_to_f32(block.d),
        f16_to_f32(block.dmin),
        &mut levels,
    );
    block.qs = pack_2bit(&levels);
    block
}

pub fn dequantize_q2_k(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ2K::BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let block = BlockQ2K::load(b);
        let d = f16_to_f32(block.d);
        let min = f16_to_f32(block.dmin);
        let mut out = 0;
        let mut is = 0;
        for half in 0..2 {
            let q = &block.qs[32 * half..32 * half + 32];
            for shift in [0, 2, 4, 6] {
                for part in 0..2 {
                    let sc = block.scales[is];
                    is += 1;
                    let dl = d * (sc & 0xf) as f32;
                    let ml = min * (sc >> 4) as f32;
                    for l in 0..16 {
                        yb[out] = dl * ((q[l + 16 * part] >> shift) & 3) as f32 - ml;
                        out += 1;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- Q3_K

#[inline(always)]
pub fn quantize_q3_k(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    for (xb, qw, ob) in blocks(x, out, QK_K, BlockQ3K::BYTES, imatrix) {
        let block = match qw {
            None => q3_k_ref(xb),
            Some(qw) => q3_k_impl(xb, qw),
        };
        block.store(ob);
    }
}

/// Sets 6-bit value `l` (0..63) of sub-block `j` in Q3_K's 12 scale bytes.
#[inline(always)]
fn q3_k_set_scale(scales: &mut [u8; 12], j: usize, l: i32) {
    if j < 8 {
        scales[j] = (l & 0xf) as u8;
    } else {
        scales[j - 8] |= ((l & 0xf) << 4) as u8;
    }
    scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
}

/// The signed 6-bit scale of sub-block `j`.
#[inline(always)]
fn q3_k_scale(scales: &[u8; 12], j: usize) -> i8 {
    let low = if j < 8 {
        scales[j] & 0xf
    } else {
        scales[j - 8] >> 4
    };
    let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    (low | (high << 4)) as i8 - 32
}

/// Re-quantizes with the stored scales and packs the 3-bit levels.
#[inline(always)]
fn q3_k_finish(x: &[f32], block: &mut BlockQ3K, levels: &mut [i8; QK_K]) {
    let d_all = f16_to_f32(block.d);
    for j in 0..QK_K / 16 {
        let d = d_all * q3_k_scale(&block.scales, j) as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-4, 3);
            levels[16 * j + ii] = (l + 4) as i8;
        }
    }
    block.hmask = [0; QK_K / 8];
    let mut m = 0;
    let mut hm = 1u8;
    for level in levels.iter_mut() {
        if *level > 3 {
            block.hmask[m] |= hm;
            *level -= 4;
        }
        m += 1;
        if m == QK_K / 8 {
            m = 0;
            hm <<= 1;
        }
    }
    let mut unsigned = [0u8; QK_K];
    for (u, &l) in unsigned.iter_mut().zip(levels.iter()) {
        *u = l as u8;
    }
    block.qs = pack_2bit(&unsigned);
}

#[inline(always)]
fn q3_k_ref(x: &[f32]) -> BlockQ3K {
    let xt = transpose::<16, 16>(x);
    let mut lt = [[0i8; 16]; 16];
    let scales = make_q3_lanes(&xt, 4, &mut lt);
    let mut levels = untranspose(&lt);
    let mut max_scale = 0f32;
    let mut amax = 0f32;
    for j in 0..QK_K / 16 {
        let scale = scales[j].abs();
        if scale > amax {
            amax = scale;
            max_scale = scales[j];
        }
    }
    let mut block = BlockQ3K::default();
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for j in 0..QK_K / 16 {
            let l = nearest_int(iscale * scales[j]) as i8;
            let l = (l.clamp(-32, 31) + 32) as i32;
            q3_k_set_scale(&mut block.scales, j, l);
        }
        block.d = f32_to_f16(1.0 / iscale);
    } else {
        block.d = f32_to_f16(0.0);
    }
    q3_k_finish(x, &mut block, &mut levels);
    block
}

#[inline(always)]
fn q3_k_impl(x: &[f32], qw: &[f32]) -> BlockQ3K {
    let mut sw = [0f32; QK_K / 16];
    let mut ls = [0i8; QK_K / 16];
    let sigma2 = 2.0 * sum_squares(x) / QK_K as f32;
    let xt = transpose::<16, 16>(x);
    let qt = transpose::<16, 16>(qw);
    let mut weight = [[0f32; 16]; 16];
    for l in 0..16 {
        for j in 0..16 {
            weight[l][j] = qt[l][j] * (sigma2 + xt[l][j] * xt[l][j]).sqrt();
            sw[j] += weight[l][j];
        }
    }
    let mut lt = [[0i8; 16]; 16];
    let scales = make_qx_lanes(&xt, Some(&weight), 4, &mut lt);
    let mut levels = untranspose(&lt);
    let mut block = BlockQ3K::default();
    let d_block = make_qx_quants(&scales, 32, &mut ls, Some(&sw));
    for j in 0..QK_K / 16 {
        q3_k_set_scale(&mut block.scales, j, ls[j] as i32);
    }
    block.d = f32_to_f16(d_block);
    q3_k_finish(x, &mut block, &mut levels);
    block
}

pub fn dequantize_q3_k(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ3K::BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let block = BlockQ3K::load(b);
        let d_all = f16_to_f32(block.d);
        for (e, v) in yb.iter_mut().enumerate() {
            let (half, within) = (e / 128, e % 128);
            let (k, l) = (within / 32, within % 32);
            let low = (block.qs[32 * half + l] >> (2 * k)) & 3;
            let high_set = block.hmask[l] & (1 << (4 * half + k)) != 0;
            let q = low as i8 - if high_set { 0 } else { 4 };
            let sub = e / 16;
            *v = d_all * q3_k_scale(&block.scales, sub) as f32 * q as f32;
        }
    }
}

// ------------------------------------------------------- Q4_K and Q5_K

/// Packs eight 6-bit scales and mins (`get_scale_min_k4`'s inverse).
#[inline(always)]
fn pack_scale_min(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (l, m) = (ls[j], lm[j]);
        if j < 4 {
            s[j] = l;
            s[j + 4] = m;
        } else {
            s[j + 4] = (l & 0xf) | ((m & 0xf) << 4);
            s[j - 4] |= (l >> 4) << 6;
            s[j] |= (m >> 4) << 6;
        }
    }
    s
}

/// `get_scale_min_k4`.
#[inline(always)]
fn scale_min(s: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Scales, mins and levels of a Q4_K/Q5_K super-block (`nmax` 15 or 31).
struct ScaleMinBlock {
    d: u16,
    dmin: u16,
    scales: [u8; 12],
    levels: [u8; QK_K],
}

/// Two super-blocks at once (`x` and `qw` hold 512 values): their 16
/// sub-blocks fill 16 search lanes, which vectorizes far better than 8.
#[inline(always)]
fn scale_min_pair(
    x: &[f32],
    qw: Option<&[f32]>,
    nmax: i32,
    ref_sweep: Sweep,
) -> [ScaleMinBlock; 2] {
    // Q5_K's importance path caps the 6-bit scales at 63, Q4_K's does not.
    let cap_weighted = nmax == 31;
    let xt = transpose::<32, 16>(x);
    let mut weights = [[0f32; 16]; 32];
    let mut lt = [[0u8; 16]; 32];
    let (scales, mins) = match qw {
        None => {
            let mut sum_x2 = [0f32; 16];
            for l in 0..32 {
                for j in 0..16 {
                    sum_x2[j] += xt[l][j] * xt[l][j];
                }
            }
            let mut av_x = [0f32; 16];
            for j in 0..16 {
                av_x[j] = (sum_x2[j] / 32.0).sqrt();
            }
            for l in 0..32 {
                for j in 0..16 {
                    weights[l][j] = av_x[j] + xt[l][j].abs();
                }
            }
            make_qkx_lanes(&xt, &weights, nmax, ref_sweep, &mut lt)
        }
        Some(qw) => {
            let sigma2 = [
                2.0 * sum_squares(&x[..QK_K]) / QK_K as f32,
                2.0 * sum_squares(&x[QK_K..]) / QK_K as f32,
            ];
            let qt = transpose::<32, 16>(qw);
            for l in 0..32 {
                for j in 0..16 {
                    weights[l][j] = qt[l][j] * (sigma2[j / 8] + xt[l][j] * xt[l][j]).sqrt();
                }
            }
            make_qkx_lanes(&xt, &weights, nmax, IMATRIX_SWEEP, &mut lt)
        }
    };
    let levels = untranspose_pair(&lt);
    [0, 1].map(|h| {
        let mut levels = levels[h];
        let (scales, mins): (&[f32], &[f32]) = (&scales[8 * h..8 * h + 8], &mins[8 * h..8 * h + 8]);
        let xh = &x[QK_K * h..QK_K * (h + 1)];
        let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
        let (d, dmin);
        match qw {
            None => {
                let mut max_scale = 0f32;
                let mut max_min = 0f32;
                for j in 0..8 {
                    if scales[j] > max_scale {
                        max_scale = scales[j];
                    }
                    if mins[j] > max_min {
                        max_min = mins[j];
                    }
                }
                let inv_scale = if max_scale > 0.0 {
                    63.0 / max_scale
                } else {
                    0.0
                };
                let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
                for j in 0..8 {
                    ls[j] = 63u8.min(nearest_int(inv_scale * scales[j]) as u8);
                    lm[j] = 63u8.min(nearest_int(inv_min * mins[j]) as u8);
                }
                d = f32_to_f16(max_scale / 63.0);
                dmin = f32_to_f16(max_min / 63.0);
            }
            Some(_) => {
                let mut sw = [0f32; 8];
                for l in 0..32 {
                    for j in 0..8 {
                        sw[j] += weights[l][8 * h + j];
                    }
                }
                let d_block = make_qp_quants(scales, 63, &mut ls, &sw);
                let m_block = make_qp_quants(mins, 63, &mut lm, &sw);
                if cap_weighted {
                    for j in 0..8 {
                        ls[j] = ls[j].min(63);
                        lm[j] = lm[j].min(63);
                    }
                }
                d = f32_to_f16(d_block);
                dmin = f32_to_f16(m_block);
            }
        }
        let packed = pack_scale_min(&ls, &lm);
        for j in 0..8 {
            let (sc, m) = scale_min(&packed, j);
            let dj = f16_to_f32(d) * sc as f32;
            if dj == 0.0 {
                continue;
            }
            let dm = f16_to_f32(dmin) * m as f32;
            for ii in 0..32 {
                let l = nearest_int((xh[32 * j + ii] + dm) / dj);
                levels[32 * j + ii] = l.clamp(0, nmax) as u8;
            }
        }
        ScaleMinBlock {
            d,
            dmin,
            scales: packed,
            levels,
        }
    })
}

/// Runs `scale_min_pair` over a row's super-blocks two at a time (the last
/// one of an odd count is paired with a copy of itself).
#[inline(always)]
fn scale_min_blocks(
    x: &[f32],
    imatrix: Option<&[f32]>,
    nmax: i32,
    sweep: Sweep,
    mut emit: impl FnMut(usize, &ScaleMinBlock),
) {
    let nb = x.len() / QK_K;
    let mut i = 0;
    while i < nb {
        let r = QK_K * i..QK_K * (i + 2);
        let pair = if i + 1 < nb {
            scale_min_pair(&x[r.clone()], imatrix.map(|m| &m[r]), nmax, sweep)
        } else {
            let mut xx = [0f32; 2 * QK_K];
            xx[..QK_K].copy_from_slice(&x[QK_K * i..]);
            xx[QK_K..].copy_from_slice(&x[QK_K * i..]);
            let mut mm = [0f32; 2 * QK_K];
            if let Some(m) = imatrix {
                mm[..QK_K].copy_from_slice(&m[QK_K * i..]);
                mm[QK_K..].copy_from_slice(&m[QK_K * i..]);
            }
            scale_min_pair(&xx, imatrix.map(|_| &mm[..]), nmax, sweep)
        };
        for (h, sm) in pair.iter().enumerate().take(nb - i) {
            emit(i + h, sm);
        }
        i += 2;
    }
}

#[inline(always)]
pub fn quantize_q4_k(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sweep = Sweep {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    scale_min_blocks(x, imatrix, 15, sweep, |i, sm| {
        let ob = &mut out[BlockQ4K::BYTES * i..BlockQ4K::BYTES * (i + 1)];
        let mut block = BlockQ4K {
            d: sm.d,
            dmin: sm.dmin,
            scales: sm.scales,
            ..Default::default()
        };
        for c in 0..4 {
            for l in 0..32 {
                block.qs[32 * c + l] = sm.levels[64 * c + l] | (sm.levels[64 * c + l + 32] << 4);
            }
        }
        block.store(ob);
    });
}

#[inline(always)]
pub fn quantize_q5_k(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sweep = Sweep {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    scale_min_blocks(x, imatrix, 31, sweep, |i, sm| {
        let ob = &mut out[BlockQ5K::BYTES * i..BlockQ5K::BYTES * (i + 1)];
        let mut block = BlockQ5K {
            d: sm.d,
            dmin: sm.dmin,
            scales: sm.scales,
            ..Default::default()
        };
        let (mut m1, mut m2) = (1u8, 2u8);
        for c in 0..4 {
            for j in 0..32 {
                let mut l1 = sm.levels[64 * c + j];
                if l1 > 15 {
                    l1 -= 16;
                    block.qh[j] |= m1;
                }
                let mut l2 = sm.levels[64 * c + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    block.qh[j] |= m2;
                }
                block.qs[32 * c + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        block.store(ob);
    });
}

pub fn dequantize_q4_k(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ4K::BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let block = BlockQ4K::load(b);
        dequantize_scale_min(block.d, block.dmin, &block.scales, &block.qs, None, yb);
    }
}

pub fn dequantize_q5_k(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ5K::BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let block = BlockQ5K::load(b);
        let qh = Some(&block.qh);
        dequantize_scale_min(block.d, block.dmin, &block.scales, &block.qs, qh, yb);
    }
}

/// Q4_K and Q5_K values: `d·sc_j·q − dmin·m_j`, `q` the nibble in `qs` plus,
/// for Q5_K, 16 where its bit in `qh` is set.
fn dequantize_scale_min(
    d: u16,
    dmin: u16,
    scales: &[u8; 12],
    qs: &[u8; QK_K / 2],
    qh: Option<&[u8; QK_K / 8]>,
    yb: &mut [f32],
) {
    let (d, min) = (f16_to_f32(d), f16_to_f32(dmin));
    let high = |l: usize, bit: u8| match qh {
        Some(qh) if qh[l] & bit != 0 => 16,
        _ => 0,
    };
    for c in 0..4 {
        let (sc1, m1) = scale_min(scales, 2 * c);
        let (sc2, m2) = scale_min(scales, 2 * c + 1);
        let (d1, d2) = (d * sc1 as f32, d * sc2 as f32);
        let (mm1, mm2) = (min * m1 as f32, min * m2 as f32);
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        for l in 0..32 {
            let q = qs[32 * c + l];
            yb[64 * c + l] = d1 * ((q & 0xf) + high(l, u1)) as f32 - mm1;
            yb[64 * c + 32 + l] = d2 * ((q >> 4) + high(l, u2)) as f32 - mm2;
        }
    }
}

// ---------------------------------------------------------------- Q6_K

#[inline(always)]
pub fn quantize_q6_k(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    for (xb, qw, ob) in blocks(x, out, QK_K, BlockQ6K::BYTES, imatrix) {
        q6_k(xb, qw).store(ob);
    }
}

#[inline(always)]
fn q6_k(x: &[f32], qw: Option<&[f32]>) -> BlockQ6K {
    let xt = transpose::<16, 16>(x);
    let qt = qw.map(transpose::<16, 16>);
    let mut lt = [[0i8; 16]; 16];
    let scales = make_qx_lanes(&xt, qt.as_ref(), 32, &mut lt);
    let mut levels = untranspose(&lt);
    let mut max_scale = 0f32;
    let mut max_abs_scale = 0f32;
    for &scale in &scales {
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    let mut block = BlockQ6K::default();
    if max_abs_scale < GROUP_MAX_EPS {
        block.d = f32_to_f16(0.0);
        return block;
    }
    let iscale = -128.0 / max_scale;
    block.d = f32_to_f16(1.0 / iscale);
    for ib in 0..QK_K / 16 {
        block.scales[ib] = 127.min(nearest_int(iscale * scales[ib])) as i8;
    }
    let d_all = f16_to_f32(block.d);
    for j in 0..QK_K / 16 {
        let d = d_all * block.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d).clamp(-32, 31);
            levels[16 * j + ii] = (l + 32) as i8;
        }
    }
    for half in 0..2 {
        let j = 128 * half;
        for l in 0..32 {
            let q = |k: usize| levels[j + l + 32 * k] as u8;
            block.ql[64 * half + l] = (q(0) & 0xf) | ((q(2) & 0xf) << 4);
            block.ql[64 * half + l + 32] = (q(1) & 0xf) | ((q(3) & 0xf) << 4);
            block.qh[32 * half + l] =
                (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
    block
}

pub fn dequantize_q6_k(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ6K::BYTES)
        .zip(y.chunks_exact_mut(QK_K))
    {
        let block = BlockQ6K::load(b);
        let d = f16_to_f32(block.d);
        for half in 0..2 {
            let (ql, qh) = (&block.ql[64 * half..], &block.qh[32 * half..]);
            let sc = &block.scales[8 * half..];
            let out = &mut yb[128 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i8 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
                out[l] = d * sc[is] as f32 * q1 as f32;
                out[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
                out[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
                out[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
            }
        }
    }
}
