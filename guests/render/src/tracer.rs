//! The demo scene and a Whitted-style ray tracer that renders any tile of it.
//!
//! Every pixel depends only on its own coordinates and the full image size, never on the tile it
//! belongs to, so tiles rendered anywhere stitch into exactly the image a single run would give.
//! Only `+ - * /`, `sqrt` and `floor` are used: IEEE 754 defines them exactly, so the bytes are
//! the same natively and in WebAssembly on any CPU (no libm, whose results vary by platform).

use crate::vec3::Vec3;

/// Offset along the normal before tracing secondary rays, so a surface does not shadow itself.
const EPS: f64 = 1e-6;
/// Reflection bounces after the primary hit.
const MAX_DEPTH: u32 = 3;
/// Half the vertical field of view as a tangent (about 48 degrees in total), fixed so no
/// trigonometry is needed.
const HALF_HEIGHT: f64 = 0.45;
/// Distance at which the ground is half faded into the horizon, to hide checker aliasing.
const FOG_DISTANCE: f64 = 40.0;

const HORIZON: Vec3 = Vec3::new(0.86, 0.90, 0.97);
const ZENITH: Vec3 = Vec3::new(0.22, 0.42, 0.82);

/// The part of the full image to render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Full image size; the camera is defined for this, not for the tile.
    pub width: u32,
    pub height: u32,
    pub x0: u32,
    pub y0: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    /// Samples per pixel along each axis (so `grid * grid` in total).
    pub grid: u32,
}

#[derive(Clone, Copy, Debug)]
enum Paint {
    Solid(Vec3),
    Checker(Vec3, Vec3),
}

#[derive(Clone, Copy, Debug)]
struct Material {
    paint: Paint,
    diffuse: f64,
    specular: f64,
    /// The highlight exponent is `2^shine_squarings`, computed by repeated squaring (no `powf`).
    shine_squarings: u32,
    reflect: f64,
}

#[derive(Clone, Copy, Debug)]
struct Sphere {
    center: Vec3,
    radius: f64,
    material: Material,
}

#[derive(Clone, Copy, Debug)]
struct Light {
    position: Vec3,
    color: Vec3,
}

#[derive(Clone, Copy, Debug)]
struct Hit {
    t: f64,
    normal: Vec3,
    material: Material,
}

struct Scene {
    spheres: Vec<Sphere>,
    ground: Material,
    lights: [Light; 2],
    ambient: f64,
}

fn solid(r: f64, g: f64, b: f64, reflect: f64) -> Material {
    Material {
        paint: Paint::Solid(Vec3::new(r, g, b)),
        diffuse: 1.0 - reflect * 0.8,
        specular: 0.6,
        shine_squarings: 5,
        reflect,
    }
}

impl Scene {
    fn demo() -> Scene {
        let mut spheres = vec![
            // A mirror ball in the middle, flanked by a matte and a glossy ball.
            Sphere {
                center: Vec3::new(0.0, 1.2, 0.0),
                radius: 1.2,
                material: solid(0.9, 0.9, 0.92, 0.85),
            },
            Sphere {
                center: Vec3::new(-2.6, 0.8, -0.4),
                radius: 0.8,
                material: solid(0.85, 0.18, 0.14, 0.0),
            },
            Sphere {
                center: Vec3::new(2.5, 0.9, 0.3),
                radius: 0.9,
                material: solid(0.15, 0.35, 0.85, 0.35),
            },
            Sphere {
                center: Vec3::new(1.1, 0.4, -1.9),
                radius: 0.4,
                material: solid(0.95, 0.75, 0.2, 0.5),
            },
        ];
        // A field of marbles behind the big balls: it makes the picture busy enough to see the
        // tiles arrive and gives each tile a few tens of milliseconds of honest work.
        let palette = [
            (0.9, 0.3, 0.3),
            (0.3, 0.8, 0.4),
            (0.3, 0.5, 0.9),
            (0.9, 0.8, 0.3),
            (0.8, 0.4, 0.9),
            (0.3, 0.85, 0.85),
        ];
        for row in 0..MARBLE_ROWS {
            for col in 0..MARBLE_COLS {
                let i = row * MARBLE_COLS + col;
                let (r, g, b) = palette[(i % 6) as usize];
                let stagger = if row.is_multiple_of(2) { 0.0 } else { 0.45 };
                let radius = 0.22 + 0.04 * f64::from(i % 3);
                spheres.push(Sphere {
                    center: Vec3::new(
                        -8.5 + 0.85 * f64::from(col) + stagger,
                        radius,
                        2.2 + 1.0 * f64::from(row),
                    ),
                    radius,
                    material: solid(r, g, b, if i.is_multiple_of(4) { 0.6 } else { 0.1 }),
                });
            }
        }
        Scene {
            spheres,
            ground: Material {
                paint: Paint::Checker(Vec3::new(0.92, 0.92, 0.88), Vec3::new(0.18, 0.2, 0.24)),
                diffuse: 0.85,
                specular: 0.0,
                shine_squarings: 0,
                reflect: 0.15,
            },
            lights: [
                Light {
                    position: Vec3::new(-6.0, 9.0, -7.0),
                    color: Vec3::new(0.85, 0.8, 0.72),
                },
                Light {
                    position: Vec3::new(7.0, 5.0, -3.0),
                    color: Vec3::new(0.3, 0.34, 0.45),
                },
            ],
            ambient: 0.12,
        }
    }

