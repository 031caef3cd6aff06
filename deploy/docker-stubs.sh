#!/usr/bin/env bash
# Makes cargo accept Cargo.toml with none of the sources present: writes an empty stand-in
# for every target the manifest declares ([lib], [[bin]], [[test]], [[bench]], [[example]]),
# at its `path` or at the path cargo infers from its name, unless a file is already there.
# deploy/Dockerfile runs it before building the dependencies alone, and deploy/validate.sh
# runs it the same way, then lets cargo read the manifest, so a target it misses fails there.
#   bash deploy/docker-stubs.sh [Cargo.toml]
set -euo pipefail
cd "$(dirname "${1:-Cargo.toml}")"
manifest=$(basename "${1:-Cargo.toml}")

# Prints "KIND NAME PATH" per declared target (PATH may be "-"), and "package NAME".
# Only the plain TOML a manifest uses for targets is read: table headers and
# `key = "value"` lines; anything else in a target table is ignored.
targets() {
  awk '
    function flush() {
      if (kind != "") print kind, (name == "" ? "-" : name), (path == "" ? "-" : path)
      kind = ""; name = ""; path = ""
    }
    function value(line) {
      sub(/^[^=]*=[ \t]*"/, "", line); sub(/".*$/, "", line); return line
    }
    /^[ \t]*\[/ {
      flush(); table = $0
      gsub(/[ \t]/, "", table)
      if (table == "[lib]") kind = "lib"
      else if (table == "[[bin]]") kind = "bin"
      else if (table == "[[test]]") kind = "test"
      else if (table == "[[bench]]") kind = "bench"
      else if (table == "[[example]]") kind = "example"
      next
    }
    table == "[package]" && /^[ \t]*name[ \t]*=/ { print "package", value($0) }
    kind != "" && /^[ \t]*name[ \t]*=/ { name = value($0) }
    kind != "" && /^[ \t]*path[ \t]*=/ { path = value($0) }
    END { flush() }
  ' "$manifest"
}

stub() { # FILE CONTENT
  [ -e "$1" ] && return 0
  mkdir -p "$(dirname "$1")"
  printf '%s\n' "$2" > "$1"
  echo "stub: $1"
}

package=
lib_seen=
while read -r kind name path; do
  case $kind in
    package) package=$name; continue ;;
  esac
  if [ "$path" = - ]; then
    # Cargo's inferred paths (a folder with main.rs is the other form; a file is enough).
    case $kind in
      lib) path=src/lib.rs ;;
      bin) if [ "$name" = "$package" ]; then path=src/main.rs; else path=src/bin/$name.rs; fi ;;
      test) path=tests/$name.rs ;;
      bench) path=benches/$name.rs ;;
      example) path=examples/$name.rs ;;
    esac
  fi
  if [ "$kind" = lib ]; then
    lib_seen=1
    stub "$path" "// dependency-caching stand-in"
  else
    stub "$path" "fn main() {}"
  fi
done < <(targets)
# A library at src/lib.rs needs no [lib] table: stand in for it too, so dependencies are
# built as the library needs them.
[ -n "$lib_seen" ] || stub src/lib.rs "// dependency-caching stand-in"
# The same for a binary at src/main.rs when no [[bin]] names one.
[ -e src/main.rs ] || stub src/main.rs "fn main() {}"
