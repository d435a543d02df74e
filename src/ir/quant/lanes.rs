//! The scale searches of [`super::search`] run on `L` independent groups at
//! once: element `i` of group `k` is `x[i][k]`. Every lane performs exactly
//! the scalar operations, in the scalar order (the sums stay sequential over
//! `i`), so the results are bit-identical; only the groups are side by side,
//! which lets the compiler put the lanes in SIMD registers. Branches of the
//! scalar code become per-lane selects.

use super::search::{GROUP_MAX_EPS, Sweep, nearest_int};

/// Per lane, the value of largest magnitude (the first on ties) and that magnitude.
#[inline(always)]
fn signed_absmax<const N: usize, const L: usize>(x: &[[f32; L]; N]) -> ([f32; L], [f32; L]) {
    let mut max = [0f32; L];
    let mut amax = [0f32; L];
    for row in x {
        for k in 0..L {
            let ax = row[k].abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = row[k];
            }
        }
    }
    (max, amax)
}

/// `make_qkx2_quants` / `make_qkx3_quants` with weights, per lane. Levels
/// (`0..=nmax`) go to `levels`; returns per-lane `(scale, -min)`.
#[inline(always)]
pub fn make_qkx_lanes<const N: usize, const L: usize>(
    x: &[[f32; L]; N],
    w: &[[f32; L]; N],
    nmax: i32,
    sweep: Sweep,
    levels: &mut [[u8; L]; N],
) -> ([f32; L], [f32; L]) {
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w[0];
    let mut sum_x = [0f32; L];
    for k in 0..L {
        sum_x[k] = sum_w[k] * x[0][k];
    }
    for i in 1..N {
        for k in 0..L {
            let v = x[i][k];
            if v < min[k] {
                min[k] = v;
            }
            if v > max[k] {
                max[k] = v;
            }
            sum_w[k] += w[i][k];
            sum_x[k] += w[i][k] * v;
        }
    }
    for m in min.iter_mut() {
        if *m > 0.0 {
            *m = 0.0;
        }
    }
    let min0 = min;
    let nmax_f = nmax as f32;
    let mut iscale = [0f32; L];
    let mut scale = [0f32; L];
    for k in 0..L {
        iscale[k] = nmax_f / (max[k] - min[k]);
        scale[k] = 1.0 / iscale[k];
    }
    let mut best = [[0f32; L]; N];
    let mut best_error = [0f32; L];
    for i in 0..N {
        for k in 0..L {
            let l = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax) as f32;
            best[i][k] = l;
            let diff = scale[k] * l + min[k] - x[i][k];
            let diff = if sweep.use_mad {
                diff.abs()
            } else {
                diff * diff
            };
            best_error[k] += w[i][k] * diff;
        }
    }
    if sweep.nstep >= 1 {
        let mut aux = [[0f32; L]; N];
        for is in 0..=sweep.nstep {
            let num = sweep.rmin + sweep.rdelta * is as f32 + nmax_f;
            let mut sum_l = [0f32; L];
            let mut sum_l2 = [0f32; L];
            let mut sum_xl = [0f32; L];
            for k in 0..L {
                iscale[k] = num / (max[k] - min[k]);
            }
            for i in 0..N {
                for k in 0..L {
                    let l = nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax) as f32;
                    aux[i][k] = l;
                    let wl = w[i][k] * l;
                    sum_l[k] += wl;
                    sum_l2[k] += wl * l;
                    sum_xl[k] += wl * x[i][k];
                }
            }
            let mut this_scale = [0f32; L];
            let mut this_min = [0f32; L];
            let mut solvable = [false; L];
            for k in 0..L {
                let d = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
                solvable[k] = d > 0.0;
                let mut s = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d;
                let mut m = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d;
                if m > 0.0 {
                    m = 0.0;
                    s = sum_xl[k] / sum_l2[k];
                }
                this_scale[k] = s;
                this_min[k] = m;
            }
            let mut cur_error = [0f32; L];
            for i in 0..N {
                for k in 0..L {
                    let diff = this_scale[k] * aux[i][k] + this_min[k] - x[i][k];
                    let diff = if sweep.use_mad {
                        diff.abs()
                    } else {
                        diff * diff
                    };
                    cur_error[k] += w[i][k] * diff;
                }
            }
            let mut better = [false; L];
            for k in 0..L {
                better[k] = solvable[k] && cur_error[k] < best_error[k];
                if better[k] {
                    best_error[k] = cur_error[k];
                    scale[k] = this_scale[k];
                    min[k] = this_min[k];
                }
            }
            for i in 0..N {
                for k in 0..L {
                    best[i][k] = if better[k] { aux[i][k] } else { best[i][k] };
                }
            }
        }
    }
    let mut the_min = [0f32; L];
    for k in 0..L {
        // The scalar search returns early when max <= min (after min <= 0).
        let flat = max[k] <= min0[k];
        the_min[k] = if flat { -min0[k] } else { -min[k] };
        if flat {
            scale[k] = 0.0;
        }
        for i in 0..N {
            levels[i][k] = if flat { 0 } else { best[i][k] as u8 };
        }
    }
    (scale, the_min)
}

