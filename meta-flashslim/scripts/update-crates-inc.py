#!/usr/bin/env python3
r"""Write meta-flashslim's flashslim-crates.inc from the workspace Cargo.lock, offline.

The output carries what `bitbake -c update_crates flashslim` (oe-core's
cargo-update-recipe-crates class) would write for our one Cargo.lock: a `crate://` SRC_URI entry
and a sha256sum for every crates.io package, checksums straight from Cargo.lock. Only the header
and the opening `SRC_URI += "\` line differ (that spelling keeps oelint-adv quiet). bitbake's
task would also pick up any other Cargo.lock under the tree (fuzz/, target/package/); this
script reads the workspace lock alone.

Usage: update-crates-inc.py            rewrite the .inc
       update-crates-inc.py --check    exit 1 if the committed .inc is stale
Options --lock FILE and --inc FILE point at other files (tests use them).
"""

import argparse
import difflib
import sys
import tomllib
from pathlib import Path

LAYER = Path(__file__).resolve().parent.parent
ROOT = LAYER.parent
DEFAULT_LOCK = ROOT / "Cargo.lock"
DEFAULT_INC = LAYER / "recipes-ml" / "flashslim" / "flashslim-crates.inc"
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
SELF = "meta-flashslim/scripts/update-crates-inc.py"


class Error(Exception):
    pass


def render(lock_path: Path) -> str:
    """The .inc text for the Cargo.lock at lock_path."""
    try:
        lock = tomllib.loads(lock_path.read_text())
    except FileNotFoundError:
        raise Error(f"{lock_path}: not found")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise Error(f"{lock_path}: not a valid Cargo.lock ({e})")
    packages = lock.get("package")
    if not isinstance(packages, list) or not packages:
        raise Error(f"{lock_path}: no [[package]] entries")

    uris, sums = [], []
    for p in packages:
        name, version, source = p.get("name"), p.get("version"), p.get("source")
        if not name or not version:
            raise Error(f"{lock_path}: a [[package]] lacks name or version")
        if source is None:
            continue  # a workspace member, built from the tree
        if source != CRATES_IO:
            # bitbake fetches crates.io only; cargo --frozen would then fail in do_compile.
            raise Error(
                f"{lock_path}: {name} {version} comes from {source}; "
                "the Yocto recipe can only fetch crates.io packages"
            )
        checksum = p.get("checksum")
        if not checksum:
            raise Error(f"{lock_path}: {name} {version} has no checksum")
        uris.append(f"    crate://crates.io/{name}/{version} \\")
        sums.append(f'SRC_URI[{name}-{version}.sha256sum] = "{checksum}"')
    if not uris:
        raise Error(f"{lock_path}: no crates.io packages")

    lines = [
        f"# Generated from Cargo.lock by {SELF}; do not edit.",
        "# Run that script after every Cargo.lock change (CI checks that this file is fresh).",
        "",
        "# from Cargo.lock",
        'SRC_URI += "\\',
        *uris,
        '"',
        "",
        *sums,
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the .inc is stale")
    ap.add_argument("--lock", type=Path, default=DEFAULT_LOCK, help="Cargo.lock to read")
    ap.add_argument("--inc", type=Path, default=DEFAULT_INC, help=".inc file to write or check")
    args = ap.parse_args()
    try:
        text = render(args.lock)
    except Error as e:
        print(f"update-crates-inc: {e}", file=sys.stderr)
        return 1
    if args.check:
        try:
            old = args.inc.read_text()
        except FileNotFoundError:
            old = ""
        if old == text:
            return 0
        diff = difflib.unified_diff(
            old.splitlines(), text.splitlines(), str(args.inc), "from Cargo.lock", lineterm="", n=0
        )
        sys.stderr.write("\n".join(list(diff)[:40]) + "\n")
        print(
            f"update-crates-inc: {args.inc.name} is stale against Cargo.lock; run {SELF} and commit it",
            file=sys.stderr,
        )
        return 1
    args.inc.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
