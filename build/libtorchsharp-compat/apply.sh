#!/usr/bin/env bash
# Makes TorchSharp's native library load on hosts whose libstdc++ lacks GLIBCXX_3.4.32
# (Debian 12 ships GCC 12's). See README "Troubleshooting". Usage: apply.sh OUTPUT_DIR
# Does nothing where the host's libstdc++ already has that version; safe to run twice.
set -euo pipefail
out_dir=$1
here=$(cd "$(dirname "$0")" && pwd)
version=GLIBCXX_3.4.32

host_lib=$(ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
if [ -n "$host_lib" ] && grep -aq "$version" "$host_lib"; then exit 0; fi

targets=()
for candidate in "$out_dir/runtimes/linux-x64/native/libLibTorchSharp.so" "$out_dir/libLibTorchSharp.so"; do
  [ -f "$candidate" ] && targets+=("$candidate")
done
[ ${#targets[@]} -gt 0 ] || exit 0

for tool in g++ patchelf; do
  command -v "$tool" >/dev/null || { echo "libtorchsharp-compat: '$tool' is needed (apt-get install g++ patchelf)" >&2; exit 1; }
done

tools_dir="$here/.bin"
mkdir -p "$tools_dir"
if [ ! -x "$tools_dir/weaken_verneed" ]; then
  g++ -O2 -o "$tools_dir/weaken_verneed.$$" "$here/weaken_verneed.cpp"
  mv -f "$tools_dir/weaken_verneed.$$" "$tools_dir/weaken_verneed"
fi
if [ ! -f "$tools_dir/libstdcxx_compat.so" ]; then
  g++ -O2 -shared -fPIC -o "$tools_dir/libstdcxx_compat.so.$$" "$here/stdcxx_compat.cpp"
  mv -f "$tools_dir/libstdcxx_compat.so.$$" "$tools_dir/libstdcxx_compat.so"
fi

for lib in "${targets[@]}"; do
  dir=$(dirname "$lib")
  cp -f "$tools_dir/libstdcxx_compat.so" "$dir/libstdcxx_compat.so"
  if patchelf --print-needed "$lib" | grep -qx libstdcxx_compat.so; then continue; fi
  "$tools_dir/weaken_verneed" "$lib" "$version"
  patchelf --add-needed libstdcxx_compat.so "$lib"
done
