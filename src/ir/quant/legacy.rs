//! The 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0
//! (ggml-quants.c `quantize_row_*_ref`, `quantize_row_*_impl` with an
//! importance matrix, `dequantize_row_*`). Each function handles one row.

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, QK, blocks};
use super::float::{f16_to_f32, f32_to_f16};
use super::search::{Sweep, make_qkx_quants, make_qx_quants};

/// The signed value of largest magnitude (the first one on ties).
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0f32;
    let mut max = 0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// `sigma2` of the importance weights: mean square over the whole row.
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

fn importance(qw: &[f32], xb: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

const IMATRIX_SWEEP: Sweep = Sweep {
    rmin: -0.9,
    rdelta: 0.05,
    nstep: 36,
    use_mad: false,
};

fn pack_qh(levels: &[u8; QK]) -> ([u8; QK / 2], [u8; 4]) {
    let mut qs = [0u8; QK / 2];
    let mut qh = 0u32;
    for j in 0..QK / 2 {
        let (a, b) = (levels[j], levels[j + QK / 2]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= (u32::from(a & 0x10) >> 4) << j;
        qh |= (u32::from(b & 0x10) >> 4) << (j + QK / 2);
    }
    (qs, qh.to_le_bytes())
}

pub fn quantize_q4_0(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sigma2 = imatrix.map(|_| row_sigma2(x));
    for (xb, qw, ob) in blocks(x, out, QK, BlockQ4_0::BYTES, imatrix) {
        let mut block = BlockQ4_0::default();
        if let (Some(qw), Some(sigma2)) = (qw, sigma2) {
            let w = importance(qw, xb, sigma2);
            let mut levels = [0i8; QK];
            let d = make_qx_quants(xb, 8, &mut levels, Some(&w));
            block.d = f32_to_f16(d);
            for j in 0..QK / 2 {
                block.qs[j] = levels[j] as u8 | ((levels[j + 16] as u8) << 4);
            }
        } else {
            let max = signed_absmax(xb);
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            block.d = f32_to_f16(d);
            for j in 0..QK / 2 {
                let x0 = xb[j] * id;
                let x1 = xb[j + QK / 2] * id;
                let q0 = 15u8.min((x0 + 8.5) as i8 as u8);
                let q1 = 15u8.min((x1 + 8.5) as i8 as u8);
                block.qs[j] = q0 | (q1 << 4);
            }
        }
        block.store(ob);
    }
}

pub fn quantize_q4_1(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sigma2 = imatrix.map(|_| row_sigma2(x));
    for (xb, qw, ob) in blocks(x, out, QK, BlockQ4_1::BYTES, imatrix) {
        let mut block = BlockQ4_1::default();
        if let (Some(qw), Some(sigma2)) = (qw, sigma2) {
            let w = importance(qw, xb, sigma2);
            let (mut levels, mut aux) = ([0u8; QK], [0u8; QK]);
            let (d, min) = make_qkx_quants(xb, 15, &w, &mut levels, &mut aux, IMATRIX_SWEEP);
            block.d = f32_to_f16(d);
            block.m = f32_to_f16(-min);
            for j in 0..QK / 2 {
                block.qs[j] = levels[j] | (levels[j + 16] << 4);
            }
        } else {
            let (min, max) = min_max(xb);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            block.d = f32_to_f16(d);
            block.m = f32_to_f16(min);
            for j in 0..QK / 2 {
                let x0 = (xb[j] - min) * id;
                let x1 = (xb[j + QK / 2] - min) * id;
                let q0 = 15u8.min((x0 + 0.5) as i8 as u8);
                let q1 = 15u8.min((x1 + 0.5) as i8 as u8);
                block.qs[j] = q0 | (q1 << 4);
            }
        }
        block.store(ob);
    }
}

pub fn quantize_q5_0(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sigma2 = imatrix.map(|_| row_sigma2(x));
    for (xb, qw, ob) in blocks(x, out, QK, BlockQ5_0::BYTES, imatrix) {
        let mut block = BlockQ5_0::default();
        let mut levels = [0u8; QK];
        if let (Some(qw), Some(sigma2)) = (qw, sigma2) {
            let w = importance(qw, xb, sigma2);
            let mut signed = [0i8; QK];
            let d = make_qx_quants(xb, 16, &mut signed, Some(&w));
            block.d = f32_to_f16(d);
            for j in 0..QK {
                levels[j] = signed[j] as u8;
            }
        } else {
            let max = signed_absmax(xb);
            let d = max / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            block.d = f32_to_f16(d);
            for j in 0..QK {
                levels[j] = 31u8.min((xb[j] * id + 16.5) as i8 as u8);
            }
        }
        (block.qs, block.qh) = pack_qh(&levels);
        block.store(ob);
    }
}

pub fn quantize_q5_1(x: &[f32], out: &mut [u8], imatrix: Option<&[f32]>) {
    let sigma2 = imatrix.map(|_| row_sigma2(x));
    for (xb, qw, ob) in blocks(x, out, QK, BlockQ5_1::BYTES, imatrix) {
        let mut block = BlockQ5_1::default();
        let mut levels = [0u8; QK];
        if let (Some(qw), Some(sigma2)) = (qw, sigma2) {
            let w = importance(qw, xb, sigma2);
            let mut aux = [0u8; QK];
            let (d, min) = make_qkx_quants(xb, 31, &w, &mut levels, &mut aux, IMATRIX_SWEEP);
            block.d = f32_to_f16(d);
            block.m = f32_to_f16(-min);
        } else {
            let (min, max) = min_max(xb);
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            block.d = f32_to_f16(d);
            block.m = f32_to_f16(min);
            for j in 0..QK {
                levels[j] = ((xb[j] - min) * id + 0.5) as u8;
            }
        }
        (block.qs, block.qh) = pack_qh(&levels);
        block.store(ob);
    }
}

pub fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    for (xb, ob) in x
        .chunks_exact(QK)
        .zip(out.chunks_exact_mut(BlockQ8_0::BYTES))
    {
        let mut amax = 0f32;
        for &v in xb {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut block = BlockQ8_0 {
            d: f32_to_f16(d),
            ..Default::default()
        };
        for j in 0..QK {
            block.qs[j] = (xb[j] * id).round() as i8;
        }
        block.store(ob);
    }
}

pub fn dequantize_q4_0(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ4_0::BYTES)
        .zip(y.chunks_exact_mut(QK))
    {
        let block = BlockQ4_0::load(b);
        let d = f16_to_f32(block.d);
        for j in 0..QK / 2 {
            yb[j] = ((block.qs[j] & 0x0f) as i32 - 8) as f32 * d;
            yb[j + QK / 2] = ((block.qs[j] >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn dequantize_q4_1(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ4_1::BYTES)
        .zip(y.chunks_exact_mut(QK))
    {
        let block = BlockQ4_1::load(b);
        let (d, m) = (f16_to_f32(block.d), f16_to_f32(block.m));
        for j in 0..QK / 2 {
            yb[j] = (block.qs[j] & 0x0f) as f32 * d + m;
            yb[j + QK / 2] = (block.qs[j] >> 4) as f32 * d + m;
        }
    }
}

fn unpack_qh(qs: &[u8; QK / 2], qh: [u8; 4]) -> [i32; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0i32; QK];
    for j in 0..QK / 2 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        q[j] = ((qs[j] & 0x0f) as u32 | h0) as i32;
        q[j + QK / 2] = ((qs[j] >> 4) as u32 | h1) as i32;
    }
    q
}

pub fn dequantize_q5_0(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ5_0::BYTES)
        .zip(y.chunks_exact_mut(QK))
    {
        let block = BlockQ5_0::load(b);
        let d = f16_to_f32(block.d);
        for (v, q) in yb.iter_mut().zip(unpack_qh(&block.qs, block.qh)) {
            *v = (q - 16) as f32 * d;
        }
    }
}

pub fn dequantize_q5_1(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ5_1::BYTES)
        .zip(y.chunks_exact_mut(QK))
    {
        let block = BlockQ5_1::load(b);
        let (d, m) = (f16_to_f32(block.d), f16_to_f32(block.m));
        for (v, q) in yb.iter_mut().zip(unpack_qh(&block.qs, block.qh)) {
            *v = q as f32 * d + m;
        }
    }
}

pub fn dequantize_q8_0(bytes: &[u8], y: &mut [f32]) {
    for (b, yb) in bytes
        .chunks_exact(BlockQ8_0::BYTES)
        .zip(y.chunks_exact_mut(QK))
    {
        let block = BlockQ8_0::load(b);
        let d = f16_to_f32(block.d);
        for j in 0..QK {
            yb[j] = block.qs[j] as f32 * d;
        }
    }
}
