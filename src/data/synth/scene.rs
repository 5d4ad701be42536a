//! Drawing of the synthetic benchmark's images: eight product classes (textures and objects)
//! and five defect kinds with pixel-exact masks.
//!
//! Everything is drawn in f32 RGB (0..255) on a `size x size` [`Canvas`] from a [`SynthRng`], so
//! one seed gives one image. Normal images vary in placement, orientation, colour, lighting and
//! sensor noise. A defect is a region (its mask, ~1-8% of the image) repainted with a strong
//! local change: a scratch, a dark hole, a colour stain, a crack (textures) or a missing part
//! (objects), or a patch of ANOTHER class's normal surface ("foreign").

use std::f32::consts::PI;

/// Class names, in the order `cras synth --classes N` takes them.
pub const CLASS_NAMES: [&str; 8] = [
    "carpet_weave",
    "grid_mesh",
    "wood_grain",
    "bolt",
    "capsule_pill",
    "ring",
    "terrazzo_tile",
    "screw_slot",
];

/// Defect kinds in the order test images cycle through them; index 3 is named per class kind.
pub const DEFECT_KINDS: usize = 5;

/// Whether class `class` is an object on a background (else a texture filling the frame).
pub fn is_object(class: usize) -> bool {
    matches!(class, 3 | 4 | 5 | 7)
}

/// Folder name of defect kind `kind` for class `class`.
pub fn defect_name(class: usize, kind: usize) -> &'static str {
    match kind {
        0 => "scratch",
        1 => "hole",
        2 => "stain",
        3 if is_object(class) => "missing_part",
        3 => "crack",
        _ => "foreign",
    }
}

/// SplitMix64: tiny, fast and stable across platforms and crate versions.
#[derive(Clone, Debug)]
pub struct SynthRng(u64);

impl SynthRng {
    /// A generator seeded from several integers (seed, class, split, ...).
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut r = SynthRng(0x9E37_79B9_7F4A_7C15);
        for &p in parts {
            r.0 ^= p;
            r.0 = r.next_u64();
        }
        r
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Approximately standard normal (sum of four uniforms from one draw, rescaled).
    pub fn approx_normal(&mut self) -> f32 {
        let b = self.next_u64();
        let s: u32 = (0..4).map(|i| ((b >> (16 * i)) & 0xFFFF) as u32).sum();
        // Sum of 4 U(0, 65536): mean 131070, sd 65536 * sqrt(4/12).
        (s as f32 - 131_070.0) / 37_837.0
    }
}

/// An image being drawn: colours, and which pixels belong to the object (all, for textures).
pub struct Canvas {
    /// Side in pixels.
    pub size: usize,
    /// Row-major RGB.
    pub rgb: Vec<[f32; 3]>,
    /// Row-major: pixel belongs to the product (objects) / always true (textures).
    pub object: Vec<bool>,
    /// Row-major background colour under the object (objects only; copy of rgb for textures).
    pub background: Vec<[f32; 3]>,
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t)
}

fn jitter(rng: &mut SynthRng, c: [f32; 3], amount: f32) -> [f32; 3] {
    let shift = rng.range(-amount, amount);
    c.map(|v| v + shift + rng.range(-amount, amount) * 0.5)
}

/// Cheap deterministic value noise in [0, 1) on an integer lattice.
fn hash2(x: i32, y: i32, salt: u64) -> f32 {
    let mut r = SynthRng::from_parts(&[x as u64, y as u64, salt]);
    r.unit()
}

