"""Pictures of meshes and point sets from one fixed 3/4 view: a small numpy z-buffer rasteriser.

The camera is orthographic and looks at the origin from azimuth AZIMUTH (turned from the front, +z,
towards +x) and elevation ELEVATION (y is up), so a shape's front, right side and top show. The
[-1, 1]³ cube always fills the picture the same way, whatever is drawn, so the panels of a figure
share one scale and one view; its twelve edges are drawn as thin grey lines for reference.

Triangles are rasterised with barycentric weights at pixel centres (every triangle at once, in
groups of similar size), the nearest fragment of each pixel wins, and the picture is drawn at
SUPERSAMPLE times the size and averaged down (smooth edges). Shading is Lambert with one light
from the upper left of the camera plus ambient, per pixel, from area-weighted vertex normals
interpolated across each triangle; it is two-sided, so an open mesh's inner side is lit too and
the winding does not matter. Points are shaded discs. Nothing beyond numpy.
"""
from __future__ import annotations

import math

import numpy as np

AZIMUTH = 35.0     # degrees from +z (the front) towards +x
ELEVATION = 25.0   # degrees above the horizontal plane
SUPERSAMPLE = 2
AMBIENT = 0.3
MESH_COLOR = (0.72, 0.76, 0.84)
BACKGROUND = (1.0, 1.0, 1.0)
EDGE_COLOR = (0.8, 0.8, 0.8)
INSIDE_COLOR = np.array([0.12, 0.32, 0.95])   # points with sdf < 0
OUTSIDE_COLOR = np.array([0.92, 0.2, 0.12])   # points with sdf > 0
PALE = np.array([0.86, 0.86, 0.86])


def camera(azimuth: float = AZIMUTH, elevation: float = ELEVATION) -> np.ndarray:
    """[3, 3] rows: right, up and towards-the-camera unit vectors in the position frame (x, y, z)."""
    a, e = math.radians(azimuth), math.radians(elevation)
    back = np.array([math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e)])
    right = np.cross([0.0, 1.0, 0.0], back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back])