/// `make_qx_quants` with `rmse_type` 1, per lane: weights `qw`, else `x^2`.
/// Levels are `l + nmax`; returns the per-lane scale.
#[inline(always)]
pub fn make_qx_lanes<const N: usize, const L: usize>(
    x: &[[f32; L]; N],
    qw: Option<&[[f32; L]; N]>,
    nmax: i32,
    levels: &mut [[i8; L]; N],
) -> [f32; L] {
    let (max, amax) = signed_absmax(x);
    let mut w = [[0f32; L]; N];
    for i in 0..N {
        for k in 0..L {
            w[i][k] = match qw {
                Some(q) => q[i][k],
                None => x[i][k] * x[i][k],
            };
        }
    }
    let nmax_f = nmax as f32;
    let mut best_iscale = [0f32; L];
    let mut sumlx = [0f32; L];
    let mut suml2 = [0f32; L];
    for k in 0..L {
        best_iscale[k] = -nmax_f / max[k];
    }
    for i in 0..N {
        for k in 0..L {
            let l = nearest_int(best_iscale[k] * x[i][k]).clamp(-nmax, nmax - 1) as f32;
            let wx = w[i][k] * x[i][k];
            sumlx[k] += wx * l;
            suml2[k] += w[i][k] * l * l;
        }
    }
    let mut scale = [0f32; L];
    let mut best = [0f32; L];
    for k in 0..L {
        scale[k] = if suml2[k] != 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        };
        best[k] = scale[k] * sumlx[k];
    }
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        let num = -(nmax_f + 0.1f32 * is as f32);
        let mut iscale = [0f32; L];
        for k in 0..L {
            iscale[k] = num / max[k];
        }
        let mut slx = [0f32; L];
        let mut sl2 = [0f32; L];
        for i in 0..N {
            for k in 0..L {
                let l = nearest_int(iscale[k] * x[i][k]).clamp(-nmax, nmax - 1) as f32;
                let wx = w[i][k] * x[i][k];
                slx[k] += wx * l;
                sl2[k] += w[i][k] * l * l;
            }
        }
        for k in 0..L {
            if sl2[k] > 0.0 && slx[k] * slx[k] > best[k] * sl2[k] {
                best_iscale[k] = iscale[k];
                scale[k] = slx[k] / sl2[k];
                best[k] = scale[k] * slx[k];
            }
        }
    }
    for k in 0..L {
        let zero = amax[k] < GROUP_MAX_EPS;
        if zero {
            scale[k] = 0.0;
        }
        for i in 0..N {
            let l = nearest_int(best_iscale[k] * x[i][k]).clamp(-nmax, nmax - 1);
            levels[i][k] = if zero { 0 } else { (l + nmax) as i8 };
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse` (weights `x^2`), per lane. Levels are
/// `l + nmax`; returns the per-lane scale.
#[inline(always)]
pub fn make_q3_lanes<const N: usize, const L: usize>(
    x: &[[f32; L]; N],
    nmax: i32,
    levels: &mut [[i8; L]; N],
) -> [f32; L] {
    let (max, amax) = signed_absmax(x);
    let nmax_f = nmax as f32;
    let mut iscale = [0f32; L];
    for k in 0..L {
        iscale[k] = -nmax_f / max[k];
    }
    let mut lv = [[0f32; L]; N];
    let mut sumlx = [0f32; L];
    let mut suml2 = [0f32; L];
    for i in 0..N {
        for k in 0..L {
            let l = nearest_int(iscale[k] * x[i][k]).clamp(-nmax, nmax - 1) as f32;
            lv[i][k] = l;
            let w = x[i][k] * x[i][k];
            sumlx[k] += w * x[i][k] * l;
            suml2[k] += w * l * l;
        }
    }
    // A pass that changes nothing leaves the state as it was, so running
    // more passes on a lane that has converged does not change it.
    for _ in 0..5 {
        let mut changed = [false; L];
        for i in 0..N {
            for k in 0..L {
                let xi = x[i][k];
                let w = xi * xi;
                let li = lv[i][k];
                let slx = sumlx[k] - w * xi * li;
                let sl2 = suml2[k] - w * li * li;
                let new_l = nearest_int(xi * sl2 / slx).clamp(-nmax, nmax - 1) as f32;
                let slx2 = slx + w * xi * new_l;
                let sl22 = sl2 + w * new_l * new_l;
                let take = slx > 0.0
                    && new_l != li
                    && sl22 > 0.0
                    && slx2 * slx2 * suml2[k] > sumlx[k] * sumlx[k] * sl22;
                if take {
                    lv[i][k] = new_l;
                    sumlx[k] = slx2;
                    suml2[k] = sl22;
                    changed[k] = true;
                }
            }
        }
        if !changed.iter().any(|&c| c) {
            break;
        }
    }
    let mut scale = [0f32; L];
    for k in 0..L {
        let zero = amax[k] < GROUP_MAX_EPS;
        scale[k] = if !zero && suml2[k] > 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        };
        for i in 0..N {
            levels[i][k] = if zero {
                0
            } else {
                (lv[i][k] as i32 + nmax) as i8
            };
        }
    }
    scale
}

/// `out[i][k] = x[k * N + i]`: `L` consecutive groups of `N` side by side.
#[inline(always)]
pub fn transpose<const N: usize, const L: usize>(x: &[f32]) -> [[f32; L]; N] {
    let mut out = [[0f32; L]; N];
    for k in 0..L {
        for i in 0..N {
            out[i][k] = x[k * N + i];
        }
    }
    out
}
