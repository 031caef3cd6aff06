//! Endpoints, and import and export jobs over S3: the real `aws-sdk-pinpoint` and
//! `aws-sdk-s3` clients against `segmentctl serve` and a real S3-compatible server (moto's,
//! from PyPI) started by the test.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_pinpoint::error::ProvideErrorMetadata;
use aws_sdk_pinpoint::types::{
    ChannelType, EndpointBatchItem, EndpointBatchRequest, EndpointLocation, EndpointRequest,
    EndpointUser, ExportJobRequest, Format, ImportJobRequest, JobStatus,
};
use aws_sdk_pinpoint::Client;

use crate::util;

const MOTO: &str = "moto[server]==5.2.5";

/// An S3-compatible server (moto) on a loopback port, stopped on drop.
#[allow(dead_code)]
pub struct S3Store {
    child: Child,
    /// The store's URL, for clients configured by environment (AWS_ENDPOINT_URL_S3).
    pub endpoint: String,
    pub config: aws_sdk_s3::Config,
    pub client: aws_sdk_s3::Client,
}

impl Drop for S3Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3Store {
    pub async fn start() -> Self {
        let python = tokio::task::spawn_blocking(|| {
            crate::compat_boto3::python_with("moto-venv", &[MOTO], "moto")
        })
        .await
        .unwrap();
        // The port is free when chosen but taken by moto only after its imports: another
        // test's server may take it first. Then moto exits, and a new port is tried.
        for _attempt in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&python)
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto's S3 server");
            let endpoint = format!("http://127.0.0.1:{port}");
            let config = aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(&endpoint)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .force_path_style(true)
                .build();
            let client = aws_sdk_s3::Client::from_conf(config.clone());
            let start = Instant::now();
            // Ready when moto itself answers: ListBuckets succeeds and the child is alive.
            loop {
                if child.try_wait().expect("moto's status").is_some() {
                    break;
                }
                if client.list_buckets().send().await.is_ok() {
                    return Self {
                        child,
                        endpoint,
                        config,
                        client,
                    };
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "moto did not start"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto exited five times on a port it was given; is something binding ports?");
    }

    pub async fn bucket(&self, name: &str) {
        self.client
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .expect("CreateBucket");
    }

    pub async fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.into().into())
            .send()
            .await
            .expect("PutObject");
    }

    /// Every endpoint in the gzip NDJSON objects under `prefix`.
    pub async fn exported(&self, bucket: &str, prefix: &str) -> Vec<serde_json::Value> {
        let list = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("ListObjectsV2");
        let mut out = Vec::new();
        for o in list.contents() {
            let got = self
                .client
                .get_object()
                .bucket(bucket)
                .key(o.key().unwrap())
                .send()
                .await
                .unwrap();
            let bytes = got.body.collect().await.unwrap().into_bytes();
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut text)
                .expect("export pieces are gzip");
            for line in text.lines().filter(|l| !l.is_empty()) {
                out.push(serde_json::from_str(line).expect("a JSON endpoint per line"));
            }
        }
        out
    }
}

/// The message of a BadRequestException, failing on anything else.
fn bad_request<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, aws_sdk_pinpoint::error::SdkError<E>>,
) -> String {
    let err = r.expect_err("expected a 400");
    let e = err.as_service_error().expect("a modelled error");
    assert_eq!(e.code(), Some("BadRequestException"), "{err:?}");
    e.message().unwrap_or_default().to_string()
}

fn sms(address: &str) -> aws_sdk_pinpoint::types::builders::EndpointRequestBuilder {
    EndpointRequest::builder()
        .channel_type(ChannelType::Sms)
        .address(address)
}

