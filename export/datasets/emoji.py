"""The RGB emoji data set: `python -m export.datasets emoji --out DIR [--size 32]`.

Packs the 64×64 RGBA emoji of two npm packages (Google's Noto emoji, Apache-2.0; Twitter's
Twemoji, CC-BY 4.0), composites them on white, area-downsamples them to size×size and writes
PNGs into DIR/train and DIR/test (a fixed 10% by a hash of the file name), with DIR/LICENSES.md
and DIR/manifest.json. The result is read by `--data folder:DIR/train`.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from export.errors import DataError, UsageError, reports_errors
from pt_plugin.errors import InputError
from pt_plugin.images import read_image, write_png

VERSION = "16.0.0"
# vendor -> (npm package, licence of its images, attribution)
PACKAGES = {
    "google": ("emoji-datasource-google", "Apache-2.0",
               "Noto Emoji images © Google LLC, Apache License 2.0 (https://github.com/googlefonts/noto-emoji)"),
    "twitter": ("emoji-datasource-twitter", "CC-BY-4.0",
                "Twemoji graphics © Twitter, Inc. and other contributors, CC-BY 4.0 "
                "(https://github.com/jdecked/twemoji, graphics licence LICENSE-GRAPHICS)"),
}
SKIN_TONES = {"1f3fb", "1f3fc", "1f3fd", "1f3fe", "1f3ff"}  # Fitzpatrick modifiers in the file names
SPLIT_RULE = ("test if int(sha256(file name without vendor prefix and skin-tone code points 1f3fb-1f3ff)"
              ".hexdigest(), 16) % 10 == 0, else train")
TEST_SHARE = 10  # one in TEST_SHARE emoji goes to the test split


def split_key(name: str) -> str:
    """The file name without skin-tone modifiers: '1f44b-1f3fb.png' -> '1f44b.png'."""
    stem, dot, ext = name.rpartition(".")
    return "-".join(c for c in stem.split("-") if c.lower() not in SKIN_TONES) + dot + ext


def sibling_groups(names: list[str]) -> np.ndarray:
    """Per image file name: the emoji it shows, one key for both vendors and every skin tone (split_key of
    `vendor_name.png`); any other name is a group of its own. Images of one group are siblings: an evaluation
    that tunes on some images keeps their siblings out of what it tunes against."""
    keys = []
    for name in names:
        vendor, _, rest = name.partition("_")
        keys.append(split_key(rest) if vendor in PACKAGES and rest else name)
    return np.array(keys)


def is_test(name: str) -> bool:
    """The fixed split by a hash of the emoji's file name (e.g. '1f600.png'): both vendors' renderings and
    all skin tones of one emoji fall on the same side, so the test set holds emoji never seen in training."""
    return int(hashlib.sha256(split_key(name).encode()).hexdigest(), 16) % TEST_SHARE == 0


def npm_pack(package: str, version: str, dest: Path) -> Path:
    """`npm pack package@version` in dest; returns the tarball's path."""
    if shutil.which("npm") is None:
        raise DataError("npm is not installed (apt-get install npm); it fetches the emoji packages")
    spec = f"{package}@{version}"
    r = subprocess.run(["npm", "pack", spec], cwd=dest, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    tgz = dest / (lines[-1] if lines else f"{package}-{version}.tgz")  # npm prints the tarball's name last
    if r.returncode != 0 or not tgz.is_file():
        raise DataError(f"`npm pack {spec}` failed (exit {r.returncode}): {r.stderr.strip()[-500:]}")
    return tgz


def extract_pngs(tgz: Path, vendor: str, dest: Path) -> list[Path]:
    """The package/img/<vendor>/64/*.png members of an npm tarball, written flat into dest (sorted)."""
    prefix = f"package/img/{vendor}/64/"
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            for m in tar:
                name = m.name[len(prefix):]
                if not (m.isfile() and m.name.startswith(prefix) and name.endswith(".png")) or "/" in name:
                    continue
                data = tar.extractfile(m)
                (dest / name).write_bytes(data.read())  # flat names only: nothing lands outside dest
                out.append(dest / name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{tgz} is not a readable npm tarball: {e}") from None
    if not out:
        raise DataError(f"{tgz} holds no {prefix}*.png images")
    return sorted(out)


def prepare(path: Path, size: int) -> np.ndarray:
    """One emoji: composited on white (the runtime's reader), area-averaged (box filter) to size×size uint8 RGB."""
    from PIL import Image

    try:
        rgb = read_image(path, 3)
    except InputError as e:
        raise DataError(str(e)) from None
    im = Image.fromarray((rgb * 255 + 0.5).astype(np.uint8))
    return np.asarray(im.resize((size, size), Image.BOX))


def write_licenses(out: Path) -> None:
    """DIR/LICENSES.md: where the images come from, their licences and the attribution CC-BY asks for."""
    lines = ["# Licences of the emoji images", "",
             f"Prepared from the npm packages below (version {VERSION}): composited on white and downsampled.", ""]
    for vendor, (pkg, lic, attribution) in PACKAGES.items():
        lines += [f"- `{vendor}_*.png`: {pkg}@{VERSION}, images under {lic}. {attribution}."]
    lines += ["", "Changes: every image was composited on a white background and area-downsampled from 64×64.",
              "The packages' own code and metadata are MIT (© Cal Henderson, emoji-data); "
              "no code of theirs is included.",
              "", "Apache License 2.0: https://www.apache.org/licenses/LICENSE-2.0",
              "Creative Commons Attribution 4.0: https://creativecommons.org/licenses/by/4.0/", ""]
    (out / "LICENSES.md").write_text("\n".join(lines))


def build(out: Path, size: int = 32, packages_dir: Path | None = None) -> dict:
    """Pack (or reuse from packages_dir), extract, prepare and split both vendors; returns the manifest."""
    t0 = time.time()
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for old in (out / split).glob("*.png"):  # a re-run never leaves images of an earlier one
            old.unlink()
    counts = {"train": {}, "test": {}}
    sources = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for vendor, (pkg, lic, _) in PACKAGES.items():
            tgz = packages_dir / f"{pkg}-{VERSION}.tgz" if packages_dir else None
            if tgz is None or not tgz.is_file():
                tgz = npm_pack(pkg, VERSION, tmp)
            sources[vendor] = {"package": pkg, "version": VERSION, "licence": lic,
                               "sha256": hashlib.sha256(tgz.read_bytes()).hexdigest()}
            for split in counts:
                counts[split][vendor] = 0
            for png in extract_pngs(tgz, vendor, tmp / vendor):
                split = "test" if is_test(png.name) else "train"
                write_png(out / split / f"{vendor}_{png.name}", prepare(png, size))
                counts[split][vendor] += 1
    write_licenses(out)
    manifest = {"source": "package/img/<vendor>/64/*.png (64x64 RGBA)", "packages": sources, "size": size,
                "preparation": "alpha-composited on white, then box (area) downsampled to size x size",
                "split": SPLIT_RULE, "counts": {s: {**c, "total": sum(c.values())} for s, c in counts.items()},
                "seconds": round(time.time() - t0, 1)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@reports_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.datasets emoji", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder for train/, test/, LICENSES.md, manifest.json")
    p.add_argument("--size", type=int, default=32, help="side of the written images (default 32)")
    p.add_argument("--packages", help="folder holding the packed .tgz files (else npm pack into a temp folder)")
    args = p.parse_args(argv)
    if not 1 <= args.size <= 64:
        raise UsageError(f"--size must be in 1..64 (the sources are 64x64), got {args.size}")
    m = build(Path(args.out), args.size, Path(args.packages) if args.packages else None)
    c = m["counts"]
    print(f"wrote {c['train']['total']} train and {c['test']['total']} test images of {args.size}x{args.size} "
          f"into {args.out} in {m['seconds']} s")
    return 0
