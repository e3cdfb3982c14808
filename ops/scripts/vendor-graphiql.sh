#!/usr/bin/env bash
# Refreshes the GraphiQL page's assets in api/assets/graphiql/ from the npm registry.
# The service serves them itself, so GraphiQL works without internet access.
# Usage: ops/scripts/vendor-graphiql.sh [GRAPHIQL_VERSION] [REACT_VERSION]
set -euo pipefail
graphiql="${1:-4.1.2}"
react="${2:-18.3.1}"
dest="$(cd "$(dirname "$0")/../.." && pwd)/api/assets/graphiql"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent "graphiql@$graphiql" "react@$react" "react-dom@$react" >/dev/null
for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}" --strip-components 1; done
cp "graphiql-$graphiql/graphiql.min.js" "graphiql-$graphiql/graphiql.min.css" "$dest/"
cp "react-$react/umd/react.production.min.js" "react-dom-$react/umd/react-dom.production.min.js" "$dest/"
cp "graphiql-$graphiql/LICENSE" "$dest/LICENSE-graphiql"
cp "react-$react/LICENSE" "$dest/LICENSE-react"
cp "react-dom-$react/LICENSE" "$dest/LICENSE-react-dom"
sed -i '/^\/\/# sourceMappingURL=/d' "$dest"/*.js
echo "vendored graphiql $graphiql and react $react into $dest"