async fn update(c: &Client, app: &str, id: &str, req: EndpointRequest) {
    c.update_endpoint()
        .application_id(app)
        .endpoint_id(id)
        .endpoint_request(req)
        .send()
        .await
        .expect("UpdateEndpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_created_merged_read_and_deleted() {
    let t = util::start().await;
    let app = t.app("endpoints").await;
    let c = &t.client;
    update(
        c,
        &app,
        "e1",
        sms("+15550100")
            .attributes("Tier", vec!["gold".into()])
            .attributes("Team", vec!["a".into(), "b".into()])
            .location(EndpointLocation::builder().country("CA").build())
            .user(EndpointUser::builder().user_id("u1").build())
            .build(),
    )
    .await;
    let first = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("e1")
        .send()
        .await
        .unwrap()
        .endpoint_response
        .unwrap();
    assert_eq!(first.address(), Some("+15550100"));
    assert_eq!(first.application_id(), Some(app.as_str()));
    assert_eq!(first.endpoint_status(), Some("ACTIVE"));
    let cohort: u32 = first.cohort_id().unwrap().parse().unwrap();
    assert!(cohort < 100);
    assert!(first.creation_date().is_some() && first.effective_date().is_some());
    tokio::time::sleep(Duration::from_millis(5)).await;
    // An update overwrites the attributes it names; the others stay.
    update(
        c,
        &app,
        "e1",
        EndpointRequest::builder()
            .attributes("Tier", vec!["silver".into()])
            .build(),
    )
    .await;
    let second = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("e1")
        .send()
        .await
        .unwrap()
        .endpoint_response
        .unwrap();
    let attrs = second.attributes().unwrap();
    assert_eq!(attrs["Tier"], vec!["silver".to_string()]);
    assert_eq!(attrs["Team"], vec!["a".to_string(), "b".to_string()]);
    assert_eq!(second.creation_date(), first.creation_date());
    assert_ne!(second.effective_date(), first.effective_date());
    assert_eq!(second.location().unwrap().country(), Some("CA"));
    // A batch, two more endpoints of the same user.
    let items = ["e2", "e3"]
        .iter()
        .map(|id| {
            EndpointBatchItem::builder()
                .id(*id)
                .channel_type(ChannelType::Email)
                .address(format!("{id}@example.com"))
                .user(EndpointUser::builder().user_id("u1").build())
                .build()
        })
        .collect::<Vec<_>>();
    c.update_endpoints_batch()
        .application_id(&app)
        .endpoint_batch_request(
            EndpointBatchRequest::builder()
                .set_item(Some(items))
                .build(),
        )
        .send()
        .await
        .expect("UpdateEndpointsBatch");
    let users = c
        .get_user_endpoints()
        .application_id(&app)
        .user_id("u1")
        .send()
        .await
        .unwrap()
        .endpoints_response
        .unwrap();
    let ids: Vec<&str> = users.item().iter().filter_map(|e| e.id()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    let gone = c
        .delete_endpoint()
        .application_id(&app)
        .endpoint_id("e2")
        .send()
        .await
        .unwrap()
        .endpoint_response
        .unwrap();
    assert_eq!(gone.id(), Some("e2"));
    let err = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("e2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().code(),
        Some("NotFoundException")
    );
    let deleted = c
        .delete_user_endpoints()
        .application_id(&app)
        .user_id("u1")
        .send()
        .await
        .unwrap()
        .endpoints_response
        .unwrap();
    assert_eq!(deleted.item().len(), 2);
    let err = c
        .get_user_endpoints()
        .application_id(&app)
        .user_id("u1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().code(),
        Some("NotFoundException")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_limit_is_a_400_naming_the_field() {
    let t = util::start().await;
    let app = t.app("limits").await;
    let c = &t.client;
    let put = |id: &str, req: EndpointRequest| {
        c.update_endpoint()
            .application_id(&app)
            .endpoint_id(id)
            .endpoint_request(req)
            .send()
    };
    let values: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    assert_eq!(
        bad_request(put("x", sms("+1").attributes("k", values).build()).await),
        "Attributes.k: at most 50 values per attribute, found 51"
    );
    assert!(bad_request(
        put(
            "x",
            sms("+1").attributes("k", vec!["v".repeat(101)]).build()
        )
        .await
    )
    .starts_with("Attributes.k: a value is at most 100 characters"));
    assert!(bad_request(
        put(
            "x",
            sms("+1")
                .attributes("n".repeat(51), vec!["v".into()])
                .build()
        )
        .await
    )
    .starts_with("Attributes: an attribute name is 1 to 50 characters"));
    assert!(
        bad_request(put("x", sms(&"9".repeat(16 * 1024)).build()).await)
            .starts_with("Endpoint: an endpoint is at most 15 KB")
    );
    // 15 endpoints per user; the 16th is refused.
    for i in 0..15 {
        put(
            &format!("u{i}"),
            sms("+1")
                .user(EndpointUser::builder().user_id("busy").build())
                .build(),
        )
        .await
        .unwrap();
    }
    assert!(bad_request(
        put(
            "u15",
            sms("+1")
                .user(EndpointUser::builder().user_id("busy").build())
                .build()
        )
        .await
    )
    .starts_with("User.UserId: a user has at most 15 endpoints; \"busy\" already has 15"));
    // 250 attribute names per application; the 251st is refused, naming it.
    for e in 0..5 {
        let mut b = sms("+1");
        for a in 0..50 {
            b = b.attributes(format!("a{e}_{a}"), vec!["v".into()]);
        }
        put(&format!("wide{e}"), b.build()).await.unwrap();
    }
    assert!(
        bad_request(put("wide5", sms("+1").metrics("one_more", 1.0).build()).await)
            .starts_with("Metrics.one_more: an application has at most 250 custom attributes")
    );
    // A name no endpoint uses any more is freed: once one of the wide endpoints is deleted,
    // its 50 names are available again.
    c.delete_endpoint()
        .application_id(&app)
        .endpoint_id("wide0")
        .send()
        .await
        .unwrap();
    put("wide5", sms("+1").metrics("one_more", 1.0).build())
        .await
        .expect("a freed name makes room");
    // 201 names are in use now: 49 more fit, the 50th does not.
    let wide = |n: usize| {
        let mut b = sms("+1");
        for a in 0..n {
            b = b.attributes(format!("again_{a}"), vec!["v".into()]);
        }
        b.build()
    };
    assert!(bad_request(put("wide0", wide(50)).await)
        .contains("an application has at most 250 custom attributes"));
    put("wide0", wide(49)).await.expect("49 more fit");
    // A batch: at most 100 items, each named by its index.
    let item = |i: usize| {
        EndpointBatchItem::builder()
            .id(format!("b{i}"))
            .channel_type(ChannelType::Sms)
            .address("+1")
            .build()
    };
    let batch = |n: usize| {
        c.update_endpoints_batch()
            .application_id(&app)
            .endpoint_batch_request(
                EndpointBatchRequest::builder()
                    .set_item(Some((0..n).map(item).collect()))
                    .build(),
            )
            .send()
    };
    assert_eq!(
        bad_request(batch(101).await),
        "Item: expected 1 to 100 endpoints, found 101"
    );
    batch(100).await.expect("100 items are accepted");
    let mut items: Vec<EndpointBatchItem> = (0..3).map(item).collect();
    items[2] = EndpointBatchItem::builder()
        .id("b2")
        .channel_type(ChannelType::Sms)
        .attributes("k", (0..51).map(|i| i.to_string()).collect())
        .build();
    assert_eq!(
        bad_request(
            c.update_endpoints_batch()
                .application_id(&app)
                .endpoint_batch_request(
                    EndpointBatchRequest::builder()
                        .set_item(Some(items))
                        .build()
                )
                .send()
                .await
        ),
        "Item[2].Attributes.k: at most 50 values per attribute, found 51"
    );
}

/// An import job as it stands.
pub async fn import_job(
    c: &Client,
    app: &str,
    id: &str,
) -> aws_sdk_pinpoint::types::ImportJobResponse {
    c.get_import_job()
        .application_id(app)
        .job_id(id)
        .send()
        .await
        .expect("GetImportJob")
        .import_job_response
        .unwrap()
}

/// Waits for an import job to finish; returns it.
pub async fn import_done(
    c: &Client,
    app: &str,
    id: &str,
) -> aws_sdk_pinpoint::types::ImportJobResponse {
    let start = Instant::now();
    loop {
        let job = import_job(c, app, id).await;
        if matches!(
            job.job_status(),
            Some(JobStatus::Completed | JobStatus::Failed)
        ) {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the import did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn export_done(
    c: &Client,
    app: &str,
    id: &str,
) -> aws_sdk_pinpoint::types::ExportJobResponse {
    let start = Instant::now();
    loop {
        let job = c
            .get_export_job()
            .application_id(app)
            .job_id(id)
            .send()
            .await
            .expect("GetExportJob")
            .export_job_response
            .unwrap();
        if matches!(
            job.job_status(),
            Some(JobStatus::Completed | JobStatus::Failed)
        ) {
            return job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the export did not finish: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn import(
    c: &Client,
    app: &str,
    url: &str,
    format: Format,
    name: Option<&str>,
    segment: Option<&str>,
) -> aws_sdk_pinpoint::types::ImportJobResponse {
    let job = c
        .create_import_job()
        .application_id(app)
        .import_job_request(
            ImportJobRequest::builder()
                .s3_url(url)
                .format(format)
                .role_arn("arn:aws:iam::000000000000:role/import")
                .define_segment(name.is_some())
                .set_segment_name(name.map(String::from))
                .set_segment_id(segment.map(String::from))
                .build(),
        )
        .send()
        .await
        .expect("CreateImportJob")
        .import_job_response
        .unwrap();
    import_done(c, app, job.id().unwrap()).await
}

pub async fn export(
    c: &Client,
    app: &str,
    prefix: &str,
    segment: Option<&str>,
) -> aws_sdk_pinpoint::types::ExportJobResponse {
    let job = c
        .create_export_job()
        .application_id(app)
        .export_job_request(
            ExportJobRequest::builder()
                .s3_url_prefix(prefix)
                .role_arn("arn:aws:iam::000000000000:role/export")
                .set_segment_id(segment.map(String::from))
                .build(),
        )
        .send()
        .await
        .expect("CreateExportJob")
        .export_job_response
        .unwrap();
    export_done(c, app, job.id().unwrap()).await
}

const VIP_CSV: &str = "\
ChannelType,Address,Id,Location.Country,Attributes.Tier,User.UserId
SMS,+15550101,vip-1,CA,gold,
SMS,+15550102,vip-2,US,gold,
EMAIL,a@example.com,vip-3,CA,\"silver, or so\",
FAX,+15550104,vip-4,CA,gold,
EMAIL,,vip-5,CA,gold,
SMS,+15550106,,MX,gold,
EMAIL,b@example.com,vip-7,CA,gold,u-7
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_from_s3_make_import_segments_and_exports_return_their_members() {
    let s3 = S3Store::start().await;
    s3.bucket("audiences").await;
    s3.bucket("exports").await;
    s3.put("audiences", "vip.csv", VIP_CSV).await;
    s3.put(
        "audiences",
        "json/part-1.json",
        "{\"ChannelType\":\"SMS\",\"Address\":\"+1\",\"Id\":\"j-1\",\"Location\":{\"Country\":\"CA\"}}\n\
         not json\n\
         {\"ChannelType\":\"EMAIL\",\"Address\":\"c@example.com\",\"Id\":\"j-2\"}\n",
    )
    .await;
    s3.put(
        "audiences",
        "json/part-2.json",
        "{\"ChannelType\":\"SMS\",\"Address\":\"+3\",\"Id\":\"j-3\",\"EffectiveDate\":\"2026-01-01T00:00:00Z\"}\n\
         {\"ChannelType\":\"SMS\",\"Address\":\"+4\",\"Id\":\"j-4\",\"Location\":{\"Country\":\"US\"}}\n",
    )
    .await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"{\"ChannelType\":\"SMS\",\"Address\":\"+5\"}\n").unwrap();
    s3.put("audiences", "json/part-3.json.gz", gz.finish().unwrap())
        .await;
    let config = s3.config.clone();
    let t = util::start_with(move |cfg| cfg.s3 = Some(config)).await;
    let app = t.app("imports").await;
    let c = &t.client;
    // An endpoint registered before, of a user the file lists: a member too.
    update(
        c,
        &app,
        "pre-7",
        sms("+15550107")
            .user(EndpointUser::builder().user_id("u-7").build())
            .build(),
    )
    .await;

    // CSV, by object: bad rows fail alone, named by file and line.
    let job = import(
        c,
        &app,
        "s3://audiences/vip.csv",
        Format::Csv,
        Some("VIP"),
        None,
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert_eq!(job.total_processed(), Some(7));
    assert_eq!(job.total_failures(), Some(2));
    assert_eq!(
        (
            job.total_pieces(),
            job.completed_pieces(),
            job.failed_pieces()
        ),
        (Some(1), Some(1), Some(0))
    );
    let failures = job.failures();
    assert!(
        failures[0].starts_with("s3://audiences/vip.csv:5: ChannelType: unknown value \"…\""),
        "{failures:?}"
    );
    assert!(
        failures[1].starts_with("s3://audiences/vip.csv:6: Address: missing required member"),
        "{failures:?}"
    );
    let vip = job.definition().unwrap().segment_id().unwrap().to_string();
    let seg = c
        .get_segment()
        .application_id(&app)
        .segment_id(&vip)
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!(seg.segment_type().map(|t| t.as_str()), Some("IMPORT"));
    assert_eq!(seg.name(), Some("VIP"));
    let def = seg.import_definition().unwrap();
    assert_eq!(def.size(), Some(6), "5 rows and the user's other endpoint");
    assert_eq!(def.s3_url(), Some("s3://audiences/vip.csv"));
    assert_eq!(def.format(), Some(&Format::Csv));
    let counts = def.channel_counts().unwrap();
    assert_eq!((counts["SMS"], counts["EMAIL"]), (4, 2));
    // The rows were registered as endpoints, the derived id stable.
    let derived = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("vip-3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        derived.endpoint_response.unwrap().attributes().unwrap()["Tier"],
        vec!["silver, or so".to_string()]
    );
    // An import updates only IMPORT segments; UpdateSegment never changes one.
    let err = c
        .update_segment()
        .application_id(&app)
        .segment_id(&vip)
        .write_segment_request(util::named("renamed"))
        .send()
        .await;
    assert!(bad_request(err).contains("is an IMPORT segment"));

    // JSON, by folder (prefix): the compressed file fails as a piece.
    let job = import(
        c,
        &app,
        "s3://audiences/json/",
        Format::Json,
        Some("From JSON"),
        None,
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert_eq!(
        (
            job.total_pieces(),
            job.completed_pieces(),
            job.failed_pieces()
        ),
        (Some(3), Some(2), Some(1))
    );
    let failures = job.failures().join("\n");
    assert!(
        failures.contains("s3://audiences/json/part-1.json:2: "),
        "{failures}"
    );
    assert!(
        failures
            .contains("s3://audiences/json/part-2.json:1: EffectiveDate: an import may not set it"),
        "{failures}"
    );
    assert!(
        failures.contains("s3://audiences/json/part-3.json.gz: compressed files are not accepted"),
        "{failures}"
    );
    let from_json = job.definition().unwrap().segment_id().unwrap().to_string();

    // Re-import into the VIP segment: a new version with the new file's members.
    s3.put(
        "audiences",
        "vip-2.csv",
        "ChannelType,Address,Id\nSMS,+1,vip-1\nSMS,+2,vip-9\n",
    )
    .await;
    let job = import(
        c,
        &app,
        "s3://audiences/vip-2.csv",
        Format::Csv,
        None,
        Some(&vip),
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    let seg = c
        .get_segment()
        .application_id(&app)
        .segment_id(&vip)
        .send()
        .await
        .unwrap()
        .segment_response
        .unwrap();
    assert_eq!(seg.version(), Some(2));
    assert_eq!(seg.name(), Some("VIP"));
    assert_eq!(seg.import_definition().unwrap().size(), Some(2));
    let jobs = c
        .get_segment_import_jobs()
        .application_id(&app)
        .segment_id(&vip)
        .send()
        .await
        .unwrap();
    assert_eq!(jobs.import_jobs_response.unwrap().item().len(), 2);

    // The export of an IMPORT segment: exactly its members.
    let job = export(c, &app, "s3://exports/vip/", Some(&vip)).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert_eq!(job.total_processed(), Some(2));
    let got = s3
        .exported("exports", &format!("vip/{}/", job.id().unwrap()))
        .await;
    let ids: BTreeSet<&str> = got.iter().filter_map(|e| e["Id"].as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["vip-1", "vip-9"]));
    let listed = c
        .get_segment_export_jobs()
        .application_id(&app)
        .segment_id(&vip)
        .send()
        .await
        .unwrap();
    let listed = listed.export_jobs_response.unwrap();
    assert_eq!(listed.item().len(), 1);
    assert_eq!(listed.item()[0].id(), job.id());

    // A dimensional segment on the imported base: its export is the base's members that
    // match (the JSON import: j-1 CA, j-2 none, j-4 US).
    let dim = util::create_segment(
        c,
        &app,
        util::built_on("JSON in CA", &from_json)
            .segment_groups(
                aws_sdk_pinpoint::types::SegmentGroupList::builder()
                    .groups(
                        aws_sdk_pinpoint::types::SegmentGroup::builder()
                            .source_segments(
                                aws_sdk_pinpoint::types::SegmentReference::builder()
                                    .id(&from_json)
                                    .build(),
                            )
                            .dimensions(
                                aws_sdk_pinpoint::types::SegmentDimensions::builder()
                                    .location(
                                        aws_sdk_pinpoint::types::SegmentLocation::builder()
                                            .country(
                                                aws_sdk_pinpoint::types::SetDimension::builder()
                                                    .values("CA")
                                                    .build(),
                                            )
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build(),
    )
    .await;
    let job = export(c, &app, "s3://exports/dim", Some(&dim)).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    let got = s3
        .exported("exports", &format!("dim/{}/", job.id().unwrap()))
        .await;
    let ids: Vec<&str> = got.iter().filter_map(|e| e["Id"].as_str()).collect();
    assert_eq!(ids, ["j-1"]);
    // Without SegmentId: every endpoint.
    let job = export(c, &app, "s3://exports/all/", None).await;
    let all = s3
        .exported("exports", &format!("all/{}/", job.id().unwrap()))
        .await;
    assert_eq!(all.len() as i32, job.total_processed().unwrap());
    assert_eq!(
        all.len(),
        10,
        "pre-7, 6 from the CSV (vip-9 added), 3 from JSON"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_requests_are_checked_before_a_job_is_made() {
    let t = util::start().await;
    let app = t.app("bad-imports").await;
    let c = &t.client;
    let req = |url: &str, format: Format| {
        c.create_import_job()
            .application_id(&app)
            .import_job_request(
                ImportJobRequest::builder()
                    .s3_url(url)
                    .format(format)
                    .role_arn("r")
                    .define_segment(true)
                    .segment_name("x")
                    .build(),
            )
            .send()
    };
    assert!(
        bad_request(req("https://example.com/a.csv", Format::Csv).await).starts_with("S3Url: ")
    );
    assert!(bad_request(req("s3:///a.csv", Format::Csv).await).contains("no bucket"));
    // file:// only inside --import-root; this server has none: the job fails, saying why.
    let job = req("file:///etc/passwd", Format::Csv)
        .await
        .unwrap()
        .import_job_response
        .unwrap();
    let job = import_done(c, &app, job.id().unwrap()).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Failed));
    assert!(
        job.failures()[0].contains("only inside --import-root"),
        "{:?}",
        job.failures()
    );
    let dim = util::create_segment(c, &app, util::named("dim")).await;
    let err = c
        .create_import_job()
        .application_id(&app)
        .import_job_request(
            ImportJobRequest::builder()
                .s3_url("s3://b/k")
                .format(Format::Csv)
                .role_arn("r")
                .segment_id(&dim)
                .build(),
        )
        .send()
        .await;
    assert!(bad_request(err).contains("is DIMENSIONAL"));
    // Every string a job keeps is bounded, as a segment's Name is at CreateSegment.
    let long = |n: usize| "n".repeat(n);
    let bounded = |name: String, role: String, external: String, url: String| {
        c.create_import_job()
            .application_id(&app)
            .import_job_request(
                ImportJobRequest::builder()
                    .s3_url(url)
                    .format(Format::Csv)
                    .role_arn(role)
                    .external_id(external)
                    .define_segment(true)
                    .segment_name(name)
                    .build(),
            )
            .send()
    };
    let ok = || {
        (
            long(1024),
            long(2048),
            long(1224),
            format!("s3://b/{}", long(4089)),
        )
    };
    let (name, role, external, url) = ok();
    assert!(
        bounded(name, role, external, url).await.is_ok(),
        "each at its limit"
    );
    let (_, role, external, url) = ok();
    assert_eq!(
        bad_request(bounded(long(1025), role, external, url).await),
        "SegmentName: is 1025 characters long; at most 1024 are accepted"
    );
    let (name, _, external, url) = ok();
    assert_eq!(
        bad_request(bounded(name, long(2049), external, url).await),
        "RoleArn: is 2049 characters long; at most 2048 are accepted"
    );
    let (name, role, _, url) = ok();
    assert_eq!(
        bad_request(bounded(name, role, long(1225), url).await),
        "ExternalId: is 1225 characters long; at most 1224 are accepted"
    );
    let (name, role, external, _) = ok();
    assert_eq!(
        bad_request(bounded(name, role, external, format!("s3://b/{}", long(4090))).await),
        "S3Url: is 4097 characters long; at most 4096 are accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_over_1_gb_fails_before_reading_and_names_the_size() {
    let root = tempfile::tempdir().unwrap();
    // A sparse file: 1 GB and one byte, without writing them.
    let big = root.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1024 * 1024 * 1024 + 1)
        .unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("big").await;
    let job = import(
        &t.client,
        &app,
        &format!("file://{}", big.display()),
        Format::Json,
        Some("big"),
        None,
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Failed));
    assert!(
        job.failures()[0].contains("an import job reads at most 1 GB"),
        "{:?}",
        job.failures()
    );
    assert_eq!(job.total_processed(), Some(0), "nothing was read");
    let segs = t
        .client
        .get_segments()
        .application_id(&app)
        .send()
        .await
        .unwrap();
    assert!(
        segs.segments_response.unwrap().item().is_empty(),
        "no segment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_cut_short_by_sigkill_completes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = crate::pg::data_for(dir.path());
    // Enough rows that the kill lands mid-import (PostgreSQL imports them more slowly).
    let rows = if crate::pg::backend_is_postgres() {
        30_000
    } else {
        120_000
    };
    let mut file = String::with_capacity(rows * 120);
    for i in 0..rows {
        file.push_str(&format!(
            "{{\"ChannelType\":\"SMS\",\"Address\":\"+1555{i:07}\",\"Id\":\"e{i}\",\"Location\":{{\"Country\":\"CA\"}},\"Attributes\":{{\"n\":[\"{i}\"]}}}}\n"
        ));
    }
    let input = dir.path().join("big.json");
    std::fs::write(&input, file).unwrap();
    let url = format!("file://{}", input.display());
    let spawn = || {
        crate::server_crash::spawn_server_with(
            &data,
            // A short lease: on PostgreSQL the restarted server takes the job over once
            // its dead predecessor's lease runs out (SQLite's only server takes it at once).
            &[
                "--import-root",
                dir.path().to_str().unwrap(),
                "--job-lease",
                "2s",
            ],
        )
    };
    let (mut child, endpoint) = spawn();
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        util::KEY,
        util::SECRET,
        3,
    );
    let app = util::create_app(&client, "crash").await;
    let job = client
        .create_import_job()
        .application_id(&app)
        .import_job_request(
            ImportJobRequest::builder()
                .s3_url(&url)
                .format(Format::Json)
                .role_arn("r")
                .define_segment(true)
                .segment_name("big")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .import_job_response
        .unwrap();
    // Killed once some rows are in, well before the end.
    let start = Instant::now();
    loop {
        let j = import_job(&client, &app, job.id().unwrap()).await;
        let n = j.total_processed().unwrap_or(0);
        assert!(
            n < rows as i32,
            "the import finished before the kill; make the file bigger"
        );
        if n > 0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, endpoint) = spawn();
    let client = segmentctl::targets::pinpoint::convert::endpoint_client(
        &endpoint,
        "us-east-1",
        util::KEY,
        util::SECRET,
        3,
    );
    let done = import_done(&client, &app, job.id().unwrap()).await;
    assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
    assert_eq!(done.total_processed(), Some(rows as i32));
    let seg = done.definition().unwrap().segment_id().unwrap();
    let seg = client
        .get_segment()
        .application_id(&app)
        .segment_id(seg)
        .send()
        .await
        .unwrap();
    assert_eq!(
        seg.segment_response
            .unwrap()
            .import_definition()
            .unwrap()
            .size(),
        Some(rows as i32)
    );
    let segs = client
        .get_segments()
        .application_id(&app)
        .send()
        .await
        .unwrap();
    assert_eq!(
        segs.segments_response.unwrap().item().len(),
        1,
        "one segment, not one per run"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Rows of one CSV file imported through `file://`: the finished job.
async fn import_text(
    t: &util::TestServer,
    root: &std::path::Path,
    app: &str,
    name: &str,
    body: &[u8],
) -> aws_sdk_pinpoint::types::ImportJobResponse {
    let path = root.join(name);
    std::fs::write(&path, body).unwrap();
    import(
        &t.client,
        app,
        &format!("file://{}", path.display()),
        if name.ends_with(".csv") {
            Format::Csv
        } else {
            Format::Json
        },
        Some(name),
        None,
    )
    .await
}

async fn exists(c: &Client, app: &str, id: &str) -> bool {
    c.get_endpoint()
        .application_id(app)
        .endpoint_id(id)
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_import_files_fail_row_by_row_and_never_take_the_server_down() {
    let root = tempfile::tempdir().unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("hostile").await;
    let c = &t.client;

    // A row that is not UTF-8 fails alone; the rows around it are imported.
    let job = import_text(
        &t,
        root.path(),
        &app,
        "utf8.csv",
        b"ChannelType,Address,Id\nSMS,+1,u1\nSMS,\xff\xfe,u2\nSMS,+3,u3\n",
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert!(
        job.failures()[0].ends_with("utf8.csv:3: not UTF-8 text"),
        "{:?}",
        job.failures()
    );
    assert!(exists(c, &app, "u1").await && exists(c, &app, "u3").await);

    // A quote inside an unquoted field opens nothing; a BOM before the header is dropped.
    let job = import_text(
        &t,
        root.path(),
        &app,
        "quote.csv",
        "\u{feff}ChannelType,Address,Id,Attributes.Screen\nSMS,+1,q1,5\" screen\nSMS,+2,q2,x\n"
            .as_bytes(),
    )
    .await;
    assert_eq!(
        (job.total_processed(), job.total_failures()),
        (Some(2), Some(0)),
        "{job:?}"
    );
    let q1 = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("q1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        q1.endpoint_response.unwrap().attributes().unwrap()["Screen"],
        vec!["5\" screen".to_string()]
    );
    assert!(exists(c, &app, "q2").await);

    // A quoted field left open: a failed row, not a value swallowing the rest of the file.
    let job = import_text(&t, root.path(), &app, "open.csv", b"ChannelType,Address,Id,Attributes.a\nSMS,+1,o1,ok\nSMS,+2,o2,\"unterminated\nSMS,+3,o3,x\n").await;
    assert!(
        job.failures()[0]
            .ends_with("open.csv:3: a quoted field is not closed before the end of the file"),
        "{:?}",
        job.failures()
    );
    assert!(exists(c, &app, "o1").await && !exists(c, &app, "o2").await);

    // An open quote followed by 70,000 empty lines: one failed row once it passes 64 KiB;
    // the rows after it are read.
    let mut text = b"ChannelType,Address,Id\nSMS,+1,\"".to_vec();
    text.extend(std::iter::repeat_n(b'\n', 70_000));
    text.extend(b"SMS,+2,after\n");
    let job = import_text(&t, root.path(), &app, "long.csv", &text).await;
    assert!(
        job.failures()
            .iter()
            .any(|f| f.contains("longer than 65536 bytes")),
        "{:?}",
        job.failures()
    );
    assert!(exists(c, &app, "after").await);

    // A row naming an existing endpoint by Id updates it without ChannelType and Address; a
    // new one needs them.
    let job = import_text(&t, root.path(), &app, "update.json", b"{\"Id\":\"u1\",\"Attributes\":{\"tier\":[\"gold\"]}}\n{\"Id\":\"nobody\",\"Attributes\":{\"tier\":[\"gold\"]}}\n").await;
    assert_eq!(job.total_failures(), Some(1), "{job:?}");
    assert!(job.failures()[0].contains("update.json:2: ChannelType: missing required member (a new endpoint needs ChannelType and Address)"), "{:?}", job.failures());
    let u1 = c
        .get_endpoint()
        .application_id(&app)
        .endpoint_id("u1")
        .send()
        .await
        .unwrap();
    let u1 = u1.endpoint_response.unwrap();
    assert_eq!(
        (u1.address(), u1.attributes().unwrap()["tier"].clone()),
        (Some("+1"), vec!["gold".to_string()])
    );

    // `.` and `..` name path segments: refused as ids.
    let err = c
        .update_endpoints_batch()
        .application_id(&app)
        .endpoint_batch_request(
            EndpointBatchRequest::builder()
                .item(
                    EndpointBatchItem::builder()
                        .id("..")
                        .channel_type(ChannelType::Sms)
                        .address("+1")
                        .build(),
                )
                .build(),
        )
        .send()
        .await;
    assert!(bad_request(err).starts_with("Item[0].Id: expected 1 to 128 characters"));

    // Folders nested past 32 levels: the job fails, the server stays up.
    let mut deep = root.path().join("deep");
    for i in 0..40 {
        deep = deep.join(format!("d{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("x.json"), "{}\n").unwrap();
    let job = import(
        c,
        &app,
        &format!("file://{}/deep/", root.path().display()),
        Format::Json,
        Some("deep"),
        None,
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Failed));
    assert!(
        job.failures()[0].contains("nest deeper than 32 levels"),
        "{:?}",
        job.failures()
    );
    assert!(exists(c, &app, "u1").await, "the server still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_application_stops_its_import_and_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let mut file = String::new();
    for i in 0..60_000 {
        file.push_str(&format!("{{\"ChannelType\":\"SMS\",\"Address\":\"+{i}\",\"Id\":\"e{i}\",\"Attributes\":{{\"k\":[\"v\"]}}}}\n"));
    }
    std::fs::write(root.path().join("big.json"), file).unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("doomed").await;
    let c = &t.client;
    let job = c
        .create_import_job()
        .application_id(&app)
        .import_job_request(
            ImportJobRequest::builder()
                .s3_url(format!("file://{}/big.json", root.path().display()))
                .format(Format::Json)
                .role_arn("r")
                .define_segment(true)
                .segment_name("doomed")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .import_job_response
        .unwrap();
    // Deleted while the import is under way: some rows in, not all.
    let start = Instant::now();
    loop {
        let n = import_job(c, &app, job.id().unwrap())
            .await
            .total_processed()
            .unwrap_or(0);
        assert!(
            n < 60_000,
            "the import finished before the delete; make the file bigger"
        );
        if n > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the import never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.delete_app().application_id(&app).send().await.unwrap();
    let count = |table: &str| -> i64 {
        crate::pg::query_i64(&t.data, &format!("SELECT COUNT(*) FROM {table}"))
    };
    let start = Instant::now();
    while count("endpoints")
        + count("segment_members")
        + count("attribute_names")
        + count("segments")
        > 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rows left: endpoints {}, segment_members (staged) {}, attribute_names {}, segments {}",
            count("endpoints"),
            count("segment_members"),
            count("attribute_names"),
            count("segments")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An S3 read is pinned to what the listing saw: an object replaced after it is refused
/// (If-Match on the listed ETag) and never more than its listed size is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_object_replaced_after_the_listing_is_not_read() {
    use tokio::io::AsyncReadExt as _;
    let s3 = S3Store::start().await;
    s3.bucket("pinned").await;
    s3.put("pinned", "in/a.csv", "ChannelType,Address\nSMS,+1\n")
        .await;
    let objects =
        segmentctl::server::objects::Objects::new(vec![], Some(s3.config.clone()), "us-east-1");
    let loc = segmentctl::server::objects::parse("s3://pinned/in/").unwrap();
    let listed = objects.list(&loc).await.unwrap();
    assert_eq!(listed.len(), 1);
    // Read as listed.
    let mut text = String::new();
    objects
        .open(&listed[0])
        .await
        .unwrap()
        .read_to_string(&mut text)
        .await
        .unwrap();
    assert_eq!(text, "ChannelType,Address\nSMS,+1\n");
    // Replaced with something far larger after the listing.
    s3.put("pinned", "in/a.csv", "ChannelType,Address\n".repeat(10_000))
        .await;
    let err = objects
        .open(&listed[0])
        .await
        .err()
        .expect("the replaced object is refused");
    assert!(err.contains("replaced since the job listed it"), "{err}");
}

/// A folder of more objects than one listing page holds (S3 gives at most 1,000 keys a
/// page) is listed whole, in key order: every page is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_folder_of_more_than_one_listing_page_is_listed_whole() {
    let s3 = S3Store::start().await;
    s3.bucket("paged").await;
    let keys: Vec<String> = (0..1_001).map(|i| format!("in/{i:04}.csv")).collect();
    // Put eight at a time.
    let mut puts = tokio::task::JoinSet::new();
    for (w, part) in keys.chunks(keys.len().div_ceil(8)).enumerate() {
        let (client, part) = (s3.client.clone(), part.to_vec());
        puts.spawn(async move {
            for k in part {
                client
                    .put_object()
                    .bucket("paged")
                    .key(k)
                    .body(
                        format!("ChannelType,Address\nSMS,+{w}\n")
                            .into_bytes()
                            .into(),
                    )
                    .send()
                    .await
                    .expect("PutObject");
            }
        });
    }
    while let Some(put) = puts.join_next().await {
        put.unwrap();
    }
    let objects =
        segmentctl::server::objects::Objects::new(vec![], Some(s3.config.clone()), "us-east-1");
    let loc = segmentctl::server::objects::parse("s3://paged/in/").unwrap();
    let listed: Vec<String> = objects
        .list(&loc)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    let expected: Vec<String> = keys.iter().map(|k| format!("s3://paged/{k}")).collect();
    assert_eq!(listed.len(), 1_001);
    assert_eq!(listed, expected);
}

/// `--s3-allow`: a job may name only the buckets and prefixes given; an object elsewhere
/// (one the server's credentials can read) is neither read nor quoted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_allow_a_job_reads_and_writes_only_the_buckets_given() {
    let s3 = S3Store::start().await;
    s3.bucket("audiences").await;
    s3.bucket("secrets").await;
    s3.put(
        "audiences",
        "ok/vip.csv",
        "ChannelType,Address\nSMS,+15550101\n",
    )
    .await;
    s3.put("secrets", "env.csv", "AWS_SECRET_ACCESS_KEY=sekrit\n")
        .await;
    let config = s3.config.clone();
    let t = util::start_with(move |cfg| {
        cfg.s3 = Some(config);
        cfg.s3_allow = vec!["audiences/ok".into()];
    })
    .await;
    let app = t.app("allow").await;
    let c = &t.client;
    let job = import(
        c,
        &app,
        "s3://audiences/ok/vip.csv",
        Format::Csv,
        Some("OK"),
        None,
    )
    .await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    for url in [
        "s3://secrets/env.csv",
        "s3://audiences/okay.csv",
        "s3://audiences/other/x.csv",
    ] {
        let job = import(c, &app, url, Format::Csv, Some("No"), None).await;
        assert_eq!(job.job_status(), Some(&JobStatus::Failed), "{url}: {job:?}");
        let failures = job.failures().join("\n");
        assert!(
            failures.contains("outside the buckets and prefixes this server may use (--s3-allow)"),
            "{url}: {failures}"
        );
        assert!(!failures.contains("sekrit"), "{failures}");
    }
    // Without --s3-allow the secret's first line is never quoted either.
    let config = s3.config.clone();
    let open = util::start_with(move |cfg| cfg.s3 = Some(config)).await;
    let app = open.app("open").await;
    let job = import(
        &open.client,
        &app,
        "s3://secrets/env.csv",
        Format::Csv,
        Some("S"),
        None,
    )
    .await;
    let failures = job.failures().join("\n");
    assert!(failures.contains("column 1 of the header"), "{failures}");
    assert!(
        !failures.contains("sekrit") && !failures.contains("AWS_SECRET"),
        "{failures}"
    );
}

/// Rows an import commits at once on the suite's database: the tests below place rows on both
/// sides of a batch's end.
fn batch() -> usize {
    use segmentctl::server::store::sql::Dialect;
    segmentctl::server::jobs::import_batch_rows(match crate::pg::backend_is_postgres() {
        true => Dialect::Postgres,
        false => Dialect::Sqlite,
    })
}

/// One row of the batch file below: its text, and the endpoint id it registers (None: the
/// row is refused).
fn batch_row(i: usize) -> (String, Option<String>) {
    let plain = |id: String| {
        let row = format!(r#"{{"Id":"{id}","ChannelType":"SMS","Address":"+{id}"}}"#);
        (row, Some(id))
    };
    let crowd = |k: usize| {
        let row = format!(
            r#"{{"Id":"c{k}","ChannelType":"SMS","Address":"+c{k}","User":{{"UserId":"crowd"}}}}"#
        );
        (row, Some(format!("c{k}")))
    };
    let text = |row: &str, id: Option<&str>| (row.to_string(), id.map(String::from));
    match i {
        // Line 10 and line 20 write one endpoint: the second merges into the first.
        9 => text(
            r#"{"Id":"dup","ChannelType":"SMS","Address":"+1","Location":{"Country":"CA"},"Attributes":{"a":["1"]}}"#,
            Some("dup"),
        ),
        19 => text(
            r#"{"Id":"dup","Address":"+2","Attributes":{"b":["2"]}}"#,
            Some("dup"),
        ),
        // A new endpoint without an address, in the middle of the first batch.
        499 => text(r#"{"Id":"noaddr","ChannelType":"SMS"}"#, None),
        // 15 endpoints of one user, then a 16th refused, and `dup` refused joining them.
        600..=614 => crowd(i - 600),
        615 => text(
            r#"{"Id":"c15","ChannelType":"SMS","Address":"+c15","User":{"UserId":"crowd"}}"#,
            None,
        ),
        616 => text(r#"{"Id":"dup","User":{"UserId":"crowd"}}"#, None),
        // c0 leaves the user: a place for c16.
        617 => text(r#"{"Id":"c0","User":{"UserId":"other"}}"#, Some("c0")),
        618 => crowd(16),
        // One endpoint written on both sides of the first batch's end.
        i if i == batch() - 2 => text(
            r#"{"Id":"edge","ChannelType":"EMAIL","Address":"x@example.com","Attributes":{"side":["before"]}}"#,
            Some("edge"),
        ),
        i if i == batch() => text(
            r#"{"Id":"edge","Attributes":{"side":["after"]}}"#,
            Some("edge"),
        ),
        _ => plain(format!("e{i}")),
    }
}

/// Rows are written a batch at a time: rows of one id within a batch and across two merge
/// in order as separate writes do, a refused row in the middle of a batch is refused alone,
/// and the per-user limit counts the batch's own earlier rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_import_rows_merge_in_order_and_fail_alone() {
    let root = tempfile::tempdir().unwrap();
    let rows = 2 * batch() + 345;
    let (lines, ids): (Vec<String>, Vec<Option<String>>) = (0..rows).map(batch_row).unzip();
    let ids: BTreeSet<String> = ids.into_iter().flatten().collect();
    std::fs::write(root.path().join("batch.json"), lines.join("\n") + "\n").unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("batches").await;
    let app = app.as_str();
    let c = &t.client;
    let url = format!("file://{}/batch.json", root.path().display());
    let job = import(c, app, &url, Format::Json, Some("batch"), None).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert_eq!(
        (job.total_processed(), job.total_failures()),
        (Some(rows as i32), Some(3)),
        "{job:?}"
    );
    for want in [
        "batch.json:500: Address: missing required member",
        "batch.json:616: User.UserId: a user has at most 15 endpoints",
        "batch.json:617: User.UserId: a user has at most 15 endpoints",
    ] {
        assert!(
            job.failures().iter().any(|f| f.contains(want)),
            "{want}: {:?}",
            job.failures()
        );
    }
    let endpoint = |id: &'static str| async move {
        c.get_endpoint()
            .application_id(app)
            .endpoint_id(id)
            .send()
            .await
            .unwrap()
            .endpoint_response
            .unwrap()
    };
    let dup = endpoint("dup").await;
    assert_eq!(dup.address(), Some("+2"));
    assert_eq!(dup.location().unwrap().country(), Some("CA"));
    let attrs = dup.attributes().unwrap();
    assert_eq!(
        (&attrs["a"][..], &attrs["b"][..]),
        (&["1".to_string()][..], &["2".to_string()][..])
    );
    assert!(dup.user().is_none(), "the refused row changed nothing");
    let edge = endpoint("edge").await;
    assert_eq!(edge.address(), Some("x@example.com"));
    assert_eq!(edge.attributes().unwrap()["side"], ["after".to_string()]);
    let users = |user: &'static str| async move {
        let got = c
            .get_user_endpoints()
            .application_id(app)
            .user_id(user)
            .send()
            .await
            .unwrap();
        let items = got.endpoints_response.unwrap();
        items
            .item()
            .iter()
            .filter_map(|e| e.id().map(String::from))
            .collect::<BTreeSet<_>>()
    };
    let mut crowd: BTreeSet<String> = (1..15).map(|k| format!("c{k}")).collect();
    crowd.insert("c16".into());
    assert_eq!(users("crowd").await, crowd);
    assert_eq!(users("other").await, BTreeSet::from(["c0".to_string()]));

    // The segment's members are the rows as last written, each id once.
    let seg = job.definition().unwrap().segment_id().unwrap();
    let out = root.path().join("out");
    let done = export(c, app, &format!("file://{}/", out.display()), Some(seg)).await;
    assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(out.join(done.id().unwrap()).join("part-00000.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let members: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: BTreeSet<String> = members
        .iter()
        .map(|m| m["Id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!((members.len(), got), (ids.len(), ids));
    let member = |id: &str| members.iter().find(|m| m["Id"] == id).unwrap();
    assert_eq!(member("dup")["Address"], "+2");
    assert_eq!(member("dup")["Attributes"]["a"][0], "1");
    assert_eq!(member("edge")["Attributes"]["side"][0], "after");
}

/// At the application's limit of attribute names, a row frees the names no endpoint uses
/// any more: those of the batch's own earlier rows, not yet written when the row is read,
/// stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_freed_at_the_limit_keep_those_of_the_batchs_earlier_rows() {
    let root = tempfile::tempdir().unwrap();
    let attrs = |names: &mut dyn Iterator<Item = String>, value: &str| {
        names
            .map(|n| format!("\"{n}\":[{value}]"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let wide = |value: &str| attrs(&mut (0..245).map(|i| format!("w{i}")), value);
    let kept = attrs(&mut (0..5).map(|i| format!("k{i}")), "\"v\"");
    let rows = [
        format!(
            r#"{{"Id":"wide","ChannelType":"SMS","Address":"+1","Attributes":{{{}}}}}"#,
            wide("\"v\"")
        ),
        format!(r#"{{"Id":"kept","ChannelType":"SMS","Address":"+2","Attributes":{{{kept}}}}}"#),
        // 245 names dropped, one new: 251 would pass the limit, so unused names are freed.
        format!(
            r#"{{"Id":"wide","Attributes":{{{},"fresh":["v"]}}}}"#,
            wide("")
        ),
    ];
    std::fs::write(root.path().join("names.json"), rows.join("\n")).unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("names").await;
    let url = format!("file://{}/names.json", root.path().display());
    let job = import(&t.client, &app, &url, Format::Json, Some("names"), None).await;
    assert_eq!(
        (job.job_status(), job.total_failures()),
        (Some(&JobStatus::Completed), Some(0)),
        "{job:?}"
    );
    let names = |filter: &str| {
        crate::pg::query_i64(
            &t.data,
            &format!("SELECT COUNT(*) FROM attribute_names WHERE {filter}"),
        )
    };
    assert_eq!(names("name LIKE 'k%'"), 5, "kept's names stay");
    assert_eq!(names("name = 'fresh'"), 1);
    assert_eq!(names("name LIKE 'w%'"), 0, "wide's dropped names are freed");
}

/// A row the store refuses (here, past the application's 250 attribute names) is reported
/// with its names as `*`, escaped or not: whoever reads the job may not read the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_the_store_refuses_is_reported_without_its_names() {
    let root = tempfile::tempdir().unwrap();
    let wide = (0..250)
        .map(|i| format!("\"w{i}\":[\"v\"]"))
        .collect::<Vec<_>>()
        .join(",");
    let rows = [
        format!(r#"{{"Id":"a","ChannelType":"SMS","Address":"+1","Attributes":{{{wide}}}}}"#),
        r#"{"Id":"b","ChannelType":"SMS","Address":"+2","Attributes":{"SECRET_NAME tail":["v"]}}"#
            .to_string(),
        r#"{"Id":"c","ChannelType":"SMS","Address":"+3","Metrics":{"m\u0007SECRET_CTRL":1}}"#
            .to_string(),
    ];
    std::fs::write(root.path().join("names.json"), rows.join("\n")).unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("names").await;
    let url = format!("file://{}/names.json", root.path().display());
    let job = import(&t.client, &app, &url, Format::Json, Some("names"), None).await;
    assert_eq!(job.total_failures(), Some(2), "{job:?}");
    let failures = job.failures().join("\n");
    assert!(!failures.contains("SECRET"), "{failures}");
    assert!(
        failures.contains(
            "names.json:2: Attributes.*: an application has at most 250 custom attributes"
        ),
        "{failures}"
    );
    assert!(
        failures
            .contains("names.json:3: Metrics.*: an application has at most 250 custom attributes"),
        "{failures}"
    );
}

/// An import into an existing segment (its rows staged apart, moved into the new version at
/// the end), in batches that mix endpoints stored before with new ones: a stored endpoint is
/// merged into (what the row leaves out stays), a new id written twice in one batch and a
/// stored one written twice in another merge in order, and the per-user limit counts the
/// user's stored endpoints across the batches' boundary. The new version's members are the
/// rows as last written and the user's other endpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_merges_into_stored_endpoints_across_batches_and_keeps_the_user_limit() {
    let root = tempfile::tempdir().unwrap();
    let rows = batch() + 200;
    let line = |i: usize| -> String {
        match i {
            // Batch 1: a stored endpoint updated (its attribute and user stay).
            4 => r#"{"Id":"old-1","Address":"+o1-new"}"#.into(),
            // A new id written twice in one batch: the second merges into the first.
            10 => r#"{"Id":"fresh","ChannelType":"SMS","Address":"+f","Attributes":{"a":["1"]}}"#
                .into(),
            11 => {
                r#"{"Id":"fresh","Attributes":{"b":["2"]},"User":{"UserId":"fresh-user"}}"#.into()
            }
            // The user's 15th endpoint, at the first batch's end; the 16th, after it, refused.
            i if i == batch() - 2 => {
                r#"{"Id":"q14","ChannelType":"SMS","Address":"+q14","User":{"UserId":"quota"}}"#
                    .into()
            }
            i if i == batch() => {
                r#"{"Id":"q15","ChannelType":"SMS","Address":"+q15","User":{"UserId":"quota"}}"#
                    .into()
            }
            // Batch 2: a stored endpoint written twice.
            i if i == batch() + 10 => {
                r#"{"Id":"old-2","Address":"+o2-a","Attributes":{"x":["1"]}}"#.into()
            }
            i if i == batch() + 20 => r#"{"Id":"old-2","Address":"+o2-b"}"#.into(),
            // A stored endpoint of user `quota`, staged with batch 1 as one of the user's
            // other endpoints, then imported itself: its member is the imported value.
            i if i == batch() + 30 => r#"{"Id":"q3","Address":"+q3-new"}"#.into(),
            _ => format!(r#"{{"Id":"n{i}","ChannelType":"SMS","Address":"+n{i}"}}"#),
        }
    };
    let text: Vec<String> = (0..rows).map(line).collect();
    std::fs::write(root.path().join("mixed.json"), text.join("\n") + "\n").unwrap();
    std::fs::write(
        root.path().join("first.json"),
        r#"{"Id":"first","ChannelType":"SMS","Address":"+first"}"#,
    )
    .unwrap();
    let roots = vec![root.path().to_path_buf()];
    let t = util::start_with(move |cfg| cfg.import_roots = roots).await;
    let app = t.app("mixed").await;
    let app = app.as_str();
    let c = &t.client;
    // Stored before: old-1 and 13 more endpoints of user `quota`, and old-2.
    let quota = || EndpointUser::builder().user_id("quota").build();
    update(
        c,
        app,
        "old-1",
        sms("+o1")
            .attributes("keep", vec!["x".into()])
            .user(quota())
            .build(),
    )
    .await;
    for k in 1..=13 {
        update(
            c,
            app,
            &format!("q{k}"),
            sms(&format!("+q{k}")).user(quota()).build(),
        )
        .await;
    }
    update(
        c,
        app,
        "old-2",
        sms("+o2")
            .location(EndpointLocation::builder().country("FR").build())
            .build(),
    )
    .await;
    // The segment the import makes a new version of.
    let url = |f: &str| format!("file://{}/{f}", root.path().display());
    let first = import(c, app, &url("first.json"), Format::Json, Some("seg"), None).await;
    assert_eq!(first.job_status(), Some(&JobStatus::Completed), "{first:?}");
    let seg = first
        .definition()
        .unwrap()
        .segment_id()
        .unwrap()
        .to_string();

    let job = import(c, app, &url("mixed.json"), Format::Json, None, Some(&seg)).await;
    assert_eq!(job.job_status(), Some(&JobStatus::Completed), "{job:?}");
    assert_eq!(
        (job.total_processed(), job.total_failures()),
        (Some(rows as i32), Some(1)),
        "{job:?}"
    );
    assert!(
        job.failures()[0].contains(&format!(
            "mixed.json:{}: User.UserId: a user has at most 15 endpoints; \"…\" already has 15",
            batch() + 1
        )),
        "{:?}",
        job.failures()
    );
    let endpoint = |id: &'static str| async move {
        c.get_endpoint()
            .application_id(app)
            .endpoint_id(id)
            .send()
            .await
            .unwrap()
            .endpoint_response
            .unwrap()
    };
    let old1 = endpoint("old-1").await;
    assert_eq!(old1.address(), Some("+o1-new"));
    assert_eq!(old1.attributes().unwrap()["keep"], ["x".to_string()]);
    assert_eq!(old1.user().unwrap().user_id(), Some("quota"));
    let fresh = endpoint("fresh").await;
    let attrs = fresh.attributes().unwrap();
    assert_eq!(
        (&attrs["a"][..], &attrs["b"][..], fresh.address()),
        (&["1".to_string()][..], &["2".to_string()][..], Some("+f"))
    );
    assert_eq!(fresh.user().unwrap().user_id(), Some("fresh-user"));
    let old2 = endpoint("old-2").await;
    assert_eq!(old2.address(), Some("+o2-b"));
    assert_eq!(old2.location().unwrap().country(), Some("FR"));
    assert_eq!(old2.attributes().unwrap()["x"], ["1".to_string()]);
    assert!(
        !exists(c, app, "q15").await,
        "the refused row wrote nothing"
    );
    let got = c
        .get_user_endpoints()
        .application_id(app)
        .user_id("quota")
        .send()
        .await
        .unwrap();
    let quota_ids: BTreeSet<String> = got
        .endpoints_response
        .unwrap()
        .item()
        .iter()
        .filter_map(|e| e.id().map(String::from))
        .collect();
    let mut want: BTreeSet<String> = (1..=14).map(|k| format!("q{k}")).collect();
    want.insert("old-1".into());
    assert_eq!(quota_ids, want);

    // The new version's members: the file's rows as last written (each id once), and the
    // other endpoints of its users (q1–q13, stored before); not the first version's.
    let out = root.path().join("out");
    let done = export(c, app, &format!("file://{}/", out.display()), Some(&seg)).await;
    assert_eq!(done.job_status(), Some(&JobStatus::Completed), "{done:?}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(out.join(done.id().unwrap()).join("part-00000.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let members: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let got: BTreeSet<String> = members
        .iter()
        .map(|m| m["Id"].as_str().unwrap().to_string())
        .collect();
    let mut want: BTreeSet<String> = (0..rows)
        .filter(|i| {
            ![
                4,
                10,
                11,
                batch() - 2,
                batch(),
                batch() + 10,
                batch() + 20,
                batch() + 30,
            ]
            .contains(i)
        })
        .map(|i| format!("n{i}"))
        .collect();
    want.extend(["old-1", "fresh", "q14", "old-2"].map(String::from));
    want.extend((1..=13).map(|k| format!("q{k}")));
    assert_eq!(members.len(), got.len(), "each member once");
    assert_eq!(got, want);
    let member = |id: &str| members.iter().find(|m| m["Id"] == id).unwrap();
    assert_eq!(member("old-2")["Address"], "+o2-b");
    assert_eq!(member("old-2")["Location"]["Country"], "FR");
    assert_eq!(member("old-1")["Attributes"]["keep"][0], "x");
    assert_eq!(member("fresh")["Attributes"]["b"][0], "2");
    assert_eq!(member("q3")["Address"], "+q3-new");
    assert_eq!(member("q3")["User"]["UserId"], "quota");
    assert_eq!(member("q4")["Address"], "+q4");
}

/// An endpoint a batch staged as a member, deleted before a later batch of the same job
/// brings it again: new to that batch, yet staged already, so the later batch's plain
/// insert of new members meets the staged one, is undone, and every row of the batch is
/// upserted instead: the member is staged once, with its last value. On the suite's
/// database (SQLite, or PostgreSQL with its pool's second connection staging the members).
#[test]
fn a_member_staged_then_deleted_and_imported_again_is_staged_once_on_the_suites_database() {
    use segmentctl::model::ImportDefinition;
    use segmentctl::server::endpoint::Endpoint;
    use segmentctl::server::store::{pg::PgSettings, ImportRow, ImportTarget, JobKind, Store};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &util::data_source(dir.path()),
        "us-east-1",
        "123456789012",
        PgSettings::new(4),
    )
    .unwrap();
    let app = store.create_app("a", &Default::default()).unwrap().id;
    let job = store
        .create_job(
            &app,
            JobKind::Import,
            None,
            serde_json::json!({"Definition": {"DefineSegment": true, "S3Url": "file:///x", "Format": "JSON"}}),
        )
        .unwrap();
    let id = job["Id"].as_str().unwrap().to_string();
    let now = segmentctl::text::now_iso();
    let row = |endpoint: &str, address: &str| {
        let e: Endpoint =
            serde_json::from_value(serde_json::json!({"ChannelType": "SMS", "Address": address}))
                .unwrap();
        ImportRow::new(&app, &id, endpoint.to_string(), e, &now)
    };
    let first = [row("x", "+1"), row("y", "+2")];
    let refused = store.import_batch(&app, &job, true, &first, &now).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    store.delete_endpoint(&app, "x").unwrap();
    let second = [row("x", "+3"), row("z", "+4")];
    let refused = store.import_batch(&app, &job, true, &second, &now).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let target = ImportTarget {
        segment_id: None,
        define: true,
        registered: true,
        name: Some("s"),
        definition: ImportDefinition {
            channel_counts: None,
            external_id: String::new(),
            format: "JSON".into(),
            role_arn: "r".into(),
            s3_url: "file:///x".into(),
            size: 0,
        },
    };
    let done = store
        .finish_import(&app, &id, target, |_| job.clone())
        .unwrap();
    assert_eq!(done.size, 3);
    let members = store.members_after(&app, &id, 1, "", 10).unwrap();
    let ids: Vec<&str> = members.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["x", "y", "z"]);
    let x: serde_json::Value = serde_json::from_str(&members[0].1).unwrap();
    assert_eq!(x["Address"], "+3");
    let z: serde_json::Value = serde_json::from_str(&members[2].1).unwrap();
    assert_eq!(z["Address"], "+4");
}
