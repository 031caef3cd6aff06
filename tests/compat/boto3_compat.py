"""A second real client against `segmentctl serve`: boto3, changing only the endpoint URL.

Usage: python boto3_compat.py ENDPOINT_URL ACCESS_KEY_ID SECRET_ACCESS_KEY IMPORT_ROOT

IMPORT_ROOT is a folder the server was started with as `--import-root`: the import job
reads a CSV file written there, and the export job writes under it.

Exits non-zero on the first mismatch. Run by tests/it/compat_boto3.rs (so by `cargo test` and
.ci/run) against a server it starts with IMPORT_ROOT as its import root.
"""

import glob
import gzip
import json
import os
import sys
import time
import urllib.parse

import boto3
import botocore.config
from botocore.exceptions import ClientError


def expect_error(code, status, fn, **kwargs):
    try:
        fn(**kwargs)
    except ClientError as e:
        got = (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
        assert got == (code, status), f"{fn.__name__}: expected {(code, status)}, got {got}"
        assert e.response["Error"]["Message"], f"{fn.__name__}: the error has no message"
        print(f"ok  {code} {status}: {e.response['Error']['Message']}")
        return
    raise AssertionError(f"{fn.__name__}: expected {code}, got success")


def wait_for_job(fn, key, app_id, job_id, timeout=60):
    """Polls a Get*Job call until the job is COMPLETED; fails on FAILED or after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        job = fn(ApplicationId=app_id, JobId=job_id)[key]
        status = job["JobStatus"]
        if status == "COMPLETED":
            return job
        assert status != "FAILED", f"{fn.__name__}: the job failed: {job}"
        assert time.monotonic() < deadline, f"{fn.__name__}: not COMPLETED after {timeout} s: {job}"
        time.sleep(0.2)


def import_and_export(pp, app_id, root):
    role = "arn:aws:iam::000000000000:role/x"
    path = os.path.join(root, "boto3-import.csv")
    with open(path, "w", newline="") as f:
        f.write("ChannelType,Address,Id,Location.Country\n"
                "EMAIL,ann@example.com,boto3-ann,US\n"
                "EMAIL,bob@example.com,boto3-bob,CA\n"
                "SMS,+15550100,boto3-cat,US\n"
                "FAX,+15550101,boto3-fax,US\n")

    created = pp.create_import_job(
        ApplicationId=app_id,
        ImportJobRequest={
            "Format": "CSV",
            "S3Url": "file://" + urllib.parse.quote(path),
            "RoleArn": role,
            "DefineSegment": True,
            "SegmentName": "boto3 import",
        },
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201, created["ResponseMetadata"]
    job_id = created["ImportJobResponse"]["Id"]
    assert created["ImportJobResponse"]["Type"] == "IMPORT", created["ImportJobResponse"]
    print("ok  CreateImportJob", job_id)

    job = wait_for_job(pp.get_import_job, "ImportJobResponse", app_id, job_id)
    assert job["TotalProcessed"] == 4 and job["TotalFailures"] == 1, job
    assert ":5: ChannelType" in job["Failures"][0], job["Failures"]
    imported_id = job["Definition"]["SegmentId"]
    print("ok  GetImportJob COMPLETED:", job["Failures"][0])

    listed = pp.get_import_jobs(ApplicationId=app_id)["ImportJobsResponse"]["Item"]
    assert job_id in [j["Id"] for j in listed], listed
    listed = pp.get_segment_import_jobs(ApplicationId=app_id, SegmentId=imported_id)["ImportJobsResponse"]["Item"]
    assert [j["Id"] for j in listed] == [job_id], listed
    print("ok  GetImportJobs / GetSegmentImportJobs")

    seg = pp.get_segment(ApplicationId=app_id, SegmentId=imported_id)["SegmentResponse"]
    assert seg["SegmentType"] == "IMPORT" and seg["Name"] == "boto3 import", seg
    assert seg["ImportDefinition"]["Size"] == 3, seg
    assert seg["ImportDefinition"]["ChannelCounts"] == {"EMAIL": 2, "SMS": 1}, seg
    print("ok  GetSegment IMPORT", seg["ImportDefinition"]["ChannelCounts"])

    ep = pp.get_endpoint(ApplicationId=app_id, EndpointId="boto3-bob")["EndpointResponse"]
    assert ep["Id"] == "boto3-bob" and ep["ChannelType"] == "EMAIL", ep
    assert ep["Address"] == "bob@example.com" and ep["Location"]["Country"] == "CA", ep
    print("ok  GetEndpoint")

    out = os.path.join(root, "out")
    created = pp.create_export_job(
        ApplicationId=app_id,
        ExportJobRequest={
            "RoleArn": role,
            "S3UrlPrefix": "file://" + urllib.parse.quote(out) + "/",
            "SegmentId": imported_id,
        },
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202, created["ResponseMetadata"]
    export_id = created["ExportJobResponse"]["Id"]
    print("ok  CreateExportJob", export_id)

    job = wait_for_job(pp.get_export_job, "ExportJobResponse", app_id, export_id)
    assert job["TotalProcessed"] == 3, job
    pieces = sorted(glob.glob(os.path.join(out, export_id, "*.gz")))
    assert pieces, f"no export pieces under {out}/{export_id}"
    ids = []
    for piece in pieces:
        with gzip.open(piece, "rt") as f:
            ids += [json.loads(line)["Id"] for line in f if line.strip()]
    assert sorted(ids) == ["boto3-ann", "boto3-bob", "boto3-cat"], ids
    print("ok  GetExportJob COMPLETED:", [os.path.basename(p) for p in pieces], sorted(ids))


def main(endpoint, key, secret, root):
    cfg = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
    pp = boto3.client(
        "pinpoint",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=cfg,
    )

    app = pp.create_app(CreateApplicationRequest={"Name": "boto3", "tags": {"team": "crm"}})
    app_id = app["ApplicationResponse"]["Id"]
    assert app["ResponseMetadata"]["HTTPStatusCode"] == 201
    print("ok  CreateApp", app_id)

    seg = pp.create_segment(
        ApplicationId=app_id,
        WriteSegmentRequest={
            "Name": "VIP",
            "Dimensions": {
                "Demographic": {"Platform": {"DimensionType": "INCLUSIVE", "Values": ["ios"]}},
                "Location": {"GPSPoint": {"Coordinates": {"Latitude": 47.6, "Longitude": -122.3}, "RangeInKilometers": 10}},
                "Metrics": {"spend": {"ComparisonOperator": "GREATER_THAN", "Value": 100.0}},
            },
            "tags": {"owner": "growth"},
        },
    )["SegmentResponse"]
    seg_id = seg["Id"]
    assert seg["Version"] == 1 and seg["SegmentType"] == "DIMENSIONAL", seg
    assert seg["tags"] == {"owner": "growth"}, seg
    print("ok  CreateSegment", seg_id)

    got = pp.get_segment(ApplicationId=app_id, SegmentId=seg_id)["SegmentResponse"]
    assert got["Dimensions"]["Location"]["GPSPoint"]["RangeInKilometers"] == 10, got
    print("ok  GetSegment")

    upd = pp.update_segment(
        ApplicationId=app_id,
        SegmentId=seg_id,
        WriteSegmentRequest={"Name": "VIP v2", "Dimensions": {"Location": {"Country": {"Values": ["US"]}}}},
    )["SegmentResponse"]
    assert upd["Version"] == 2 and upd["Name"] == "VIP v2", upd
    print("ok  UpdateSegment")

    listed = pp.get_segments(ApplicationId=app_id, PageSize="1")["SegmentsResponse"]
    assert [s["Id"] for s in listed["Item"]] == [seg_id] and "NextToken" not in listed, listed
    print("ok  GetSegments")

    versions = pp.get_segment_versions(ApplicationId=app_id, SegmentId=seg_id)["SegmentsResponse"]["Item"]
    assert [v["Version"] for v in versions] == [1, 2], versions
    v1 = pp.get_segment_version(ApplicationId=app_id, SegmentId=seg_id, Version="1")["SegmentResponse"]
    assert v1["Name"] == "VIP", v1
    print("ok  GetSegmentVersions / GetSegmentVersion")

    arn = seg["Arn"]
    pp.tag_resource(ResourceArn=arn, TagsModel={"tags": {"tier": "gold"}})
    pp.untag_resource(ResourceArn=arn, TagKeys=["owner"])
    tags = pp.list_tags_for_resource(ResourceArn=arn)["TagsModel"]["tags"]
    assert tags == {"tier": "gold"}, tags
    print("ok  TagResource / UntagResource / ListTagsForResource")

    expect_error("BadRequestException", 400, pp.create_segment, ApplicationId=app_id,
                 WriteSegmentRequest={"Dimensions": {"Location": {"GPSPoint": {"Coordinates": {"Latitude": 95, "Longitude": 0}}}}})
    expect_error("NotFoundException", 404, pp.get_segment, ApplicationId=app_id, SegmentId="0" * 32)
    bad = boto3.client("pinpoint", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id=key, aws_secret_access_key="wrong", config=cfg)
    expect_error("ForbiddenException", 403, bad.get_apps)

    deleted = pp.delete_segment(ApplicationId=app_id, SegmentId=seg_id)["SegmentResponse"]
    assert deleted["Id"] == seg_id
    expect_error("NotFoundException", 404, pp.get_segment, ApplicationId=app_id, SegmentId=seg_id)
    print("ok  DeleteSegment")

    import_and_export(pp, app_id, root)
    print("boto3 compatibility: all checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:5])
