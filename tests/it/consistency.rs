//! A read of several statements sees one commit, on either database: GetCampaigns reads
//! the page's ids, then each campaign; campaigns deleted meanwhile must not show through
//! as a failed or torn page. GetSegment, kept in memory on SQLite between writes, reads
//! every write acknowledged before it.

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
