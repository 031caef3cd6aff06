"""boto3's `customer-profiles` client against `segmentctl serve`, changing only the endpoint.

Usage: python boto3_profiles.py ENDPOINT_URL ACCESS_KEY_ID SECRET_ACCESS_KEY IMPORT_ROOT

IMPORT_ROOT is a folder the server was started with as `--import-root`: the snapshot is
written under it. Exits non-zero on the first mismatch. Run by tests/it/compat_boto3.rs.
"""

import glob
import gzip
import json
import os
import sys
import time

import boto3
import botocore.config


def expect(exception, fn, **kwargs):
    """Calls `fn`, which must raise the client's modelled `exception` (a typed class)."""
    try:
        fn(**kwargs)
    except exception as e:
        message = e.response["Error"]["Message"]
        assert message, f"{fn.__name__}: the error has no message"
        print(f"ok  {type(e).__name__}: {message}")
        return message
    raise AssertionError(f"{fn.__name__}: expected {exception.__name__}, got success")


def wait(fn, done, timeout=60, **kwargs):
    deadline = time.monotonic() + timeout
    while True:
        out = fn(**kwargs)
        if done(out):
            return out
        assert time.monotonic() < deadline, f"{fn.__name__}: not done after {timeout} s: {out}"
        time.sleep(0.1)