    /// Nearest intersection in front of `origin` along the unit vector `dir`.
    fn hit(&self, origin: Vec3, dir: Vec3) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        for s in &self.spheres {
            if let Some(t) = sphere_t(s, origin, dir)
                && best.is_none_or(|b| t < b.t)
            {
                let p = origin + dir * t;
                best = Some(Hit {
                    t,
                    normal: (p - s.center) * (1.0 / s.radius),
                    material: s.material,
                });
            }
        }
        if let Some(t) = ground_t(origin, dir)
            && best.is_none_or(|b| t < b.t)
        {
            best = Some(Hit {
                t,
                normal: Vec3::new(0.0, 1.0, 0.0),
                material: self.ground,
            });
        }
        best
    }

    /// Whether anything lies between `origin` and a light `dist` away along `dir`.
    fn occluded(&self, origin: Vec3, dir: Vec3, dist: f64) -> bool {
        self.spheres
            .iter()
            .any(|s| sphere_t(s, origin, dir).is_some_and(|t| t < dist))
            || ground_t(origin, dir).is_some_and(|t| t < dist)
    }

    fn trace(&self, origin: Vec3, dir: Vec3, depth: u32) -> Vec3 {
        let Some(hit) = self.hit(origin, dir) else {
            return sky(dir);
        };
        let p = origin + dir * hit.t;
        let n = hit.normal;
        let m = hit.material;
        let base = match m.paint {
            Paint::Solid(c) => c,
            Paint::Checker(a, b) => {
                // Ordinary `as` saturates, so even absurdly far points pick a square.
                let parity = (p.x.floor() as i64).wrapping_add(p.z.floor() as i64) & 1;
                if parity == 0 { a } else { b }
            }
        };
        let lift = p + n * EPS;
        let mut color = base * self.ambient;
        for light in &self.lights {
            let to_light = light.position - p;
            let dist = to_light.length();
            let l = to_light * (1.0 / dist);
            let lambert = n.dot(l);
            if lambert <= 0.0 || self.occluded(lift, l, dist) {
                continue;
            }
            color = color + base.mul_elem(light.color) * (lambert * m.diffuse);
            if m.specular > 0.0 {
                let half = (l - dir).normalized();
                let mut s = n.dot(half);
                if s > 0.0 {
                    for _ in 0..m.shine_squarings {
                        s *= s;
                    }
                    color = color + light.color * (m.specular * s);
                }
            }
        }
        if m.reflect > 0.0 && depth < MAX_DEPTH {
            let bounced = self.trace(lift, dir.reflect(n), depth + 1);
            color = color.lerp(bounced, m.reflect);
        }
        let d2 = hit.t * hit.t;
        color.lerp(HORIZON, d2 / (d2 + FOG_DISTANCE * FOG_DISTANCE))
    }
}

/// Rows and columns of the marble field.
const MARBLE_ROWS: u32 = 14;
const MARBLE_COLS: u32 = 21;

fn sphere_t(s: &Sphere, origin: Vec3, dir: Vec3) -> Option<f64> {
    let oc = origin - s.center;
    let b = oc.dot(dir);
    let c = oc.dot(oc) - s.radius * s.radius;
    let disc = b * b - c;
    if disc < 0.0 {
        return None;
    }
    let root = disc.sqrt();
    let near = -b - root;
    if near > EPS {
        return Some(near);
    }
    let far = -b + root;
    (far > EPS).then_some(far)
}

/// The ground is the plane y = 0, seen only from above.
fn ground_t(origin: Vec3, dir: Vec3) -> Option<f64> {
    if dir.y >= -1e-12 {
        return None;
    }
    let t = -origin.y / dir.y;
    (t > EPS).then_some(t)
}

fn sky(dir: Vec3) -> Vec3 {
    let up = if dir.y > 0.0 { dir.y } else { 0.0 };
    HORIZON.lerp(ZENITH, up)
}

struct Camera {
    eye: Vec3,
    forward: Vec3,
    right: Vec3,
    up: Vec3,
    width: f64,
    height: f64,
    aspect: f64,
}