/// Draws a normal image of class `class`.
pub fn render_normal(class: usize, size: usize, rng: &mut SynthRng) -> Canvas {
    let n = size * size;
    let s = size as f32;
    let theta = rng.range(0.0, 2.0 * PI);
    let (sin_t, cos_t) = theta.sin_cos();
    let salt = rng.next_u64();
    let (ox, oy) = (rng.range(0.0, s), rng.range(0.0, s));
    let mut rgb = vec![[0f32; 3]; n];
    let mut object = vec![true; n];
    let mut background = vec![[0f32; 3]; n];
    let rot = |x: f32, y: f32| (x * cos_t - y * sin_t + ox, x * sin_t + y * cos_t + oy);
    match class {
        0 => {
            // carpet_weave: over-under weave of red-brown threads with fibre noise.
            let base = jitter(rng, [155.0, 62.0, 52.0], 12.0);
            let period = s / rng.range(14.0, 18.0);
            for (i, px) in rgb.iter_mut().enumerate() {
                let (a, b) = rot((i % size) as f32, (i / size) as f32);
                let (wa, wb) = ((2.0 * PI * a / period).sin(), (2.0 * PI * b / period).sin());
                let weave = if wa * wb > 0.0 { wa.abs() } else { wb.abs() };
                let fibre = hash2((a * 0.7) as i32, (b * 2.0) as i32, salt);
                *px = base.map(|v| v * (0.55 + 0.45 * weave + 0.15 * fibre));
            }
        }
        1 => {
            // grid_mesh: dark wire grid on a pale plate.
            let plate = jitter(rng, [198.0, 200.0, 196.0], 10.0);
            let wire = jitter(rng, [62.0, 64.0, 74.0], 8.0);
            let period = s / rng.range(10.0, 13.0);
            let width = period * 0.16;
            for (i, px) in rgb.iter_mut().enumerate() {
                let (a, b) = rot((i % size) as f32, (i / size) as f32);
                let on = a.rem_euclid(period) < width || b.rem_euclid(period) < width;
                *px = if on { wire } else { plate };
            }
        }
        2 => {
            // wood_grain: warped growth rings.
            let dark = jitter(rng, [112.0, 70.0, 36.0], 10.0);
            let light = jitter(rng, [192.0, 142.0, 88.0], 10.0);
            let period = s / rng.range(9.0, 12.0);
            let (warp, phase) = (rng.range(0.5, 1.0), rng.range(0.0, 2.0 * PI));
            for (i, px) in rgb.iter_mut().enumerate() {
                let (a, b) = rot((i % size) as f32, (i / size) as f32);
                let t = a / period + warp * (2.0 * PI * b / (period * 5.0) + phase).sin();
                let ring = (0.5 + 0.5 * (2.0 * PI * t).sin()).powf(2.5);
                *px = mix(light, dark, ring);
            }
        }
        6 => {
            // terrazzo_tile: pale cement with scattered dark and ochre chips.
            let cement = jitter(rng, [214.0, 208.0, 192.0], 8.0);
            rgb.fill(cement);
            for _ in 0..rng.range(22.0, 30.0) as usize {
                let chip = if rng.unit() < 0.5 {
                    [70.0, 68.0, 66.0]
                } else {
                    [186.0, 140.0, 70.0]
                };
                let (cx, cy, r) = (
                    rng.range(0.0, s),
                    rng.range(0.0, s),
                    rng.range(0.02, 0.04) * s,
                );
                fill_disc(&mut rgb, size, cx, cy, r, jitter(rng, chip, 10.0));
            }
        }
        _ => {
            // Objects: background first, then the part.
            let bg = match class {
                3 => jitter(rng, [42.0, 46.0, 56.0], 6.0),
                4 => jitter(rng, [226.0, 226.0, 214.0], 6.0),
                5 => jitter(rng, [32.0, 44.0, 96.0], 6.0),
                _ => jitter(rng, [70.0, 96.0, 70.0], 6.0),
            };
            background.fill(bg);
            let (cx, cy) = (s * rng.range(0.42, 0.58), s * rng.range(0.42, 0.58));
            let metal = jitter(rng, [172.0, 172.0, 178.0], 10.0);
            let (cap_a, cap_b) = (
                jitter(rng, [232.0, 138.0, 40.0], 10.0),
                [238.0, 238.0, 232.0],
            );
            let gold = jitter(rng, [214.0, 172.0, 62.0], 10.0);
            let (r_out, half_len) = (s * rng.range(0.2, 0.24), s * rng.range(0.14, 0.18));
            for i in 0..n {
                let (x, y) = ((i % size) as f32 - cx, (i / size) as f32 - cy);
                let (u, v) = (x * cos_t - y * sin_t, x * sin_t + y * cos_t);
                let r = (x * x + y * y).sqrt();
                let shade = 0.8 + 0.25 * (u - v) / (2.0 * r_out).max(1.0);
                let part = match class {
                    3 => {
                        // bolt: hexagonal head with a round washer face.
                        let ang = v.atan2(u).rem_euclid(PI / 3.0) - PI / 6.0;
                        let hex = r * ang.cos() < r_out * 0.87;
                        let face = r < r_out * 0.55;
                        hex.then(|| metal.map(|m| m * if face { shade * 1.1 } else { shade }))
                    }
                    4 => {
                        // capsule_pill: a two-coloured stadium.
                        let du = (u.abs() - half_len).max(0.0);
                        let inside = du * du + v * v < (r_out * 0.55).powi(2);
                        inside.then(|| (if u < 0.0 { cap_a } else { cap_b }).map(|c| c * shade))
                    }
                    5 => {
                        // ring: a gold annulus with an angular highlight.
                        let inside = r < r_out * 1.25 && r > r_out * 0.7;
                        let glint = 0.85 + 0.25 * (2.0 * v.atan2(u) + theta).cos();
                        inside.then(|| gold.map(|g| g * glint))
                    }
                    _ => {
                        // screw_slot: a round head with a cross slot.
                        let slot =
                            (u.abs() < r_out * 0.12 || v.abs() < r_out * 0.12) && r < r_out * 0.75;
                        (r < r_out).then(|| {
                            if slot {
                                [40.0, 40.0, 44.0]
                            } else {
                                metal.map(|m| m * shade)
                            }
                        })
                    }
                };
                object[i] = part.is_some();
                rgb[i] = part.unwrap_or(bg);
            }
        }
    }
    if !is_object(class) {
        background.clone_from(&rgb);
    }
    Canvas {
        size,
        rgb,
        object,
        background,
    }
}

