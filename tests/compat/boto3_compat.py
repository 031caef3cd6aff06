"""A second real client against `segmentctl serve`: boto3, changing only the endpoint URL.

Usage: python boto3_compat.py ENDPOINT_URL ACCESS_KEY_ID SECRET_ACCESS_KEY

Exits non-zero on the first mismatch. Run by .ci/run against a server it starts.
"""

import sys

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


def main(endpoint, key, secret):
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
    print("boto3 compatibility: all checks passed")


if __name__ == "__main__":
    main(*sys.argv[1:4])