impl Camera {
    fn new(width: u32, height: u32) -> Camera {
        let eye = Vec3::new(0.0, 2.4, -8.0);
        let target = Vec3::new(0.0, 0.4, 2.0);
        let forward = (target - eye).normalized();
        let right = Vec3::new(0.0, 1.0, 0.0).cross(forward).normalized();
        let up = forward.cross(right);
        Camera {
            eye,
            forward,
            right,
            up,
            width: f64::from(width),
            height: f64::from(height),
            aspect: f64::from(width) / f64::from(height),
        }
    }

    /// Primary ray through the point (`fx`, `fy`) of the full image, in pixels from its top left.
    fn ray(&self, fx: f64, fy: f64) -> Vec3 {
        let sx = (2.0 * fx / self.width - 1.0) * self.aspect * HALF_HEIGHT;
        let sy = (1.0 - 2.0 * fy / self.height) * HALF_HEIGHT;
        (self.forward + self.right * sx + self.up * sy).normalized()
    }
}

/// Linear light in [0, 1] to an 8-bit value with gamma 2 (a square root, exact in IEEE 754).
fn encode(c: f64) -> u8 {
    // Written so that NaN falls through to 0 instead of poisoning the cast.
    let c = if c >= 1.0 {
        1.0
    } else if c > 0.0 {
        c
    } else {
        0.0
    };
    (c.sqrt() * 255.0 + 0.5) as u8
}

/// Renders `view` and returns its pixels as packed RGB bytes, rows top to bottom.
///
/// The caller checks that the tile lies inside the image and that its byte size fits `usize`.
pub fn render_tile(view: &View) -> Vec<u8> {
    let scene = Scene::demo();
    let camera = Camera::new(view.width, view.height);
    let bytes = u64::from(view.tile_width) * u64::from(view.tile_height) * 3;
    let mut out = Vec::with_capacity(usize::try_from(bytes).unwrap_or(0));
    let grid = view.grid.max(1);
    let step = 1.0 / f64::from(grid);
    let weight = 1.0 / f64::from(grid * grid);
    for py in view.y0..view.y0 + view.tile_height {
        for px in view.x0..view.x0 + view.tile_width {
            let mut sum = Vec3::ZERO;
            for sy in 0..grid {
                for sx in 0..grid {
                    let fx = f64::from(px) + (f64::from(sx) + 0.5) * step;
                    let fy = f64::from(py) + (f64::from(sy) + 0.5) * step;
                    sum = sum + scene.trace(camera.eye, camera.ray(fx, fy), 0);
                }
            }
            let c = sum * weight;
            out.extend_from_slice(&[encode(c.x), encode(c.y), encode(c.z)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(width: u32, height: u32, grid: u32) -> View {
        View {
            width,
            height,
            x0: 0,
            y0: 0,
            tile_width: width,
            tile_height: height,
            grid,
        }
    }

    #[test]
    fn tiles_stitch_into_the_full_image() {
        let (w, h) = (24u32, 14u32);
        let whole = render_tile(&full(w, h, 2));
        // Uneven tile sizes on purpose, so edges fall at odd places.
        let xs = [(0u32, 7u32), (7, 10), (17, 7)];
        let ys = [(0u32, 5u32), (5, 9)];
        let mut stitched = vec![0u8; whole.len()];
        for &(y0, th) in &ys {
            for &(x0, tw) in &xs {
                let tile = render_tile(&View {
                    width: w,
                    height: h,
                    x0,
                    y0,
                    tile_width: tw,
                    tile_height: th,
                    grid: 2,
                });
                assert_eq!(tile.len() as u64, u64::from(tw) * u64::from(th) * 3);
                for row in 0..th {
                    let src = (row * tw * 3) as usize;
                    let dst = (((y0 + row) * w + x0) * 3) as usize;
                    let len = (tw * 3) as usize;
                    stitched[dst..dst + len].copy_from_slice(&tile[src..src + len]);
                }
            }
        }
        assert!(stitched == whole, "tiles differ from the full render");
    }

    #[test]
    fn rendering_is_repeatable_and_not_blank() {
        let a = render_tile(&full(16, 9, 1));
        let b = render_tile(&full(16, 9, 1));
        assert_eq!(a, b);
        let first = &a[..3];
        assert!(
            a.chunks(3).any(|px| px != first),
            "image is a single colour"
        );
    }

    #[test]
    fn known_answer_for_a_small_image() {
        // FNV-1a of a 32x18 render: catches any change to the scene or the arithmetic, and is
        // the value the wasm build must reproduce bit for bit.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in &render_tile(&full(32, 18, 2)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(hash, KNOWN_HASH, "got {hash:#018x}");
    }

    const KNOWN_HASH: u64 = 0xde3d_9aba_1ee2_a444;

    #[test]
    fn encode_clamps_and_applies_gamma() {
        assert_eq!(encode(-1.0), 0);
        assert_eq!(encode(f64::NAN), 0);
        assert_eq!(encode(2.0), 255);
        assert_eq!(encode(0.25), 128);
    }
}