fn fill_disc(rgb: &mut [[f32; 3]], size: usize, cx: f32, cy: f32, r: f32, c: [f32; 3]) {
    for_bbox(size, cx, cy, r, |i, x, y| {
        if (x - cx).powi(2) + (y - cy).powi(2) < r * r {
            rgb[i] = c;
        }
    });
}

/// Calls `f(index, x, y)` for every pixel centre within `r` of (cx, cy) in x and y.
fn for_bbox(size: usize, cx: f32, cy: f32, r: f32, mut f: impl FnMut(usize, f32, f32)) {
    let lo = |c: f32| (c - r - 1.0).max(0.0) as usize;
    let hi = |c: f32| ((c + r + 2.0).max(0.0) as usize).min(size);
    for y in lo(cy)..hi(cy) {
        for x in lo(cx)..hi(cx) {
            f(y * size + x, x as f32, y as f32);
        }
    }
}

/// An irregular blob of mean radius `r` around (cx, cy).
fn blob(size: usize, cx: f32, cy: f32, r: f32, rng: &mut SynthRng) -> Vec<bool> {
    let (a1, a2) = (rng.range(0.0, 0.2), rng.range(0.0, 0.15));
    let (p1, p2) = (rng.range(0.0, 2.0 * PI), rng.range(0.0, 2.0 * PI));
    let mut m = vec![false; size * size];
    for_bbox(size, cx, cy, r * 1.4, |i, x, y| {
        let (dx, dy) = (x - cx, y - cy);
        let t = dy.atan2(dx);
        let edge = r * (1.0 + a1 * (2.0 * t + p1).sin() + a2 * (3.0 * t + p2).sin());
        m[i] = dx * dx + dy * dy < edge * edge;
    });
    m
}

/// A polyline of `width` pixels through `points`.
fn stroke(size: usize, points: &[(f32, f32)], width: f32) -> Vec<bool> {
    let mut m = vec![false; size * size];
    let half = width / 2.0;
    for seg in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
        let (mx, my) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0);
        let reach = ((x1 - x0).hypot(y1 - y0)) / 2.0 + half;
        let len2 = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).max(1e-6);
        for_bbox(size, mx, my, reach, |i, x, y| {
            let t = (((x - x0) * (x1 - x0) + (y - y0) * (y1 - y0)) / len2).clamp(0.0, 1.0);
            let (px, py) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            if (x - px).hypot(y - py) <= half {
                m[i] = true;
            }
        });
    }
    m
}

/// A random walk of `steps` segments of `step` pixels from (x, y), turning by up to `wiggle`.
fn walk(
    rng: &mut SynthRng,
    mut x: f32,
    mut y: f32,
    steps: usize,
    step: f32,
    wiggle: f32,
) -> Vec<(f32, f32)> {
    let mut dir = rng.range(0.0, 2.0 * PI);
    let mut pts = vec![(x, y)];
    for _ in 0..steps {
        dir += rng.range(-wiggle, wiggle);
        x += step * dir.cos();
        y += step * dir.sin();
        pts.push((x, y));
    }
    pts
}

/// A point on the product (objects) or away from the borders (textures).
fn defect_center(c: &Canvas, rng: &mut SynthRng) -> (f32, f32) {
    let s = c.size as f32;
    for _ in 0..200 {
        let (x, y) = (rng.range(0.2, 0.8) * s, rng.range(0.2, 0.8) * s);
        if c.object[(y as usize) * c.size + x as usize] {
            return (x, y);
        }
    }
    (s / 2.0, s / 2.0)
}