class Canvas:
    """A square picture of the [-1, 1]³ cube seen by `camera()`: fragments are collected, then resolved
    by depth (smaller = nearer) in picture()."""

    def __init__(self, size: int, azimuth: float = AZIMUTH, elevation: float = ELEVATION, margin: float = 0.04):
        self.size = int(size)
        self.ss = SUPERSAMPLE if self.size <= 512 else 1
        self.n = self.size * self.ss
        self.cam = camera(azimuth, elevation)
        corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float64)
        sx, sy = corners @ self.cam[0], corners @ self.cam[1]
        self.centre = np.array([(sx.max() + sx.min()) / 2, (sy.max() + sy.min()) / 2])
        self.scale = self.n * (1 - 2 * margin) / max(np.ptp(sx), np.ptp(sy))
        self.light = self.cam.T @ np.array([-0.35, 0.6, 0.72])  # upper left, in front
        self.light /= np.linalg.norm(self.light)
        self.frags: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (pixel, depth, rgb)

    def project(self, p: np.ndarray) -> np.ndarray:
        """[N, 3] positions -> [N, 3] (column, row, depth) in supersampled pixels."""
        p = np.asarray(p, np.float64)
        col = (p @ self.cam[0] - self.centre[0]) * self.scale + self.n / 2
        row = self.n / 2 - (p @ self.cam[1] - self.centre[1]) * self.scale
        return np.stack([col, row, -(p @ self.cam[2])], 1)

    def _add(self, col: np.ndarray, row: np.ndarray, depth: np.ndarray, rgb: np.ndarray) -> None:
        ok = (col >= 0) & (col < self.n) & (row >= 0) & (row < self.n)
        self.frags.append((row[ok] * self.n + col[ok], depth[ok], rgb[ok]))

    def mesh(self, vertices: np.ndarray, faces: np.ndarray, colors=None, chunk: int = 1 << 19) -> None:
        """Triangles, shaded; colors: one RGB for all, or [V, 3] per vertex (interpolated)."""
        v = np.asarray(vertices, np.float64)
        f = np.asarray(faces, np.int64)
        if not len(f):
            return
        col = np.broadcast_to(np.asarray(MESH_COLOR if colors is None else colors, np.float64), v.shape)
        normals = vertex_normals(v, f)
        scr = self.project(v)
        tri = scr[f]                                           # [F, 3 corners, (col, row, depth)]
        lo = np.floor(tri[:, :, :2].min(1) - 0.5).astype(np.int64)
        hi = np.ceil(tri[:, :, :2].max(1) - 0.5).astype(np.int64)
        span = np.maximum(hi - lo + 1, 1).max(1)
        bucket = np.ceil(np.log2(span)).astype(int)            # triangles of similar size share an offset grid
        for b in np.unique(bucket):
            s = 1 << int(b)
            oy, ox = np.divmod(np.arange(s * s), s)
            ids = np.flatnonzero(bucket == b)
            for part in np.array_split(ids, max(1, len(ids) * s * s // chunk + 1)):
                self._triangles(tri[part], f[part], lo[part], ox, oy, normals, col)

    def _triangles(self, tri, f, lo, ox, oy, normals, col) -> None:
        cx = lo[:, :1] + ox[None] + 0.5                        # [T, s*s] pixel centres
        cy = lo[:, 1:] + oy[None] + 0.5
        (ax, ay), (bx, by), (qx, qy) = [(tri[:, i, 0:1], tri[:, i, 1:2]) for i in range(3)]
        area = (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
        area = np.where(np.abs(area) < 1e-12, np.nan, area)    # edge-on triangles draw nothing
        w0 = ((bx - cx) * (qy - cy) - (by - cy) * (qx - cx)) / area
        w1 = ((qx - cx) * (ay - cy) - (qy - cy) * (ax - cx)) / area
        w2 = 1 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        t, k = np.nonzero(inside)
        w = np.stack([w0[t, k], w1[t, k], w2[t, k]], 1)[:, :, None]   # [P, 3, 1]
        depth = (w[:, :, 0] * tri[t, :, 2]).sum(1)
        n = (w * normals[f[t]]).sum(1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        shade = AMBIENT + (1 - AMBIENT) * np.abs(n @ self.light)
        rgb = (w * col[f[t]]).sum(1) * shade[:, None]
        self._add(cx[t, k].astype(np.int64), cy[t, k].astype(np.int64), depth, rgb)

    def points(self, positions: np.ndarray, colors: np.ndarray, radius: float = 2.5) -> None:
        """Discs of `radius` picture pixels, shaded like balls; colors [N, 3]."""
        p = self.project(positions)
        r = radius * self.ss
        k = int(math.ceil(r))
        oy, ox = [a.ravel() for a in np.mgrid[-k:k + 1, -k:k + 1]]
        d2 = (ox ** 2 + oy ** 2) / r ** 2
        keep = d2 <= 1
        ox, oy, bulge = ox[keep], oy[keep], np.sqrt(1 - d2[keep])
        col = np.floor(p[:, :1]).astype(np.int64) + ox
        row = np.floor(p[:, 1:2]).astype(np.int64) + oy
        depth = p[:, 2:3] - bulge * r / self.scale
        rgb = np.asarray(colors, np.float64)[:, None] * (0.55 + 0.45 * bulge)[None, :, None]
        self._add(col.ravel(), row.ravel(), depth.ravel(), rgb.reshape(-1, 3))

    def cube(self, color=EDGE_COLOR) -> None:
        """The twelve edges of [-1, 1]³, one picture pixel wide, hidden behind nearer surfaces."""
        t = np.linspace(-1, 1, 4 * self.n)
        edges = []
        for axis in range(3):
            for a in (-1, 1):
                for b in (-1, 1):
                    e = np.empty((len(t), 3))
                    e[:, axis] = t
                    e[:, [i for i in range(3) if i != axis]] = [a, b]
                    edges.append(e)
        p = self.project(np.concatenate(edges))
        c, r = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
        wide = [(c + dc, r + dr) for dc in range(self.ss) for dr in range(self.ss)]
        self._add(np.concatenate([w[0] for w in wide]), np.concatenate([w[1] for w in wide]),
                  np.tile(p[:, 2], len(wide)), np.tile(np.asarray(color, np.float64), (len(p) * len(wide), 1)))

    def picture(self) -> np.ndarray:
        """The picture [size, size, 3] float32 in [0, 1]: the nearest fragment of each pixel, averaged down."""
        out = np.tile(np.asarray(BACKGROUND, np.float64), (self.n * self.n, 1))
        if self.frags:
            pix = np.concatenate([f[0] for f in self.frags])
            depth = np.concatenate([f[1] for f in self.frags])
            rgb = np.concatenate([f[2] for f in self.frags])
            order = np.lexsort((depth, pix))
            first = np.r_[True, pix[order][1:] != pix[order][:-1]]
            win = order[first]
            out[pix[win]] = rgb[win]
        img = out.reshape(self.size, self.ss, self.size, self.ss, 3).mean((1, 3))
        return np.clip(img, 0, 1).astype(np.float32)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] unit normals: the area-weighted sum of the normals of the faces around each vertex."""
    v = np.asarray(vertices, np.float64)
    fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])  # length = 2 * area
    n = np.zeros_like(v)
    for i in range(3):
        np.add.at(n, faces[:, i], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def sdf_colors(values: np.ndarray, truncation: float) -> np.ndarray:
    """[N, 3] colours of SDF values: blue inside (< 0), red outside, paler the farther from the surface."""
    t = np.clip(np.asarray(values, np.float64).reshape(-1) / max(truncation, 1e-12), -1, 1)
    base = np.where(t[:, None] < 0, INSIDE_COLOR, OUTSIDE_COLOR)
    a = 0.75 * np.abs(t)[:, None]
    return base * (1 - a) + PALE * a


def render(size: int, vertices=None, faces=None, vertex_colors=None, points=None, point_colors=None,
           frame: bool = True) -> np.ndarray:
    """One panel [size, size, 3] in [0, 1]: a mesh and/or points in the fixed 3/4 view, the cube's edges."""
    canvas = Canvas(size)
    if frame:
        canvas.cube()
    if vertices is not None and faces is not None:
        canvas.mesh(vertices, faces, vertex_colors)
    if points is not None and len(points):
        canvas.points(points, point_colors if point_colors is not None else np.zeros((len(points), 3)),
                      radius=max(2.0, size / 64))
    return canvas.picture()
