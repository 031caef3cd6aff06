//! A read of several statements sees one commit, on either database: GetCampaigns reads
//! the page's ids, then each campaign; campaigns deleted meanwhile must not show through
//! as a failed or torn page. GetSegment, kept in memory on SQLite between writes, reads
//! every write acknowledged before it, and reads one version of a segment with thousands.

use aws_sdk_pinpoint::types::WriteCampaignRequest;

use crate::util::{self, named};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_read_while_its_items_are_deleted_sees_one_commit() {
    let t = util::start().await;
    let c = &t.client;
    let app = util::create_app(c, "consistent").await;
    let seg = util::create_segment(c, &app, named("audience")).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        let out = c
            .create_campaign()
            .application_id(&app)
            .write_campaign_request(
                WriteCampaignRequest::builder()
                    .name(format!("c{i}"))
                    .segment_id(&seg)
                    .build(),
            )
            .send()
            .await
            .expect("create a campaign");
        ids.push(out.campaign_response.unwrap().id.unwrap());
    }
    // One deleter, from the newest: each list sees a prefix of the creation order.
    let deleter = {
        let (c, app) = (c.clone(), app.clone());
        tokio::spawn(async move {
            for id in ids.iter().rev() {
                c.delete_campaign()
                    .application_id(&app)
                    .campaign_id(id)
                    .send()
                    .await
                    .expect("delete a campaign");
            }
        })
    };
    let mut lists = 0;
    let mut sizes = std::collections::BTreeSet::new();
    while !deleter.is_finished() {
        let page = c
            .get_campaigns()
            .application_id(&app)
            .page_size("200")
            .send()
            .await
            .expect("a list of campaigns being deleted is answered whole");
        let items = page.campaigns_response.unwrap().item.unwrap_or_default();
        let names: Vec<String> = items.into_iter().map(|i| i.name.unwrap()).collect();
        let want: Vec<String> = (0..names.len()).map(|i| format!("c{i}")).collect();
        assert_eq!(names, want, "a page is one commit's campaigns, in order");
        sizes.insert(names.len());
        lists += 1;
    }
    deleter.await.unwrap();
    assert!(
        lists >= 3 && sizes.len() >= 2,
        "the lists ran while the deletes did ({lists} lists, sizes {sizes:?})"
    );
}

/// GetSegment reads its writes (on SQLite its answer is kept in memory until the next
/// write): each update is seen by the next read, a reader beside the writer never sees a
/// version go back, and a deleted segment, or one of a deleted application, is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_segment_sees_each_write_acknowledged_before_it() {
    use aws_sdk_pinpoint::types::WriteSegmentRequest;
    let t = util::start().await;
    let c = &t.client;
    let app = util::create_app(c, "reads").await;
    let seg = util::create_segment(c, &app, named("v")).await;
    let get = |c: aws_sdk_pinpoint::Client, app: String, seg: String| async move {
        c.get_segment()
            .application_id(&app)
            .segment_id(&seg)
            .send()
            .await
            .map(|o| o.segment_response.unwrap())
    };
    let reader = {
        let (c, app, seg) = (c.clone(), app.clone(), seg.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for _ in 0..300 {
                let s = get(c.clone(), app.clone(), seg.clone()).await.unwrap();
                let v = s.version.unwrap();
                assert!(v >= last, "version {v} read after {last}");
                last = v;
            }
        })
    };
    for i in 0..30 {
        c.update_segment()
            .application_id(&app)
            .segment_id(&seg)
            .write_segment_request(WriteSegmentRequest::builder().name(format!("n{i}")).build())
            .send()
            .await
            .expect("update");
        let s = get(c.clone(), app.clone(), seg.clone()).await.unwrap();
        assert_eq!(
            (s.version, s.name.as_deref()),
            (Some(i + 2), Some(&*format!("n{i}")))
        );
    }
    reader.await.unwrap();
    c.delete_segment()
        .application_id(&app)
        .segment_id(&seg)
        .send()
        .await
        .expect("delete");
    let gone = get(c.clone(), app.clone(), seg.clone()).await.unwrap_err();
    assert!(gone.into_service_error().is_not_found_exception());
    let other = util::create_segment(c, &app, named("w")).await;
    get(c.clone(), app.clone(), other.clone()).await.unwrap();
    c.delete_app()
        .application_id(&app)
        .send()
        .await
        .expect("delete the app");
    let gone = get(c.clone(), app.clone(), other).await.unwrap_err();
    assert!(gone.into_service_error().is_not_found_exception());
}

/// GetSegment and GetSegments read the one version they answer with, however many the
/// segment has: the version is found by its key even by a plan PostgreSQL cached while the
/// table was small (one made from the first reads, then 50,000 versions written under it,
/// with no ANALYZE between). On PostgreSQL the primary key's index entries the reads return
/// are counted: fewer than one read of every version. On either database the answer is the
/// latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_segment_and_get_segments_read_one_version_of_a_segment_with_many() {
    const VERSIONS: i64 = 50_000;
    let t = util::start().await;
    let c = &t.client;
    let app = util::create_app(c, "versions").await;
    let seg = util::create_segment(c, &app, named("many")).await;
    let get = || async {
        c.get_segment()
            .application_id(&app)
            .segment_id(&seg)
            .send()
            .await
            .unwrap()
            .segment_response
            .unwrap()
    };
    let list = || async {
        let items = util::segments_of(c, &app).await;
        items.into_iter().map(|s| s.version).collect::<Vec<_>>()
    };
    // Past PostgreSQL's five custom plans: the statements' plans are cached from here on.
    for _ in 0..8 {
        assert_eq!(get().await.version, Some(1));
        assert_eq!(list().await, [Some(1)]);
    }
    let data = t.data.display().to_string();
    let grow = format!(
        "INSERT INTO segment_versions (app_id, segment_id, version, modified, body)
           SELECT app_id, segment_id, version + n, modified, body FROM segment_versions,
             (WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {VERSIONS}) SELECT n FROM k) AS k
           WHERE app_id = '{app}' AND segment_id = '{seg}';
         UPDATE segments SET version = version + {VERSIONS} WHERE app_id = '{app}' AND id = '{seg}';"
    );
    crate::pg::off_runtime(move || {
        if data.starts_with("postgres://") {
            let mut db = postgres::Client::connect(&data, postgres::NoTls).unwrap();
            db.batch_execute(&grow).unwrap();
        } else {
            rusqlite::Connection::open(&data)
                .unwrap()
                .execute_batch(&grow)
                .unwrap();
        }
    });
    // A write through the server (on SQLite, its answers kept until one).
    util::create_segment(c, &app, named("other")).await;
    let pg = crate::pg::backend_is_postgres();
    let index_reads = || {
        crate::pg::query_i64(
            &t.data,
            "SELECT idx_tup_read FROM pg_stat_user_indexes WHERE indexrelname = 'segment_versions_pkey'",
        )
    };
    let before = if pg { index_reads() } else { 0 };
    let latest = Some(VERSIONS as i32 + 1);
    for _ in 0..10 {
        assert_eq!(get().await.version, latest);
        assert_eq!(list().await[0], latest);
    }
    if pg {
        // A backend reports its counters once idle, at most once a second: the reads are
        // counted once they show, and a few seconds more (any later report in too).
        let mut read = 0;
        for _ in 0..150 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            read = index_reads() - before;
            if read >= 20 {
                break;
            }
        }
        assert!(read >= 20, "the reads were not counted ({read})");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let read = index_reads() - before;
        assert!(
            read < VERSIONS,
            "10 GetSegment and 10 GetSegments read {read} index entries of a segment's {VERSIONS} versions"
        );
    }
}
