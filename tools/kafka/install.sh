#!/usr/bin/env bash
# Installs the pinned Apache Kafka broker jars into $1 (default .local/kafka) and verifies every jar's sha256.
# Idempotent: returns at once when the verified jars are already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-.local/kafka}"
libs="$dest/libs"
stamp="$dest/.verified"

if [ -f "$stamp" ] && cmp -s "$stamp" "$here/SHA256SUMS"; then
  exit 0
fi
command -v java >/dev/null || { echo "error: Java 17+ is required for Kafka (Debian: apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
command -v mvn >/dev/null || { echo "error: Maven is required to fetch the Kafka jars (Debian: apt-get install maven)" >&2; exit 1; }

rm -rf "$libs.tmp" && mkdir -p "$libs.tmp"
echo "fetching Kafka broker jars (pinned in tools/kafka/pom.xml) ..."
mvn -q -B --strict-checksums -f "$here/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$(cd "$libs.tmp" && pwd)"
(cd "$libs.tmp" && sha256sum -c --quiet "$here/SHA256SUMS") || {
  echo "error: Kafka jars do not match tools/kafka/SHA256SUMS" >&2; exit 1; }
extra=$(cd "$libs.tmp" && ls | sort | comm -23 - <(awk '{print $2}' "$here/SHA256SUMS" | sort))
[ -z "$extra" ] || { echo "error: unexpected jars not in SHA256SUMS: $extra" >&2; exit 1; }
rm -rf "$libs" && mv "$libs.tmp" "$libs"
cp "$here/SHA256SUMS" "$stamp"
echo "Kafka jars installed in $libs"
