"""One boto3 case against vpcgate, for the client matrix (integration-tests/clients.rs).

Usage: boto3_case.py CASE BUCKET [WORKDIR]
Environment: HTTPS_PROXY, AWS_CA_BUNDLE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION
(set by the runner; every address involved is on 127.0.0.0/8).

Prints one JSON object: {"ok": bool, "detail": str, "error": str|null, "code": str|null}.
"ok" means the operation succeeded; a refusal is ok=false with the error the client saw.
"""
import hashlib
import json
import os
import subprocess
import sys

import boto3
import botocore
from botocore.config import Config


def client(**cfg):
    region = cfg.pop("region", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    retries = {"max_attempts": 1, "mode": "standard"}
    return boto3.client(
        "s3",
        region_name=region,
        config=Config(retries=retries, connect_timeout=10, read_timeout=30, **cfg),
    )


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def curl(url):
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--proxy", os.environ["HTTPS_PROXY"],
         "--cacert", os.environ["AWS_CA_BUNDLE"], "-w", "\n%{http_code}", url],
        capture_output=True, text=True, timeout=30)
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body, out.stderr


def crud(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello from boto3")
    got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert got == b"hello from boto3", got
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert key in keys, keys
    s3.delete_object(Bucket=bucket, Key=key)
    return "put/get/list/delete ok"


def run(case, bucket, work):
    if case == "create-bucket":
        s3 = client()
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        return "bucket ready"
    if case == "crud-virtual":
        return crud(client(s3={"addressing_style": "virtual"}), bucket, "boto3-virtual.txt")
    if case == "crud-path":
        return crud(client(s3={"addressing_style": "path"}), bucket, "boto3-path.txt")
    if case == "upload-20mib":
        s3 = client()
        src = os.path.join(work, "boto3-src.bin")
        dst = os.path.join(work, "boto3-dst.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(20 << 20))
        cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20)
        s3.upload_file(src, bucket, "boto3-20mib.bin", Config=cfg)
        s3.download_file(bucket, "boto3-20mib.bin", dst, Config=cfg)
        a, b = sha256(src), sha256(dst)
        assert a == b, (a, b)
        return f"20 MiB multipart round trip, sha256 {a[:16]}"
    if case == "presign-v4":
        s3 = client(signature_version="s3v4")
        s3.put_object(Bucket=bucket, Key="presigned.txt", Body=b"presigned content")
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned.txt"}, ExpiresIn=300)
        code, body, err = curl(url)
        if code != 200 or body != "presigned content":
            raise RuntimeError(f"curl got HTTP {code}: {body[:300]} {err[:200]}")
        return "SigV4 presigned GET fetched by curl"
    if case == "presign-default":
        # No signature_version configured: botocore presigns with SigV2 in us-east-1.
        s3 = client()
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "presigned.txt"}, ExpiresIn=300)
        if "AWSAccessKeyId=" not in url:
            return f"botocore presigned with SigV4 here ({url.split('?')[1][:40]}...)"
        code, body, err = curl(url)
        if code == 200:
            return "SigV2 presigned GET succeeded"
        raise RuntimeError(f"HTTP {code}: {body}")
    if case == "sigv2":
        s3 = client(signature_version="s3")
        s3.list_objects_v2(Bucket=bucket)
        return "listed with SigV2"
    if case == "dualstack":
        client(s3={"use_dualstack_endpoint": True}).list_objects_v2(Bucket=bucket)
        return "listed over dualstack"
    if case == "other-region":
        client(region="eu-west-1").list_objects_v2(Bucket=bucket)
        return "listed in eu-west-1"
    if case == "list":
        client().list_objects_v2(Bucket=bucket)
        return "listed"
    if case == "list-path":
        client(s3={"addressing_style": "path"}).list_objects_v2(Bucket=bucket)
        return "listed path-style"
    if case == "copy-from":
        # Copy from BUCKET into matrix-bucket (which the perimeter allows).
        client().copy_object(Bucket="matrix-bucket", Key="copied.txt", CopySource={"Bucket": bucket, "Key": "k.txt"})
        return "copied"
    if case == "presign-get":
        url = client(signature_version="s3v4").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k.txt"}, ExpiresIn=300)
        code, body, err = curl(url)
        if code == 200:
            return "presigned GET fetched"
        raise RuntimeError(f"curl got HTTP {code}: {body[:400]}")
    if case == "legacy-global":
        # us-east-1 on the legacy global name (bucket.s3.amazonaws.com), which resolves outside.
        client(s3={"us_east_1_regional_endpoint": "legacy", "addressing_style": "virtual"}).list_objects_v2(Bucket=bucket)
        return "listed through the legacy global name"
    if case == "outside-answer":
        client().list_objects_v2(Bucket=bucket)
        return "listed a bucket whose name resolves outside every route"
    if case == "untrusted-upstream" or case == "nonfs-upstream":
        client().list_objects_v2(Bucket=bucket)
        return "listed"
    raise SystemExit(f"unknown case {case}")


def main():
    case, bucket = sys.argv[1], sys.argv[2]
    work = sys.argv[3] if len(sys.argv) > 3 else "."
    try:
        detail = run(case, bucket, work)
        print(json.dumps({"ok": True, "detail": detail, "error": None, "code": None}))
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        print(json.dumps({"ok": False, "detail": "", "code": err.get("Code"), "error": f"{err.get('Code')}: {err.get('Message')}"}))
    except Exception as e:  # proxy refusals surface as connection errors
        # botocore wraps the proxy's answer (urllib3: "Tunnel connection failed: 403 <reason>") in
        # ProxyConnectionError(error=...): show the chain, as a traceback would.
        chain, cur = [f"{type(e).__name__}: {e}"], getattr(e, "kwargs", {}).get("error") or e.__cause__ or e.__context__
        while cur is not None and len(chain) < 5:
            chain.append(f"{type(cur).__name__}: {cur}")
            cur = cur.__cause__ or cur.__context__ or (cur.args[1] if len(getattr(cur, "args", ())) > 1 and isinstance(cur.args[1], BaseException) else None)
        print(json.dumps({"ok": False, "detail": "", "code": type(e).__name__, "error": " <- ".join(chain)}))


if __name__ == "__main__":
    main()
