#!/bin/sh
# install.sh: install flashslim's on-device files into a root tree.
#
# This script is the only list of what goes on the device. The Yocto recipe's do_install
# (meta-flashslim) and the emulated-device test both call it, so they cannot drift apart.
# It is POSIX sh because bitbake runs do_install with the build host's /bin/sh.
#
# Usage: install.sh DESTDIR [options]
#   --binary FILE       the built flashslim binary to install (default: none is installed)
#   --model FILE        a GGUF model to put in DATADIR/flashslim/models/ (repeatable; the Yocto
#                       recipe passes none: models are copied to the device separately)
#   --bindir DIR        where the binary goes (default /usr/bin)
#   --datadir DIR       tracing scripts and models go under DIR/flashslim (default /usr/share)
#   --sysconfdir DIR    profile.conf goes to DIR/flashslim (default /etc)
#   --unitdir DIR       systemd system units (default /usr/lib/systemd/system)
#   --journald-dir DIR  journald drop-in (default /usr/lib/systemd/journald.conf.d)
#
# Installed, every path under DESTDIR:
#   BINDIR/flashslim                          (only with --binary)
#   DATADIR/flashslim/tracing/*.bt            (engine/tracing/*.bt; none is fine)
#   DATADIR/flashslim/models/                 (the documented model location; empty without --model)
#   SYSCONFDIR/flashslim/profile.conf
#   UNITDIR/flashslim-profile.target, UNITDIR/flashslim-profile.service
#   JOURNALD_DIR/50-flashslim.conf
# Existing files are overwritten, so running it twice gives the same tree. The units and
# profile.conf name /usr/bin, /usr/share and /etc; those paths are rewritten when the matching
# option is given a different directory.

set -eu

prog=install.sh
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
usage() {
    cat <<'USAGE'
usage: install.sh DESTDIR [--binary FILE] [--model FILE]... [--bindir DIR] [--datadir DIR]
                          [--sysconfdir DIR] [--unitdir DIR] [--journald-dir DIR]
Installs flashslim's on-device files under DESTDIR (see the header of this script).
USAGE
    exit 0
}

dist=$(cd "$(dirname "$0")" && pwd) || die "cannot find the directory of $0"
tracing="$dist/../tracing"

[ $# -ge 1 ] || die "missing DESTDIR; usage: install.sh DESTDIR [options] (see --help)"
case $1 in
-h|--help) usage ;;
-*) die "DESTDIR must come first (got option '$1'); see --help" ;;
'') die "DESTDIR is empty" ;;
esac
destdir=${1%/}
shift

binary=
models=
bindir=/usr/bin
datadir=/usr/share
sysconfdir=/etc
unitdir=/usr/lib/systemd/system
journalddir=/usr/lib/systemd/journald.conf.d

while [ $# -gt 0 ]; do
    opt=$1
    case $opt in
    --*=*)
        val=${opt#*=}; opt=${opt%%=*}; shift
        [ -n "$val" ] || die "option $opt needs a value" ;;
    --binary|--model|--bindir|--datadir|--sysconfdir|--unitdir|--journald-dir)
        if [ $# -lt 2 ] || [ -z "$2" ]; then die "option $opt needs a value"; fi
        val=$2; shift 2 ;;
    -h|--help) usage ;;
    *) die "unknown argument '$opt'; see --help" ;;
    esac
    case $opt in
    --binary) binary=$val ;;
    --model)
        [ -f "$val" ] || die "--model $val: no such file"
        case $val in *'
'*) die "--model $val: a newline in the file name" ;; esac
        models="$models$val
" ;;
    --bindir) bindir=$val ;;
    --datadir) datadir=$val ;;
    --sysconfdir) sysconfdir=$val ;;
    --unitdir) unitdir=$val ;;
    --journald-dir) journalddir=$val ;;
    *) die "unknown option '$opt'; see --help" ;;
    esac
done

for d in "$bindir" "$datadir" "$sysconfdir" "$unitdir" "$journalddir"; do
    case $d in
    *'|'*|*'&'*|*\\*) die "install directory '$d' contains | & or a backslash, which this script cannot handle" ;;
    /*) ;;
    *) die "install directories must be absolute paths (got '$d')" ;;
    esac
done
if [ -n "$binary" ]; then
    [ -f "$binary" ] || die "--binary $binary: no such file (build it first)"
    [ -x "$binary" ] || die "--binary $binary: not executable"
fi
for f in "$dist/systemd/flashslim-profile.target" "$dist/systemd/flashslim-profile.service" \
         "$dist/etc/profile.conf" "$dist/journald/50-flashslim.conf"; do
    [ -f "$f" ] || die "missing source file $f (incomplete checkout?)"
done

# Copy a text file, pointing its default paths at the directories chosen above.
install_text() { # MODE SRC DEST
    sed -e "s|/usr/bin/flashslim|$bindir/flashslim|g" \
        -e "s|/usr/share/flashslim/|$datadir/flashslim/|g" \
        -e "s|/etc/flashslim/|$sysconfdir/flashslim/|g" \
        "$2" >"$3.tmp" || die "cannot write $3"
    chmod "$1" "$3.tmp" || die "cannot write $3"
    mv -f "$3.tmp" "$3" || die "cannot write $3"
}

install -d -m 0755 "$destdir$datadir/flashslim/tracing" "$destdir$datadir/flashslim/models" \
    "$destdir$sysconfdir/flashslim" "$destdir$unitdir" "$destdir$journalddir" \
    || die "cannot create directories under $destdir"

if [ -n "$binary" ]; then
    install -d -m 0755 "$destdir$bindir" || die "cannot create $destdir$bindir"
    install -m 0755 "$binary" "$destdir$bindir/flashslim" || die "cannot install $binary"
fi

# One model file name a line (names with spaces survive; newlines were refused above).
if [ -n "$models" ]; then
    printf '%s' "$models" | while IFS= read -r m; do
        install -m 0644 "$m" "$destdir$datadir/flashslim/models/" || exit 1
    done || die "cannot install the model(s) under $destdir$datadir/flashslim/models"
fi

for bt in "$tracing"/*.bt; do
    [ -e "$bt" ] || continue # no scripts yet: the glob stayed literal
    install -m 0644 "$bt" "$destdir$datadir/flashslim/tracing/" || die "cannot install $bt"
done

install_text 0644 "$dist/systemd/flashslim-profile.target" "$destdir$unitdir/flashslim-profile.target"
install_text 0644 "$dist/systemd/flashslim-profile.service" "$destdir$unitdir/flashslim-profile.service"
install_text 0644 "$dist/etc/profile.conf" "$destdir$sysconfdir/flashslim/profile.conf"
install -m 0644 "$dist/journald/50-flashslim.conf" "$destdir$journalddir/50-flashslim.conf" \
    || die "cannot install the journald drop-in"