def main():
    endpoint, key, secret, root = sys.argv[1:5]
    config = botocore.config.Config(retries={"max_attempts": 1})
    cp = boto3.client("customer-profiles", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=key, aws_secret_access_key=secret, config=config)
    ex = cp.exceptions

    domain = cp.create_domain(DomainName="shop", DefaultExpirationDays=30, Tags={"team": "growth"})
    assert domain["DomainName"] == "shop" and domain["DefaultExpirationDays"] == 30, domain
    # botocore parses epoch seconds into datetimes.
    assert domain["CreatedAt"].year >= 2026, domain

    ids = {}
    for first, last, tier, city in [("Ada", "Lovelace", '["gold","vip"]', "London"),
                                    ("Ada", "Byron", "silver", "Paris"),
                                    ("Grace", "Hopper", "gold", "London")]:
        ids[last] = cp.create_profile(DomainName="shop", FirstName=first, LastName=last,
                                      BirthDate="1815-12-10", Attributes={"tier": tier},
                                      Address={"City": city})["ProfileId"]
    cp.update_profile(DomainName="shop", ProfileId=ids["Byron"], Attributes={"spend": "250"})
    found = cp.search_profiles(DomainName="shop", KeyName="_fullName", Values=["Ada Lovelace"])
    assert [p["ProfileId"] for p in found["Items"]] == [ids["Lovelace"]], found
    assert found["Items"][0]["FoundByItems"][0]["KeyName"] == "_fullName", found
    print("ok  profiles created, updated and searched")

    adas = {"Groups": [{"Dimensions": [{"ProfileAttributes": {
        "FirstName": {"DimensionType": "INCLUSIVE", "Values": ["Ada"]}}}]}]}
    every = {"Include": "ALL", "Groups": [{
        "SourceSegments": [{"SegmentDefinitionName": "adas"}], "SourceType": "ANY", "Type": "ALL",
        "Dimensions": [
            {"ProfileAttributes": {
                "LastName": {"DimensionType": "BEGINS_WITH", "Values": ["Love"]},
                "BirthDate": {"DimensionType": "ON", "Values": ["1815-12-10"]},
                "Address": {"City": {"DimensionType": "INCLUSIVE", "Values": ["London"]}},
                "Attributes": {"tier": {"DimensionType": "LIST_CONTAINS_ALL", "Values": ["gold", "vip"]}},
            }},
            {"CalculatedAttributes": {"_orders": {
                "DimensionType": "EXCLUSIVE", "Values": ["0"],
                "ConditionOverrides": {"Range": {"Start": 0, "End": 30, "Unit": "DAYS"}}}}},
        ]}]}
    cp.create_segment_definition(DomainName="shop", SegmentDefinitionName="adas",
                                 DisplayName="Adas", SegmentGroups=adas)
    created = cp.create_segment_definition(DomainName="shop", SegmentDefinitionName="vip",
                                           DisplayName="VIP", Description="every family",
                                           SegmentGroups=every, Tags={"segmentctl:name": "vip"})
    arn = created["SegmentDefinitionArn"]
    assert arn == "arn:aws:profile:us-east-1:000000000000:domains/shop/segment-definitions/vip", arn
    got = cp.get_segment_definition(DomainName="shop", SegmentDefinitionName="vip")
    assert got["SegmentGroups"] == every, got["SegmentGroups"]
    assert got["SegmentType"] == "CLASSIC", got
    for i in range(5):
        cp.create_segment_definition(DomainName="shop", SegmentDefinitionName=f"p{i}",
                                     DisplayName=f"p{i}", SegmentGroups=adas)
    pages = cp.get_paginator("list_segment_definitions").paginate(
        DomainName="shop", PaginationConfig={"PageSize": 2})
    names = [item["SegmentDefinitionName"] for page in pages for item in page["Items"]]
    assert names == ["adas", "vip", "p0", "p1", "p2", "p3", "p4"], names
    print("ok  definitions created, read back whole and listed in pages")

    estimate = cp.create_segment_estimate(DomainName="shop", SegmentQuery={
        "Groups": [{"SourceSegments": [{"SegmentDefinitionName": "vip"}]}]})
    done = wait(cp.get_segment_estimate, lambda o: o["Status"] != "RUNNING",
                DomainName="shop", EstimateId=estimate["EstimateId"])
    assert done["Status"] == "SUCCEEDED" and done["Estimate"] == "1", done

    member = cp.get_segment_membership(DomainName="shop", SegmentDefinitionName="adas",
                                       ProfileIds=[ids["Lovelace"], ids["Hopper"], "f" * 32])
    results = {p["ProfileId"]: p["QueryResult"] for p in member["Profiles"]}
    assert results == {ids["Lovelace"]: "PRESENT", ids["Hopper"]: "ABSENT"}, member
    assert member["Failures"][0]["ProfileId"] == "f" * 32, member

    destination = "file://" + os.path.join(root, "boto3-snapshots")
    snap = cp.create_segment_snapshot(DomainName="shop", SegmentDefinitionName="adas",
                                      DataFormat="JSONL", DestinationUri=destination)
    done = wait(cp.get_segment_snapshot, lambda o: o["Status"] != "IN_PROGRESS",
                DomainName="shop", SegmentDefinitionName="adas", SnapshotId=snap["SnapshotId"])
    assert done["Status"] == "COMPLETED", done
    written = set()
    for piece in glob.glob(os.path.join(root, "boto3-snapshots", snap["SnapshotId"], "*.jsonl.gz")):
        with gzip.open(piece, "rt") as f:
            written |= {json.loads(line)["ProfileId"] for line in f}
    assert written == {ids["Lovelace"], ids["Byron"]}, written
    print("ok  estimate, membership and snapshot")

    cp.tag_resource(resourceArn=arn, tags={"team": "growth", "tier": "gold"})
    cp.untag_resource(resourceArn=arn, tagKeys=["team"])
    tags = cp.list_tags_for_resource(resourceArn=arn)["tags"]
    assert tags == {"segmentctl:name": "vip", "tier": "gold"}, tags
    print("ok  tags")

    expect(ex.ResourceNotFoundException, cp.get_segment_definition,
           DomainName="shop", SegmentDefinitionName="absent")
    expect(ex.ResourceNotFoundException, cp.get_domain, DomainName="nowhere")
    message = expect(ex.BadRequestException, cp.create_segment_definition, DomainName="shop",
                     SegmentDefinitionName="vip", DisplayName="VIP", SegmentGroups=adas)
    assert "there is no update" in message, message
    expect(ex.BadRequestException, cp.create_segment_definition, DomainName="shop",
           SegmentDefinitionName="x", DisplayName="x", SegmentGroups={"Groups": [{"Dimensions": [
               {"ProfileAttributes": {"FirstName": {"DimensionType": "INCLUSIVE",
                                                    "Values": ["v"] * 51}}}]}]})
    wrong = boto3.client("customer-profiles", endpoint_url=endpoint, region_name="us-east-1",
                         aws_access_key_id=key, aws_secret_access_key="not-the-secret",
                         config=config)
    expect(wrong.exceptions.AccessDeniedException, wrong.list_domains)

    cp.delete_segment_definition(DomainName="shop", SegmentDefinitionName="vip")
    cp.delete_profile(DomainName="shop", ProfileId=ids["Hopper"])
    cp.delete_domain(DomainName="shop")
    expect(ex.ResourceNotFoundException, cp.get_domain, DomainName="shop")
    print("boto3 customer-profiles compatibility: all checks passed")


if __name__ == "__main__":
    main()