/// Paints defect `kind` on `c` (class `class`) and returns its mask. `foreign_class` supplies
/// the pasted surface for the foreign kind. With `extent_px = Some((lo, hi))` the defect spans
/// lo..hi pixels whatever the image size (small defects on large images); otherwise its size is
/// a share of the image side.
pub fn add_defect(
    c: &mut Canvas,
    class: usize,
    kind: usize,
    foreign: Option<&Canvas>,
    extent_px: Option<(f32, f32)>,
    rng: &mut SynthRng,
) -> Vec<bool> {
    let (cx, cy) = defect_center(c, rng);
    if let Some((lo, hi)) = extent_px {
        let extent = rng.range(lo, hi);
        let mask = small_defect_mask(c, class, kind, (cx, cy), extent, rng);
        paint_defect(c, class, kind, foreign, &mask, rng);
        return mask;
    }
    let s = c.size as f32;
    let mask = match kind {
        0 => {
            let step = s * rng.range(0.06, 0.08);
            let pts = walk(rng, cx, cy, 6, step, 0.25);
            stroke(c.size, &pts, s * rng.range(0.018, 0.026))
        }
        1 | 2 | 4 => blob(c.size, cx, cy, s * rng.range(0.07, 0.12), rng),
        _ if is_object(class) => {
            let region = blob(c.size, cx, cy, s * rng.range(0.1, 0.13), rng);
            region
                .iter()
                .zip(&c.object)
                .map(|(&r, &o)| r && o)
                .collect()
        }
        _ => {
            let step = s * rng.range(0.05, 0.065);
            let pts = walk(rng, cx, cy, 10, step, 0.9);
            stroke(c.size, &pts, s * rng.range(0.016, 0.022))
        }
    };
    paint_defect(c, class, kind, foreign, &mask, rng);
    mask
}

/// The mask of a defect spanning about `extent` pixels around `(cx, cy)`: strokes (scratch,
/// crack) `extent` long and a sixth of it wide (at least 2 px), blobs `extent` across.
fn small_defect_mask(
    c: &Canvas,
    class: usize,
    kind: usize,
    (cx, cy): (f32, f32),
    extent: f32,
    rng: &mut SynthRng,
) -> Vec<bool> {
    let width = (extent / 6.0).max(2.0);
    match kind {
        0 => stroke(c.size, &walk(rng, cx, cy, 6, extent / 6.0, 0.25), width),
        3 if !is_object(class) => stroke(c.size, &walk(rng, cx, cy, 10, extent / 10.0, 0.9), width),
        3 => blob(c.size, cx, cy, extent / 2.0, rng)
            .iter()
            .zip(&c.object)
            .map(|(&r, &o)| r && o)
            .collect(),
        _ => blob(c.size, cx, cy, extent / 2.0, rng),
    }
}

/// Repaints the pixels of `mask` as defect `kind`.
fn paint_defect(
    c: &mut Canvas,
    class: usize,
    kind: usize,
    foreign: Option<&Canvas>,
    mask: &[bool],
    rng: &mut SynthRng,
) {
    let mean_lum: f32 = c
        .rgb
        .iter()
        .map(|p| p.iter().sum::<f32>() / 3.0)
        .sum::<f32>()
        / c.rgb.len() as f32;
    let scratch = if mean_lum > 128.0 {
        [22.0, 20.0, 24.0]
    } else {
        [245.0, 245.0, 238.0]
    };
    let stains = [
        [40.0, 200.0, 60.0],
        [205.0, 40.0, 200.0],
        [40.0, 185.0, 235.0],
        [240.0, 225.0, 30.0],
    ];
    let stain = stains[rng.below(stains.len())];
    for i in (0..mask.len()).filter(|&i| mask[i]) {
        let texture = hash2(
            (i % c.size) as i32 / 2,
            (i / c.size) as i32 / 2,
            kind as u64,
        ) * 20.0
            - 10.0;
        c.rgb[i] = match kind {
            0 => scratch.map(|v| v + texture),
            1 => [14.0, 11.0, 9.0].map(|v| v + texture.abs()),
            2 => mix(c.rgb[i], stain, 0.8),
            3 if is_object(class) => c.background[i],
            3 => [28.0, 22.0, 18.0].map(|v| v + texture.abs()),
            _ => foreign.map_or([255.0, 0.0, 255.0], |f| f.rgb[i]),
        };
    }
}

/// Lighting (gain and gradient) and sensor noise, then rounding to 8-bit RGB.
pub fn finish(c: &Canvas, rng: &mut SynthRng) -> Vec<u8> {
    let s = c.size as f32;
    let gain = rng.range(0.88, 1.12);
    let (gx, gy) = (rng.range(-0.12, 0.12), rng.range(-0.12, 0.12));
    let sigma = rng.range(2.0, 4.0);
    let mut out = Vec::with_capacity(c.rgb.len() * 3);
    for (i, px) in c.rgb.iter().enumerate() {
        let (u, v) = ((i % c.size) as f32 / s - 0.5, (i / c.size) as f32 / s - 0.5);
        let light = gain * (1.0 + gx * u + gy * v);
        for &ch in px {
            let value = ch * light + sigma * rng.approx_normal();
            out.push(value.round().clamp(0.0, 255.0) as u8);
        }
    }
    out
}
