#!/bin/sh
# The Debian package version, from git: a tag vX.Y.Z on HEAD gives X.Y.Z;
# otherwise the last tag (or 0.0.0) + git<commit date>.<revision>, which
# sorts after the tag and before the next one. Without git: 0.0.0+unknown.
set -eu
cd "$(dirname "$0")/.."
if ! git rev-parse HEAD >/dev/null 2>&1; then
	echo 0.0.0+unknown
	exit 0
fi
if v=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	echo "${v#v}"
	exit 0
fi
last=$(git describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null || echo v0.0.0)
date=$(git log -1 --format=%cd --date=format:%Y%m%d)
rev=$(git rev-parse --short=12 HEAD)
echo "${last#v}+git$date.$rev"
