#!/bin/sh
# Lay out and zip the function for a .zip deployment (the container image is the usual route:
# servekit's scientific dependencies often exceed Lambda's 250 MB unzipped limit for zips).
# Written by servekit build. Run from this folder: ./build-zip.sh
set -eu
cd "$(dirname "$0")"
rm -rf package lambda.zip
mkdir -p package
python3 -m pip install --quiet --target package \
    --platform manylinux2014_x86_64 --implementation cp --python-version 3.12 \
    --only-binary=:all: -r requirements.txt
cp -R models package/models
size_kb=$(du -sk package | cut -f1)
limit_kb=256000
if [ "$size_kb" -gt "$limit_kb" ]; then
    echo "package/ is $((size_kb / 1024)) MB unzipped, over Lambda's 250 MB limit for .zip functions;" >&2
    echo "deploy the container image instead (sam build && sam deploy --guided with PackageType Image)." >&2
    exit 1
fi
(cd package && python3 -m zipfile -c ../lambda.zip .)
echo "lambda.zip ready ($((size_kb / 1024)) MB unzipped); handler: servekit.integrations.aws_lambda.handler"
