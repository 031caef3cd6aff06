"""Writes wrk Lua scripts that replay SigV4-signed Pinpoint requests.

Usage: presign.py ENDPOINT KEY SECRET OUT_DIR [--moto]

Against segmentctl: creates an app and a segment, then signs GetSegment, CreateSegment and
UpdateSegment (every replay makes a new version of the one segment), and saves the server's
answer to the signed GetSegment as get_segment.body (what the bare axum baseline serves).
Against moto (--moto): creates an app, then signs GetApps and GetApp (the operations both
servers implement). A SigV4 signature stays valid for 15 minutes and the server verifies it
in full on every request, so replaying one signed request measures the real checking cost.
"""

import json
import sys
import urllib.request
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed(endpoint, creds, method, path, body=b""):
    req = AWSRequest(method=method, url=endpoint + path, data=body,
                     headers={"Content-Type": "application/json"} if body else {})
    SigV4Auth(creds, "mobiletargeting", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def lua(method, path, headers, body=""):
    hs = "\n".join(f'wrk.headers["{k}"] = {json.dumps(v)}' for k, v in headers.items() if k.lower() != "host")
    return f'wrk.method = "{method}"\nwrk.path = {json.dumps(path)}\nwrk.body = {json.dumps(body)}\n{hs}\n'


def main(endpoint, key, secret, out, moto=False):
    pp = boto3.client("pinpoint", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=key, aws_secret_access_key=secret)
    creds = Credentials(key, secret)
    app = pp.create_app(CreateApplicationRequest={"Name": "load"})["ApplicationResponse"]["Id"]
    host = urlsplit(endpoint).netloc
    scripts = {}
    if moto:
        scripts["get_apps"] = ("GET", "/v1/apps", b"")
        scripts["get_app"] = ("GET", f"/v1/apps/{app}", b"")
    else:
        seg = pp.create_segment(ApplicationId=app, WriteSegmentRequest={
            "Name": "load", "Dimensions": {"Demographic": {"Platform": {"Values": ["ios"]}}}})["SegmentResponse"]["Id"]
        body = json.dumps({"Name": "load", "Dimensions": {"Location": {"Country": {"Values": ["US", "CA"]}}}}).encode()
        scripts["get_segment"] = ("GET", f"/v1/apps/{app}/segments/{seg}", b"")
        scripts["create_segment"] = ("POST", f"/v1/apps/{app}/segments", body)
        scripts["update_segment"] = ("PUT", f"/v1/apps/{app}/segments/{seg}", body)
        scripts["get_app"] = ("GET", f"/v1/apps/{app}", b"")
        scripts["get_apps"] = ("GET", "/v1/apps", b"")
    for name, (method, path, body) in scripts.items():
        headers = signed(endpoint, creds, method, path, body)
        headers["Host"] = host
        with open(f"{out}/{name}.lua", "w") as f:
            f.write(lua(method, path, headers, body.decode()))
        if name == "get_segment":
            # The very request wrk replays, so the bytes are the ones the server sends it.
            req = urllib.request.Request(endpoint + path, headers=headers, method=method)
            with urllib.request.urlopen(req) as resp, open(f"{out}/{name}.body", "wb") as f:
                f.write(resp.read())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], "--moto" in sys.argv)
