#!/usr/bin/env bash
# Build the catalogs of the sample archive (../shared/data by default, or $1).
# Hrefs are stored relative to the archive root; the root is recorded relative to each catalog
# file, so the catalogs work from a checkout next to shared/ and with `--archive DIR` elsewhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:-$here/../../shared/data}"

georefscale catalog build "$data/naip" -o "$here/naip.parquet" --fresh --archive "$data" \
    --collection naip --sensor NAIP --band-names red,green,blue,nir \
    --date-pattern '_(\d{8})\.tif$'

georefscale catalog build "$data/oscd" -o "$here/oscd.parquet" --fresh --archive "$data" \
    --collection oscd
