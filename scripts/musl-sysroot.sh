#!/usr/bin/env bash
# The C start files and libc a static musl link needs, for a Rust target
# whose standard library rustup cannot install (std is then built from the
# rust-src component: `-Z build-std`, see build-static.sh).
#
#   dir=$(scripts/musl-sysroot.sh riscv64gc-unknown-linux-musl)
#   RUSTFLAGS="-L native=$dir" ...
#
# rustup's rust-std of a musl target carries these files in its
# `self-contained` directory; without it rustc finds them on the `-L
# native` path instead. They come from:
#  - musl-dev of Debian's archive for that architecture (downloaded with a
#    private apt state under the cache directory; nothing is installed and
#    the system's apt configuration is not changed): crt1.o, crti.o,
#    crtn.o, libc.a. The trixie suite, the first with riscv64, for every
#    architecture, so all of them link the same musl;
#  - the Debian cross compiler of the target (gcc-<triplet>, the linker
#    driver): crtbegin.o, crtend.o, and libgcc_eh.a as libunwind.a, the GNU
#    implementation of the unwinder interface Rust's std links against
#    (with panic = "abort" nothing unwinds). Debian's libgcc_eh is built
#    for glibc: its DWARF unwinder (all but 32-bit ARM) asks glibc's
#    _dl_find_object (glibc 2.35) for a frame's tables. musl has none, so a
#    stub answering "not found" joins the archive: a backtrace ends at its
#    first frame, as the release binary's already does without its tables.
#
# The directory goes to $CARGO_TARGET_DIR/musl-sysroot/TRIPLE (default
# <repo>/target) and is reused once complete. stdout: its path; progress
# goes to stderr.
set -euo pipefail

triple=${1:?usage: musl-sysroot.sh RUST_TARGET_TRIPLE}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
case $target_dir in
    /*) ;;
    *) target_dir=$PWD/$target_dir ;;
esac

# Rust triple -> Debian architecture, musl's library directory, GNU triplet.
case $triple in
    armv7-unknown-linux-musleabihf) deb_arch=armhf musl_dir=arm-linux-musleabihf gnu=arm-linux-gnueabihf ;;
    arm-unknown-linux-musleabi) deb_arch=armel musl_dir=arm-linux-musleabi gnu=arm-linux-gnueabi ;;
    powerpc64le-unknown-linux-musl) deb_arch=ppc64el musl_dir=powerpc64le-linux-musl gnu=powerpc64le-linux-gnu ;;
    riscv64gc-unknown-linux-musl) deb_arch=riscv64 musl_dir=riscv64-linux-musl gnu=riscv64-linux-gnu ;;
    aarch64-unknown-linux-musl) deb_arch=arm64 musl_dir=aarch64-linux-musl gnu=aarch64-linux-gnu ;;
    i686-unknown-linux-musl) deb_arch=i386 musl_dir=i386-linux-musl gnu=i686-linux-gnu ;;
    *) echo "musl-sysroot: no Debian musl known for $triple" >&2; exit 2 ;;
esac

out=$target_dir/musl-sysroot/$triple
if [[ -f $out/.complete && $(cat "$out/.complete") == version-2* ]]; then
    echo "$out"
    exit 0
fi

gcc_dir=$("$gnu-gcc" -print-file-name=crtbegin.o 2>/dev/null || true)
gcc_dir=$(dirname "$gcc_dir")
if [[ ! -f $gcc_dir/crtbegin.o || ! -f $gcc_dir/libgcc_eh.a ]]; then
    echo "musl-sysroot: $gnu-gcc (Debian's gcc-$gnu) is not installed or has no crtbegin.o/libgcc_eh.a" >&2
    exit 1
fi

apt_root=$target_dir/musl-sysroot/apt
mkdir -p "$apt_root/lists/partial" "$apt_root/cache/archives/partial" "$apt_root/debs"
echo "deb [arch=$deb_arch] http://deb.debian.org/debian trixie main" >"$apt_root/sources-$deb_arch.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$apt_root/sources-$deb_arch.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_root/lists"
    -o "Dir::Cache=$apt_root/cache"
    -o "APT::Architectures::=$deb_arch"
    -o Acquire::Languages=none
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -o Acquire::IndexTargets::deb::CNF::DefaultEnabled=false
    -o Debug::NoLocking=1
    -qq
)
echo "musl-sysroot: fetching musl-dev:$deb_arch from Debian trixie" >&2
apt-get "${apt_opts[@]}" update >&2
rm -f "$apt_root/debs/musl-dev_"*"_$deb_arch.deb"
(cd "$apt_root/debs" && apt-get "${apt_opts[@]}" download "musl-dev:$deb_arch" 2>&1 | grep -v 'unsandboxed' >&2 || true)
deb=$(ls "$apt_root/debs/musl-dev_"*"_$deb_arch.deb" 2>/dev/null | head -n 1)
[[ -n $deb ]] || { echo "musl-sysroot: could not download musl-dev:$deb_arch" >&2; exit 1; }

unpacked=$(mktemp -d)
trap 'rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"
rm -rf "$out"
mkdir -p "$out"
for f in crt1.o crti.o crtn.o rcrt1.o Scrt1.o libc.a; do
    cp "$unpacked/usr/lib/$musl_dir/$f" "$out/"
done
for f in crtbegin.o crtend.o crtbeginS.o crtendS.o; do
    cp "$gcc_dir/$f" "$out/"
done
cp "$gcc_dir/libgcc_eh.a" "$out/libunwind.a"
printf '%s\n' 'struct dl_find_object;' \
    'int _dl_find_object(void *pc, struct dl_find_object *result) { (void)pc; (void)result; return -1; }' \
    >"$unpacked/dl_find_object.c"
"$gnu-gcc" -O2 -fPIC -c "$unpacked/dl_find_object.c" -o "$unpacked/dl_find_object.o"
"$gnu-ar" rcs "$out/libunwind.a" "$unpacked/dl_find_object.o"
echo "version-2 $(basename "$deb")" >"$out/.complete"
echo "musl-sysroot: $triple: $(basename "$deb") + $gnu-gcc's start files in $out" >&2
echo "$out"
